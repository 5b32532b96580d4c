"""A kill -9 at any moment of a checkpoint save: the run resumes and ends exactly like an uninterrupted one.

Each crash test runs ``tinydistill.run`` in a subprocess whose checkpoint hook (:func:`checkpoint.reached`)
SIGKILLs it at one named moment of one step's save, then runs the same config again in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinydistill.config.loader import config_from_dict
from tinydistill.run import run
from tinydistill.training import checkpoint
from tinydistill.training.checkpoint import COMPLETE_FILE, STATE_FILE, LoopState, load_latest, save_checkpoint
from tinydistill.training.trainer import make_accelerator

from .conftest import run_config, synthetic_rows, write_jsonl

REPO = Path(__file__).resolve().parents[1]
# 40 steps: the loop logs every 2nd step; checkpoints every 5th, so a resume from step 35 starts mid-window
OVER = {"train.max_steps": 40, "train.batch_size": 8, "train.checkpoint_every": 5, "train.eval_every": 10,
        "eval.modes": ["rank"]}

KILL_AT = """
import json, os, signal, sys
import torch
torch.set_num_threads(int(sys.argv[4]))  # the test process's threads: the same kernels as its uninterrupted run
from tinydistill.training import checkpoint
from tinydistill.config.loader import config_from_dict
from tinydistill.run import run
cfg, point, step = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def die(at, path):
    if at == point and path.name.endswith(f"-{step:07d}"):
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.reached = die
run(config_from_dict(cfg), progress=False, log=lambda *_: None)
"""


def _killed_at(cfg: dict, point: str, step: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", KILL_AT, json.dumps(cfg), point, str(step),
                          str(torch.get_num_threads())], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    train, valid = synthetic_rows(160, seed=1), synthetic_rows(48, seed=2)
    rationales = [{"id": r["id"], "rationale": f"it is {r['answer']}."} for r in train]
    return {"train": write_jsonl(root / "train.jsonl", train), "valid": write_jsonl(root / "valid.jsonl", valid),
            "rationales": write_jsonl(root / "teacher.jsonl", rationales)}


@pytest.fixture(scope="module")
def uninterrupted(tiny_t5_dir, data, tmp_path_factory) -> Path:
    cfg = config_from_dict(run_config(tiny_t5_dir, data, tmp_path_factory.mktemp("full"), **OVER))
    run(cfg, progress=False, log=lambda *_: None)
    return cfg.run_dir


def _outcome(run_dir: Path) -> dict:
    """What must not depend on a crash: final and best weights, optimizer state, every logged record."""
    (final,) = (run_dir / "checkpoints").glob("step-*")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in records:  # logged once per process start (which sharding took effect), not a result
        for k in ("optimizer_state_share", "data_parallel", "parameter_share"):
            r.pop(k, None)
    return {"final": final.name, "state": json.loads((final / STATE_FILE).read_text()),
            "weights": load_file(final / "model.safetensors"), "best": load_file(run_dir / "best/model.safetensors"),
            "optimizer": torch.load(final / "optimizer.bin", weights_only=False),
            "train": [r for r in records if "split" not in r], "valid": [r for r in records if "split" in r]}


def _assert_same(a: dict, b: dict) -> None:
    assert a["final"] == b["final"] == "step-0000040"
    assert a["state"]["completed"] and b["state"]["completed"]
    assert a["state"]["history"] == b["state"]["history"]
    for key in ("weights", "best"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert a["valid"] == b["valid"]  # same evaluations at the same steps
    assert a["train"] == b["train"]  # logged losses: the same windows, the same figures


@pytest.mark.slow
@pytest.mark.parametrize("point,step,expect", [
    # the final step's state file is written, its marker not: skipped, the run falls back to step 35
    ("sealing", 40, "incomplete checkpoint (no completion marker); skipped"),
    # sealed but not yet renamed into place: the rename is finished on resume
    ("sealed", 40, "finishing an interrupted checkpoint save"),
    # step 40 installed, step 35 renamed for deletion but not deleted, the completed flag not yet written
    ("pruning", 35, None),
])
def test_a_kill_during_a_save_resumes_to_the_uninterrupted_result(point, step, expect, uninterrupted, tiny_t5_dir,
                                                                   data, tmp_path, capfd):
    cfg = run_config(tiny_t5_dir, data, tmp_path, **OVER)
    _killed_at(cfg, point, step)
    ckpts = tmp_path / "t" / "checkpoints"
    left = sorted(p.name for p in ckpts.iterdir())
    assert left == {"sealing": [".tmp-step-0000040", "step-0000035"], "sealed": [".tmp-step-0000040", "step-0000035"],
                    "pruning": [".del-step-0000035", "step-0000040"]}[point], left
    capfd.readouterr()
    run(config_from_dict(cfg), progress=False, log=lambda *_: None)
    err = capfd.readouterr().err
    if expect:
        assert expect in err, err
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000040"]
    _assert_same(_outcome(tmp_path / "t"), _outcome(uninterrupted))


@pytest.mark.slow
def test_logged_losses_after_a_resume_mid_window_equal_the_uninterrupted_run(uninterrupted, tiny_t5_dir, data,
                                                                             tmp_path):
    cfg = config_from_dict(run_config(tiny_t5_dir, data, tmp_path, **OVER))
    with pytest.raises(KeyboardInterrupt):  # stopped after step 15: the window of step 16 began at step 15
        run(cfg, progress=False, log=lambda *_: None, stop_after_steps=15)
    run(cfg, progress=False, log=lambda *_: None)
    _assert_same(_outcome(cfg.run_dir), _outcome(uninterrupted))


@pytest.mark.slow
def test_the_final_checkpoint_is_written_once(tiny_t5_dir, data, tmp_path, monkeypatch):
    saved: list[int] = []
    real = checkpoint.save_checkpoint

    def counting(accelerator, folder, state, *args, **kwargs):
        saved.append(state.step)
        return real(accelerator, folder, state, *args, **kwargs)

    monkeypatch.setattr("tinydistill.training.trainer.save_checkpoint", counting)
    monkeypatch.setattr(checkpoint, "save_checkpoint", counting)
    cfg = config_from_dict(run_config(tiny_t5_dir, data, tmp_path, **{**OVER, "train.max_steps": 10}))
    run(cfg, progress=False, log=lambda *_: None)
    assert saved == [5, 10]
    final = cfg.run_dir / "checkpoints" / "step-0000010"
    assert json.loads((final / STATE_FILE).read_text())["completed"]
    assert checkpoint.incomplete_reason(final) is None  # the rewritten state file keeps the marker valid


@pytest.mark.slow
def test_a_checkpoint_folder_damaged_by_the_old_replace_resumes_from_its_temporary_copy(uninterrupted, tmp_path,
                                                                                        tiny_t5_dir, data, capfd):
    """The layout of the issue: an older version deleted ``step-N`` file by file (weights first) beside a
    complete ``.tmp-step-N``, neither with a marker."""
    shutil.copytree(uninterrupted, tmp_path / "t")
    (tmp_path / "t" / "config.yaml").unlink()  # names the other output folder: written again
    ckpts = tmp_path / "t" / "checkpoints"
    final = ckpts / "step-0000040"
    (final / COMPLETE_FILE).unlink()
    shutil.copytree(final, ckpts / ".tmp-step-0000040")
    (final / "model.safetensors").unlink()
    cfg = config_from_dict(run_config(tiny_t5_dir, data, tmp_path, **OVER))
    run(cfg, progress=False, log=lambda *_: None)  # no traceback: completed, evaluated, reported
    err = capfd.readouterr().err
    assert "step-0000040: cannot be loaded" in err and "skipped" in err, err
    assert (tmp_path / "t" / "report.md").is_file()


REPLACE = """
import sys, os, signal, torch
from pathlib import Path
from tinydistill.training import checkpoint
from tinydistill.training.trainer import make_accelerator
folder, point = Path(sys.argv[1]), sys.argv[2]
acc = make_accelerator("no")
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
opt = torch.optim.AdamW(model.parameters())
model, opt = acc.prepare(model, opt)
checkpoint.save_checkpoint(acc, folder, checkpoint.LoopState(step=3), keep=1)
with torch.no_grad():
    model.weight.fill_(7.0)
def die(at, path):
    if at == point:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.reached = die
checkpoint.save_checkpoint(acc, folder, checkpoint.LoopState(step=3, epoch=1), keep=1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["sealing", "sealed", "aside", "installed"])
def test_replacing_a_checkpoint_of_the_same_step_is_atomic(point, tmp_path):
    """Between renaming the old folder aside and the new one into place, a kill leaves both complete."""
    folder = tmp_path / "checkpoints"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", REPLACE, str(folder), point], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    acc = make_accelerator("no")
    model = torch.nn.Linear(4, 3)
    model, opt = acc.prepare(model, torch.optim.AdamW(model.parameters()))
    state = load_latest(acc, folder)
    new = point in ("sealed", "aside", "installed")  # sealed: the new one is complete and wins
    assert state is not None and state.epoch == (1 if new else 0)
    assert bool((model.weight == 7.0).all()) is new
    left = sorted(p.name for p in folder.iterdir())
    assert left == (["step-0000003"] if new else [".tmp-step-0000003", "step-0000003"])


def test_incomplete_checkpoints_only_start_the_run_afresh_with_a_warning(tmp_path, capfd):
    acc = make_accelerator("no")
    model = torch.nn.Linear(2, 2)
    model, opt = acc.prepare(model, torch.optim.AdamW(model.parameters()))
    folder = tmp_path / "checkpoints"
    save_checkpoint(acc, folder, LoopState(step=1), keep=1)
    (folder / "step-0000001" / "model.safetensors").write_bytes(b"")  # sizes no longer match the marker
    capfd.readouterr()
    assert load_latest(acc, folder) is None
    assert "step-0000001: incomplete checkpoint (model.safetensors has 0 bytes" in capfd.readouterr().err


def test_the_logging_window_is_restored_per_process_and_summed_when_the_process_count_changes():
    from tinydistill.training.trainer import _own_window

    saved = [{"_n": 1, "loss": 2.0, "loss/answer": 1.0}, {"_n": 1, "loss": 3.0}]  # two processes, one micro-batch
    assert _own_window(saved, 1, 2) == saved[1]
    assert _own_window(saved, 0, 1) == {"_n": 1, "loss": 5.0, "loss/answer": 1.0}  # one process resumes both
    assert _own_window(saved, 2, 4) == {"_n": 1}  # the count of micro-batches is every process's
    assert _own_window([], 0, 1) == {}


def _metrics(path: Path, steps: list[int], torn: str = "") -> str:
    text = "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps) + torn
    path.write_text(text, encoding="utf-8")
    return text


def test_resuming_replaces_metrics_jsonl_atomically_never_cutting_it_in_place(tmp_path, monkeypatch):
    from tinydistill import files
    from tinydistill.training.trainer import _truncate_metrics

    path = tmp_path / "metrics.jsonl"
    before = _metrics(path, list(range(1, 21)))
    inode = path.stat().st_ino

    def killed(fd: int) -> None:  # the process dies after writing the new log, before it is in place
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        _truncate_metrics(path, 5)
    assert path.read_text(encoding="utf-8") == before  # the old log whole: not 5 lines, not empty
    monkeypatch.undo()
    _truncate_metrics(path, 5)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert not (tmp_path / "metrics.jsonl.tmp").exists()
    _truncate_metrics(path, 40)  # nothing to drop (a finished run re-run): left as it is
    assert len(path.read_text().splitlines()) == 5


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capfd):
    from tinydistill.errors import TinyDistillError
    from tinydistill.training.trainer import _truncate_metrics

    path = tmp_path / "metrics.jsonl"
    _metrics(path, [1, 2, 3], torn='{"step": 4, "lo')  # killed during an append
    _truncate_metrics(path, 10)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert "metrics.jsonl:4: dropped a half-written last line" in capfd.readouterr().err
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n', encoding="utf-8")  # damage inside: named, not guessed
    with pytest.raises(TinyDistillError, match=r"metrics.jsonl:2: not a JSON record"):
        _truncate_metrics(path, 10)


@pytest.mark.slow
def test_a_finished_run_run_again_reports_its_training_time_not_the_resume(tiny_t5_dir, data, tmp_path):
    cfg = config_from_dict(run_config(tiny_t5_dir, data, tmp_path, **{**OVER, "train.max_steps": 10}))
    with pytest.raises(KeyboardInterrupt):  # killed after step 5's checkpoint: its time is kept
        run(cfg, progress=False, log=lambda *_: None, stop_after_steps=5)
    at_five = json.loads((cfg.run_dir / "checkpoints" / "step-0000005" / STATE_FILE).read_text())["train_seconds"]
    first = run(cfg, progress=False, log=lambda *_: None)
    assert first.train_seconds > at_five > 0  # both process starts count
    again = run(cfg, progress=False, log=lambda *_: None)  # finds the run finished: trains nothing
    assert again.train_seconds == first.train_seconds
    assert json.loads((cfg.run_dir / "summary.json").read_text())["train_seconds"] == first.train_seconds


# ------------------------------------------------------------------ in-process: a tiny model, crashes by exception
class _Killed(Exception):
    """Stands in for a kill at one named moment of a save (the subprocess tests above send a real SIGKILL)."""


def _prepared(weight: float = 0.0):
    acc = make_accelerator("no")
    model = torch.nn.Linear(4, 3)
    model, _ = acc.prepare(model, torch.optim.AdamW(model.parameters()))
    _fill(model, weight)
    return acc, model


def _fill(model, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_saves_keep_the_newest_complete_checkpoints_and_the_newest_loads(tmp_path, monkeypatch):
    acc, model = _prepared()
    folder = tmp_path / "checkpoints"
    moments: list[tuple[str, str]] = []
    monkeypatch.setattr(checkpoint, "reached", lambda at, path: moments.append((at, path.name)))
    for step in (1, 2, 3):
        _fill(model, step)
        moments.clear()
        assert save_checkpoint(acc, folder, LoopState(step=step, epoch=10 * step), keep=2) == \
            folder / f"step-{step:07d}"
    # the crash tests' hook sees each moment with the checkpoint it concerns
    assert moments == [("sealing", "step-0000003"), ("sealed", "step-0000003"), ("installed", "step-0000003"),
                       ("pruning", "step-0000001")]
    assert _names(folder) == ["step-0000002", "step-0000003"]
    assert checkpoint.list_checkpoints(folder) == [folder / "step-0000002", folder / "step-0000003"]
    sizes = json.loads((folder / "step-0000003" / COMPLETE_FILE).read_text())["files"]
    assert STATE_FILE not in sizes and sizes["model.safetensors"] == (folder / "step-0000003" /
                                                                     "model.safetensors").stat().st_size
    _fill(model, 0)
    assert checkpoint.newest_state(folder) == LoopState(step=3, epoch=30)  # read without loading
    assert load_latest(acc, folder) == LoopState(step=3, epoch=30)
    assert bool((model.weight == 3).all())
    assert load_latest(acc, tmp_path / "none") is None and checkpoint.newest_state(tmp_path / "none") is None
    (folder / "step-0000003" / STATE_FILE).write_text('{"step": 3, "no_such_field": 1}')  # unreadable: the older one
    assert checkpoint.newest_state(folder) == LoopState(step=2, epoch=20)
    save_checkpoint(acc, folder, LoopState(step=3, epoch=30), keep=2)
    # a leftover of an interrupted deletion under the name the next pruned folder takes is cleared first
    (folder / ".del-step-0000002").mkdir()
    (folder / ".del-step-0000002" / "model.safetensors").write_bytes(b"stale")
    synced: list[Path] = []
    monkeypatch.setattr(checkpoint, "fsync_path", synced.append)

    def shards(tmp: Path) -> None:  # a folder inside the checkpoint, as FSDP's sharded state
        (tmp / "shards").mkdir()
        (tmp / "shards" / "0.bin").write_bytes(b"0")

    save_checkpoint(acc, folder, LoopState(step=4, epoch=40), keep=2, save_extra=shards)
    assert _names(folder) == ["step-0000003", "step-0000004"]
    # before the marker, every file and folder of the checkpoint is fsynced, each file before its folder
    tmp = folder / ".tmp-step-0000004"
    sealed = synced[:synced.index(tmp) + 1]
    assert {p.relative_to(tmp) for p in sealed if p != tmp} == {
        p.relative_to(folder / "step-0000004") for p in (folder / "step-0000004").rglob("*") if p.name != COMPLETE_FILE}
    assert all(sealed.index(p) < sealed.index(p.parent) for p in sealed if p != tmp)
    # the same step saved again: a stale aside copy is cleared first, the replaced copy deleted after
    (folder / ".old-step-0000004").mkdir()
    (folder / ".old-step-0000004" / "model.safetensors").write_bytes(b"stale")
    monkeypatch.setattr(checkpoint, "reached", lambda at, path: moments.append((at, path.name)))
    moments.clear()
    _fill(model, 44)
    save_checkpoint(acc, folder, LoopState(step=4, epoch=44), keep=2)
    assert moments == [("sealing", "step-0000004"), ("sealed", "step-0000004"), ("aside", "step-0000004"),
                       ("installed", "step-0000004")]
    assert _names(folder) == ["step-0000003", "step-0000004"]
    _fill(model, 0)
    assert load_latest(acc, folder).epoch == 44 and bool((model.weight == 44).all())
    # steps past seven digits still sort by number, not by name
    save_checkpoint(acc, folder, LoopState(step=9_999_999), keep=1)
    save_checkpoint(acc, folder, LoopState(step=10_000_000), keep=1)
    assert _names(folder) == ["step-10000000"]


def test_mark_completed_rewrites_the_state_file_only_or_saves_a_step_without_a_checkpoint(tmp_path):
    acc, model = _prepared(1.0)
    folder = tmp_path / "checkpoints"
    save_checkpoint(acc, folder, LoopState(step=2), keep=1)
    weights = folder / "step-0000002" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert checkpoint.mark_completed(acc, folder, LoopState(step=2, completed=True), keep=1) == weights.parent
    assert weights.stat().st_mtime_ns == before and load_latest(acc, folder).completed
    _fill(model, 5.0)
    extra: list[str] = []

    def save_extra(tmp: Path) -> None:  # FSDP's shards: written into the checkpoint being saved
        extra.append(tmp.name)
        (tmp / "shards.bin").write_bytes(b"shards")

    checkpoint.mark_completed(acc, folder, LoopState(step=5, completed=True), keep=1, save_extra=save_extra)
    assert _names(folder) == ["step-0000005"] and extra == [".tmp-step-0000005"]
    assert (folder / "step-0000005" / "shards.bin").read_bytes() == b"shards"
    _fill(model, 0.0)
    assert load_latest(acc, folder) == LoopState(step=5, completed=True) and bool((model.weight == 5).all())
    # a folder of that step that is not complete (sizes no longer match) gets a full save, not a state rewrite
    (folder / "step-0000005" / "model.safetensors").write_bytes(b"")
    _fill(model, 6.0)
    checkpoint.mark_completed(acc, folder, LoopState(step=5, completed=True, epoch=6), keep=1)
    assert checkpoint.incomplete_reason(folder / "step-0000005") is None
    _fill(model, 0.0)
    assert load_latest(acc, folder).epoch == 6 and bool((model.weight == 6).all())


@pytest.mark.parametrize("point,step,left,loaded", [
    ("sealing", 2, [".tmp-step-0000002", "step-0000001"], 1),  # no marker yet: skipped, step 1 loads
    ("sealed", 2, [".tmp-step-0000002", "step-0000001"], 2),  # sealed: renamed into place on resume
    ("installed", 2, ["step-0000001", "step-0000002"], 2),  # in place, the older one not yet pruned
    ("pruning", 2, [".del-step-0000001", "step-0000002"], 2),  # the older one renamed for deletion
    ("aside", 1, [".old-step-0000001", ".tmp-step-0000001"], 2),  # the same step again: both copies complete
])
def test_a_save_interrupted_at_each_moment_resumes_from_the_newest_complete_state(point, step, left, loaded,
                                                                                   tmp_path, monkeypatch, capfd):
    acc, model = _prepared(1.0)
    folder = tmp_path / "checkpoints"
    save_checkpoint(acc, folder, LoopState(step=1, epoch=1), keep=1)

    def die(at: str, path: Path) -> None:
        if at == point:
            raise _Killed(at)

    monkeypatch.setattr(checkpoint, "reached", die)
    _fill(model, 2.0)
    with pytest.raises(_Killed):
        save_checkpoint(acc, folder, LoopState(step=step, epoch=2), keep=1)
    monkeypatch.undo()
    assert _names(folder) == left
    _fill(model, 0.0)
    capfd.readouterr()
    state = load_latest(acc, folder)
    assert state.epoch == loaded and bool((model.weight == loaded).all())
    err = capfd.readouterr().err
    assert ("incomplete checkpoint (no completion marker); skipped" in err) is (point == "sealing")
    assert ("finishing an interrupted checkpoint save" in err) is (point in ("sealed", "aside"))
    assert not any(name.startswith((".del-", ".old-")) for name in _names(folder))  # leftovers cleared


def test_a_sealed_checkpoint_that_does_not_load_is_an_error_naming_it(tmp_path):
    acc, _ = _prepared()
    folder = tmp_path / "checkpoints"
    save_checkpoint(acc, folder, LoopState(step=1), keep=1)
    other = make_accelerator("no")
    changed = torch.nn.Linear(5, 3)  # the model changed since
    changed, _ = other.prepare(changed, torch.optim.AdamW(changed.parameters()))
    with pytest.raises(checkpoint.CheckpointError, match=r"step-0000001: cannot be loaded \(RuntimeError: Error\(s\) "
                       r"in loading state_dict for Linear:\); delete it or choose another run name$"):  # 1st line
        load_latest(other, folder)
    seen: list[Path] = []

    def load_extra(ckpt: Path) -> None:  # FSDP's shards: read from the checkpoint being loaded
        seen.append(ckpt)
        raise ValueError()  # an error without a message

    with pytest.raises(checkpoint.CheckpointError, match=r"step-0000001: cannot be loaded \(ValueError: \); delete"):
        load_latest(acc, folder, load_extra=load_extra)
    assert seen == [folder / "step-0000001"]


def test_a_save_clears_a_stale_temporary_folder_and_recover_settles_aside_copies(tmp_path):
    acc, model = _prepared(1.0)
    assert save_checkpoint(acc, tmp_path / "new" / "run" / "checkpoints", LoopState(step=1), keep=1).is_dir()
    folder = tmp_path / "checkpoints"
    (folder / ".tmp-step-0000001").mkdir(parents=True)
    (folder / ".tmp-step-0000001" / "stale.bin").write_bytes(b"of a save that died")
    save_checkpoint(acc, folder, LoopState(step=1, epoch=1), keep=1)
    assert not (folder / "step-0000001" / "stale.bin").exists()
    # an aside copy whose replacement never arrived is put back; a leftover deletion is finished
    os.replace(folder / "step-0000001", folder / ".old-step-0000001")
    (folder / ".del-step-0000000").mkdir()
    _fill(model, 0.0)
    assert load_latest(acc, folder).epoch == 1 and bool((model.weight == 1).all())
    assert _names(folder) == ["step-0000001"]
    # an aside copy beside its installed replacement is deleted
    shutil.copytree(folder / "step-0000001", folder / ".old-step-0000001")
    assert load_latest(acc, folder).epoch == 1 and _names(folder) == ["step-0000001"]
    # an aside copy that is not complete is neither put back nor loaded
    os.replace(folder / "step-0000001", folder / ".old-step-0000001")
    (folder / ".old-step-0000001" / "model.safetensors").write_bytes(b"")
    assert load_latest(acc, folder) is None and _names(folder) == [".old-step-0000001"]


def test_a_legacy_temporary_copy_loads_when_its_step_folder_was_damaged(tmp_path, capfd):
    """An older version (no markers) deleted ``step-N`` file by file beside a complete ``.tmp-step-N``."""
    acc, model = _prepared(3.0)
    folder = tmp_path / "checkpoints"
    save_checkpoint(acc, folder, LoopState(step=3, epoch=3), keep=1)
    (folder / "step-0000003" / COMPLETE_FILE).unlink()
    shutil.copytree(folder / "step-0000003", folder / ".tmp-step-0000003")
    (folder / "step-0000003" / "model.safetensors").unlink()
    _fill(model, 0.0)
    capfd.readouterr()
    assert load_latest(acc, folder).epoch == 3 and bool((model.weight == 3).all())
    assert "step-0000003: cannot be loaded" in capfd.readouterr().err


def test_unmarked_folders_of_an_older_version_are_tried_newest_first(tmp_path, capfd):
    acc, model = _prepared()
    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        _fill(model, step)
        save_checkpoint(acc, folder, LoopState(step=step), keep=2)
    for step in (1, 2):
        (folder / f"step-{step:07d}" / COMPLETE_FILE).unlink()  # written before markers existed
    assert checkpoint.list_checkpoints(folder) == [folder / "step-0000001", folder / "step-0000002"]
    (folder / "step-0000002" / "model.safetensors").write_bytes(b"not a tensor file")
    capfd.readouterr()
    assert load_latest(acc, folder) == LoopState(step=1) and bool((model.weight == 1).all())
    assert "step-0000002: cannot be loaded" in capfd.readouterr().err
    (folder / "step-0000001" / "model.safetensors").write_bytes(b"nor this")
    with pytest.raises(checkpoint.CheckpointError, match="step-0000002: cannot be loaded .*no older checkpoint loads"):
        load_latest(acc, folder)
