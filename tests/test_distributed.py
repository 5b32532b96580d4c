"""Scale-out: two CPU processes (gloo) train exactly like one; sharded teaching fills the cache once; the
shipped accelerate configs parse."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tinydistill.config.loader import config_from_dict
from tinydistill.errors import ConfigError
from tinydistill.losses import IGNORE_INDEX, token_cross_entropy
from tinydistill.run import run
from tinydistill.students.registry import load_student, saved_student_config
from tinydistill.training.parallel import parse_shard, shard, task_units

from .conftest import run_config

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(n: int, args: list[str], cwd: Path, accelerate_config: str | None = None) -> subprocess.CompletedProcess:
    """``torchrun`` ``n`` CPU processes of ``tinydistill.cli`` (what ``accelerate launch`` does on GPUs); with
    ``accelerate_config``, through ``accelerate launch --config_file configs/accelerate/<name>.yaml``. DeepSpeed
    configs run as a user without GPUs would launch them: no ACCELERATE_USE_CPU (DeepSpeed's CPU accelerator)."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if accelerate_config and accelerate_config.startswith("deepspeed"):
        del env["ACCELERATE_USE_CPU"]
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(n)]
    if accelerate_config:
        launcher = ["-m", "accelerate.commands.launch", "--config_file",
                    str(REPO / "configs" / "accelerate" / f"{accelerate_config}.yaml"), "--num_processes", str(n),
                    "--mixed_precision", "no"]
    port = ["--main_process_port" if accelerate_config else "--master_port", str(_free_port())]
    cmd = [sys.executable, *launcher, *port, "-m", "tinydistill.cli", *args]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=420)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


#: Logged once per process start (what this process holds), so a resumed or parallel run logs them elsewhere.
STARTED = {"optimizer_state_share", "data_parallel", "parameter_share"}


def _assert_same_records(a: list[dict], b: list[dict], count: int) -> None:
    """The same steps, and every logged loss and valid metric within 1e-4 relative (the start records aside)."""
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == count
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            if k not in STARTED:
                assert rb[k] == (pytest.approx(v, rel=1e-4, abs=1e-6) if isinstance(v, float) else v), (ra["step"], k)


def _ragged_run(synthetic_data: dict[str, Path], tmp_path: Path) -> dict:
    """Overrides for 25 rows in global batches of 12 (each epoch ends with a 1-row batch), checkpoints every 3
    steps, and a teacher whose every third row has no rationale (task units differ by process)."""
    rationales = synthetic_data["rationales"].read_text().splitlines()
    assert len(rationales) > 25
    sparse = tmp_path / "sparse.jsonl"
    sparse.write_text("".join(line + "\n" for i, line in enumerate(rationales) if i % 3))
    return {"data.train.limit": 25, "train.batch_size": 12, "train.epochs": 2, "train.checkpoint_every": 3,
            "train.keep_checkpoints": 5, "eval.modes": ["rank"], "data.valid.limit": 16,
            "teachers": [{"name": "synth", "kind": "imported", "path": str(sparse), "alpha_rationale": 0.5}]}


# ------------------------------------------------------------------------------------------- pure pieces
def test_shards_partition_a_batch_and_parse() -> None:
    batch = list(range(5))
    parts = [shard(batch, i, 2) for i in range(2)]
    assert parts == [[0, 2, 4], [1, 3]]
    assert shard([7], 1, 2) == []  # a last batch smaller than the process count leaves a process idle
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_unit_scaling_makes_shard_losses_sum_to_the_global_mean() -> None:
    """Σ_k (units_k / units) · loss_k equals the loss of the whole batch, with ragged targets and row weights."""
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 11)
    labels = torch.randint(0, 11, (5, 4))
    labels[0, 2:] = IGNORE_INDEX
    labels[3, 1:] = IGNORE_INDEX
    weights = torch.tensor([1.0, 0.5, 1.0, 0.25, 1.0])
    whole = token_cross_entropy(logits, labels, weights)
    total_units = task_units({"t": {"labels": labels, "row_weights": weights}})["t"]
    summed = torch.tensor(0.0)
    for idx in ([0, 2, 4], [1, 3]):
        part = {"labels": labels[idx], "row_weights": weights[idx]}
        units = task_units({"t": part})["t"]
        summed = summed + units / total_units * token_cross_entropy(logits[idx], labels[idx], weights[idx])
    torch.testing.assert_close(summed, whole, rtol=1e-6, atol=0)
    choice = task_units({"a": {"labels": torch.tensor([0, 2, 1]), "choice_mask": torch.ones(3, 4)}})
    assert choice == {"a": 3.0}


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_two_processes_train_like_one_and_resume(tiny_t5_dir, synthetic_data, tmp_path) -> None:
    """25 rows, global batch 12: each epoch ends with a 1-row batch, so one process has nothing to do there.
    Some rows have no rationale (task units differ by process). A one-process run stopped after step 3 is
    resumed by two processes; every logged loss and valid metric, and the final weights, match the
    uninterrupted one-process run."""
    over = _ragged_run(synthetic_data, tmp_path)
    one = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="one", **over))
    run(one, progress=False, log=lambda *_: None)

    two_dict = run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="two", **over)
    two = config_from_dict(two_dict)
    with pytest.raises(KeyboardInterrupt):
        run(two, progress=False, log=lambda *_: None, stop_after_steps=3)
    cfg_path = tmp_path / "two.yaml"
    cfg_path.write_text(yaml.safe_dump(two_dict))
    out = _launch(2, ["train", str(cfg_path), "--no-progress"], tmp_path)
    assert out.stdout.count("run folder:") == 1  # one summary, from the main process

    a, b = _records(one.run_dir), _records(two.run_dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == 8  # 6 steps + 2 evals, no duplicates
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() - STARTED == rb.keys() - STARTED
        for k, v in ra.items():
            if k in STARTED:
                continue
            assert rb[k] == (pytest.approx(v, rel=1e-4, abs=1e-6) if isinstance(v, float) else v), (ra["step"], k)
    last_a, last_b = (sorted((r / "checkpoints").glob("step-*"))[-1] for r in (one.run_dir, two.run_dir))
    assert last_a.name == last_b.name == "step-0000006"
    wa, wb = (load_file(d / "model.safetensors") for d in (last_a, last_b))  # same keys at any world size
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-4, msg=k)
    assert {p.name for p in last_b.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    assert json.loads((two.run_dir / "summary.json").read_text())["valid"]["n"] == 16


@pytest.mark.slow
def test_sharded_optimizer_state_trains_like_one_process_and_its_checkpoint_resumes_alone(
        tiny_t5_dir, synthetic_data, tmp_path) -> None:
    """``train.shard_optimizer_state``: two processes, each holding half of AdamW's moments, log the same losses
    as one process with plain AdamW; one process resuming the sharded run's step-3 checkpoint (the whole state,
    gathered on save) ends with the same weights."""
    over = {"data.train.limit": 24, "train.batch_size": 8, "train.epochs": 2, "train.checkpoint_every": 3,
            "train.keep_checkpoints": 5, "eval.modes": ["rank"], "data.valid.limit": 8}
    one = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="one", **over))
    run(one, progress=False, log=lambda *_: None)

    sharded = run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="zero", **over)
    sharded["train"]["shard_optimizer_state"] = True
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(sharded))
    _launch(2, ["train", str(tmp_path / "zero.yaml"), "--no-progress"], tmp_path)
    zero_dir = tmp_path / "runs" / "zero"
    a, b = _records(one.run_dir), _records(zero_dir)
    # split by whole tensors: the tiny T5's embedding is most of it, so the main process keeps ~0.9 here
    assert a[0]["optimizer_state_share"] == 1.0 and b[0]["optimizer_state_share"] < 0.99
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            if k.startswith("loss"):
                assert rb[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (ra["step"], k)
    saved = torch.load(zero_dir / "checkpoints" / "step-0000003" / "optimizer.bin", weights_only=False)
    n_params = sum(1 for p in load_file(zero_dir / "checkpoints" / "step-0000003" / "model.safetensors"))
    assert len(saved["state"]) >= n_params - 2  # the moments of (nearly) every tensor, not one process's half

    resumed = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="alone", **over))
    (resumed.run_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(zero_dir / "checkpoints" / "step-0000003", resumed.run_dir / "checkpoints" / "step-0000003")
    run(resumed, progress=False, log=lambda *_: None)
    wa, wb = (load_file(d / "checkpoints" / "step-0000006" / "model.safetensors") for d in (one.run_dir,
                                                                                           resumed.run_dir))
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-4, msg=k)


@pytest.mark.slow
def test_fsdp_two_processes_train_like_one_and_resume_from_sharded_checkpoints(
        tiny_t5_dir, synthetic_data, tmp_path) -> None:
    """``accelerate launch --config_file configs/accelerate/fsdp.yaml`` (FSDP2, every T5 block its own unit) on
    two CPU processes: the epochs end with a 1-row batch (one process borrows the rows it lacks) and a third of
    the rows have no rationale. Every logged loss and valid metric matches one process, ``best/`` is a plain
    Hugging Face folder with the same weights, and a run resumed from the sharded step-3 checkpoint ends the same."""
    over = _ragged_run(synthetic_data, tmp_path)
    one = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="one", **over))
    run(one, progress=False, log=lambda *_: None)
    fsdp = run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="fsdp", **over)
    (tmp_path / "fsdp.yaml").write_text(yaml.safe_dump(fsdp))
    out = _launch(2, ["train", str(tmp_path / "fsdp.yaml"), "--no-progress"], tmp_path, accelerate_config="fsdp")
    assert out.stdout.count("run folder:") == 1
    fsdp_dir = tmp_path / "runs" / "fsdp"
    first_record = _records(fsdp_dir)[0]
    assert first_record["data_parallel"] == "fsdp"
    assert 0.45 < first_record["parameter_share"] < 0.55  # each process stores half of every sharded tensor
    assert first_record["optimizer_state_share"] == first_record["parameter_share"]
    assert (fsdp_dir / "checkpoints" / "step-0000003" / "fsdp" / ".metadata").is_file()

    _assert_same_records(_records(one.run_dir), _records(fsdp_dir), count=8)
    wa, wb = (load_file(d / "best" / "model.safetensors") for d in (one.run_dir, fsdp_dir))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-4, msg=k)
    first = json.loads((fsdp_dir / "summary.json").read_text())["valid"]

    # resume: drop the last checkpoint and everything after step 3, as if the run had died there
    shutil.rmtree(fsdp_dir / "checkpoints" / "step-0000006")
    (fsdp_dir / "summary.json").unlink()
    _launch(2, ["train", str(tmp_path / "fsdp.yaml"), "--no-progress"], tmp_path, accelerate_config="fsdp")
    _assert_same_records(_records(one.run_dir), _records(fsdp_dir), count=8)
    assert json.loads((fsdp_dir / "summary.json").read_text())["valid"] == first


@pytest.mark.slow
def test_deepspeed_zero2_two_processes_train_like_one_and_resume(tiny_t5_dir, synthetic_data, tmp_path) -> None:
    """``accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml`` on two CPU processes (DeepSpeed's
    CPU accelerator, gloo), with two micro-batches a step, a 1-row last batch (one process borrows the rows it lacks)
    and a third of the rows without a rationale: every logged loss and valid metric matches one process, each
    process keeps half of AdamW's state, ``best/`` has the same weights, and a run resumed from DeepSpeed's step-3
    checkpoint ends the same."""
    pytest.importorskip("deepspeed")
    sparse = tmp_path / "sparse.jsonl"
    sparse.write_text("".join(line + "\n" for i, line in enumerate(
        synthetic_data["rationales"].read_text().splitlines()) if i % 3))
    # AdamW does not see a constant gradient scale, clipping at every step hides it too: the gradient norms here
    # are about 6.7, 4.2, 2.4, 2.7, 2.1, so clipping at 3 makes a process-count or accumulation factor left in
    # DeepSpeed's gradients change the losses
    over = {"data.train.limit": 25, "train.batch_size": 6, "train.grad_accum_steps": 2, "train.epochs": 2,
            "train.max_grad_norm": 3.0, "train.checkpoint_every": 3, "train.keep_checkpoints": 5,
            "eval.modes": ["rank"], "data.valid.limit": 16,
            "teachers": [{"name": "synth", "kind": "imported", "path": str(sparse), "alpha_rationale": 0.5}]}
    one = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="one", **over))
    run(one, progress=False, log=lambda *_: None)
    raw = run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name="zero", **over)
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(raw))
    launch = ["train", str(tmp_path / "zero.yaml"), "--no-progress"]
    out = _launch(2, launch, tmp_path, accelerate_config="deepspeed_zero2")
    assert out.stdout.count("run folder:") == 1
    zero_dir = tmp_path / "runs" / "zero"
    first = _records(zero_dir)[0]
    assert first["data_parallel"] == "zero2" and first["parameter_share"] == 1.0
    assert 0.45 < first["optimizer_state_share"] < 0.55  # AdamW's fp32 state partitioned over two processes

    _assert_same_records(_records(one.run_dir), _records(zero_dir), count=7)  # 5 steps + 2 evals
    wa, wb = (load_file(d / "best" / "model.safetensors") for d in (one.run_dir, zero_dir))
    assert wa.keys() == wb.keys()
    for k in wa:  # DeepSpeed sums in other orders; AdamW magnifies that rounding where its second moment is small
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=3e-4, msg=k)
    summary = json.loads((zero_dir / "summary.json").read_text())["valid"]

    shutil.rmtree(zero_dir / "checkpoints" / "step-0000005")  # as if the run had died after step 3
    (zero_dir / "summary.json").unlink()
    _launch(2, launch, tmp_path, accelerate_config="deepspeed_zero2")
    _assert_same_records(_records(one.run_dir), _records(zero_dir), count=7)  # 5 steps + 2 evals
    assert json.loads((zero_dir / "summary.json").read_text())["valid"] == summary


@pytest.mark.slow
def test_fsdp_trains_a_choice_student_whose_objective_calls_its_submodules_like_one_process(
        tiny_bert_dir, tmp_path) -> None:
    """TinyLLM on a multiple-choice student: the objective calls the choice scorer and, for each teacher, the
    shared encoder and the masked-rationale head directly, never ``model.forward``. Under FSDP (two processes) the
    losses and the valid metric still match one process, and best/ is a plain loadable folder."""
    from .test_reproduce import choice_config, tinyllm_folder

    data = tinyllm_folder(tmp_path, n_train=48)
    over = {"train": {"epochs": 1, "batch_size": 10, "lr": 1e-2, "mixed_precision": "no", "warmup_ratio": 0.0}}
    one = config_from_dict(choice_config(tiny_bert_dir, data, tmp_path / "runs", method="tinyllm", name="one",
                                         **over))
    run(one, progress=False, log=lambda *_: None)
    raw = choice_config(tiny_bert_dir, data, tmp_path / "runs", method="tinyllm", name="fsdp", **over)
    (tmp_path / "fsdp.yaml").write_text(yaml.safe_dump(raw))
    _launch(2, ["train", str(tmp_path / "fsdp.yaml"), "--no-progress"], tmp_path, accelerate_config="fsdp")
    fsdp_dir = tmp_path / "runs" / "fsdp"
    a = _records(one.run_dir / "rationale_stage") + _records(one.run_dir)  # the rationales first, then the answers
    b = _records(fsdp_dir / "rationale_stage") + _records(fsdp_dir)
    assert b[0]["data_parallel"] == "fsdp" and [r["step"] for r in a] == [r["step"] for r in b]
    assert any(k.startswith("loss/rationale") for k in a[0])
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            if k.startswith("loss") or k == "rank_accuracy":
                assert rb[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (ra["step"], k)
    reloaded = load_student(saved_student_config(one.student, tmp_path / "runs" / "fsdp" / "best"))
    assert reloaded.kind == "multiple_choice"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "whitebox"])
def test_fsdp_matches_ddp_for_adapters_and_white_box_projections(method, tiny_t5_dir, synthetic_data,
                                                                 tmp_path) -> None:
    """LoRA (frozen base weights beside trainable adapters in one unit) and online white-box KD (the teacher
    outside the sharded module, hidden-state projections inside it): two FSDP processes log the losses of two
    DDP processes (the same loss scaling, the same clipping of every trained weight), and the loss falls. So do
    two DeepSpeed ZeRO-2 processes, where DeepSpeed is installed."""
    extra = ({"lora": {"r": 4, "save": "merged"}} if method == "lora" else
             {"whitebox": {"teacher_model": str(tiny_t5_dir), "alpha_kd": 0.5, "signals": "online",
                           "layer_map": [{"side": "encoder", "teacher": 1, "student": 1}]}, "teachers": []})
    losses = {}
    zero = importlib.util.find_spec("deepspeed") is not None
    configs = {"ddp": None, "fsdp": "fsdp", **({"zero2": "deepspeed_zero2"} if zero else {})}
    for engine, accelerate_config in configs.items():
        raw = run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", name=engine, method=method,
                         **{"train.max_steps": 4, "train.eval_every": 4, "train.batch_size": 9,
                            "eval.modes": ["rank"], "data.valid.limit": 8}, **extra)
        (tmp_path / f"{engine}.yaml").write_text(yaml.safe_dump(raw))
        _launch(2, ["train", str(tmp_path / f"{engine}.yaml"), "--no-progress"], tmp_path,
                accelerate_config=accelerate_config)
        records = [r for r in _records(tmp_path / "runs" / engine) if "loss" in r]
        assert records[0]["data_parallel"] == engine
        losses[engine] = records
    for engine in configs:
        assert any(k.startswith("loss/hidden") for k in losses[engine][0]) == (method == "whitebox")
        for ra, rb in zip(losses["ddp"], losses[engine], strict=True):
            for k, v in ra.items():
                if k.startswith("loss"):
                    assert rb[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (engine, ra["step"], k)
        assert losses[engine][-1]["loss"] < losses[engine][0]["loss"]


# --------------------------------------------------------------------------------------------- teaching
def _teach_config(tmp_path: Path) -> tuple[Path, int]:
    from tests.teacher_helpers import make_examples, minilm_tokenizer, tiny_gpt2

    model_dir = tmp_path / "teacher"
    tiny_gpt2().save_pretrained(model_dir)
    minilm_tokenizer().save_pretrained(model_dir)
    n = {"train": 7, "valid": 4}
    for split, k in n.items():
        rows = [{"id": e.id, "question": e.question, "choices": list(e.choices), "answer": e.choices[e.answer]}
                for e in make_examples(k, split)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"name": "sharded", "output_dir": str(tmp_path / "runs"),
           "data": {"train": {"path": str(tmp_path / "train.jsonl")}, "valid": {"path": str(tmp_path / "valid.jsonl")}},
           "teachers": [{"name": "local", "kind": "hf", "model": str(model_dir), "dtype": "float32",
                         "generation": {"max_new_tokens": 3, "batch_size": 4}}]}
    path = tmp_path / "teach.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, sum(n.values())


def test_teach_shards_split_the_rows_and_shard_zero_collects(tmp_path) -> None:
    from tinydistill.config.loader import load_config
    from tinydistill.teach import teach
    from tinydistill.teachers.cache import TeacherCache

    path, n_rows = _teach_config(tmp_path)
    cfg = load_config(path)
    second = teach(cfg, ["train", "valid"], (1, 2))
    assert [r["calls"] for r in second] == [3, 2]  # rows 1::2 of 7 and of 4
    assert not (cfg.run_dir / "teachers").exists()  # only shard 0 writes files
    first = teach(cfg, ["train", "valid"], (0, 2))
    assert [r["calls"] for r in first] == [4, 2] and [r["hits"] for r in first] == [3, 2]  # shard 1's rows
    for split, k in (("train", 7), ("valid", 4)):
        lines = (cfg.run_dir / "teachers" / f"local.{split}.jsonl").read_text().splitlines()
        ids = [json.loads(x)["id"] for x in lines]
        assert ids == [f"{split}{i}" for i in range(k)]
    with TeacherCache(cfg.run_dir / "cache.sqlite") as cache:
        assert len(cache) == n_rows


@pytest.mark.slow
def test_two_teach_processes_fill_the_cache_once(tmp_path) -> None:
    """``tinydistill teach`` under a launcher: each process takes its rank's rows of one shared cache."""
    from tinydistill.teachers.cache import TeacherCache

    path, n_rows = _teach_config(tmp_path)
    out = _launch(2, ["teach", str(path)], tmp_path)
    assert "shard 0/2" in out.stdout and "shard 1/2" in out.stdout
    run_dir = tmp_path / "runs" / "sharded"
    with TeacherCache(run_dir / "cache.sqlite") as cache:
        assert len(cache) == n_rows
        assert cache.totals()["outputs"] == n_rows
    for split, k in (("train", 7), ("valid", 4)):
        assert len((run_dir / "teachers" / f"local.{split}.jsonl").read_text().splitlines()) == k


def test_http_teacher_spreads_requests_over_endpoints_and_retries_on_the_next() -> None:
    import httpx

    from tinydistill.config.teachers import HTTPTeacherSpec
    from tinydistill.teachers.http import HTTPBackend

    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "down.invalid":
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})

    spec = HTTPTeacherSpec(name="r", base_url=["http://a.invalid/v1", "http://b.invalid/v1/"], model="m")
    assert spec.base_url == ("http://a.invalid/v1", "http://b.invalid/v1/")
    b = HTTPBackend(spec.base_url, "m", concurrency=1, transport=httpx.MockTransport(handler))
    prompt = json.dumps([{"role": "user", "content": "hi"}])
    assert [g.text for _, g in b.generate([prompt] * 4, [0] * 4)] == ["ok"] * 4
    assert sorted(hosts) == ["a.invalid", "a.invalid", "b.invalid", "b.invalid"]
    hosts.clear()
    b = HTTPBackend(["http://down.invalid/v1", "http://up.invalid/v1"], "m", backoff_s=0.001,
                    transport=httpx.MockTransport(handler))
    assert b.request(prompt, 0).text == "ok" and hosts == ["down.invalid", "up.invalid"] and b.retries == 1


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED")])
def test_accelerate_configs_load_with_accelerate(name: str, kind: str) -> None:
    """Each shipped config loads as accelerate's ClusterConfig (DeepSpeed's too, without DeepSpeed installed); its
    plugin keys are ``accelerate launch`` options."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    cfg = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.value == kind and cfg.mixed_precision == "bf16"
    options = {a.dest for a in launch_command_parser()._actions}
    assert set(cfg.fsdp_config) <= options and set(cfg.deepspeed_config) <= options
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 2 and not cfg.use_cpu  # use_cpu would launch plain DDP
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2
        assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_zero3_and_fsdp1_are_refused_with_a_pointer_to_what_works(monkeypatch) -> None:
    from accelerate.utils import DistributedType

    from tinydistill.training.parallel.data_parallel import DataParallel
    from tinydistill.training.parallel.deepspeed import zero_stage
    from tinydistill.training.parallel.fsdp import fsdp_plugin

    class Fake:
        distributed_type = DistributedType.DEEPSPEED
        num_processes = 1
        state = SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": 3}}))

    with pytest.raises(ConfigError, match="fsdp.yaml"):
        zero_stage(Fake())  # type: ignore[arg-type]
    Fake.state.deepspeed_plugin.deepspeed_config = {"zero_optimization": {"stage": 2}}
    assert zero_stage(Fake()) == 2  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="engine_reduces=True"):  # else its all-reduce sums twice
        DataParallel(Fake(), ["answer"])  # type: ignore[arg-type]
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    Fake.distributed_type = DistributedType.MULTI_CPU
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        fsdp_plugin(Fake())  # type: ignore[arg-type]
