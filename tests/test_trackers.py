"""``train.report_to``: accelerate's trackers get the run's name and config once, and every logged record at its
step; TensorBoard's event files are read back, across a resume."""

from __future__ import annotations

import json

import pytest
import yaml
from accelerate.tracking import get_available_trackers

from tinydistill.cli import main
from tinydistill.config.loader import config_from_dict
from tinydistill.errors import ConfigError
from tinydistill.run import run
from tinydistill.training.tracking import TRACKERS, values

from .conftest import run_config

OVER = {"train.max_steps": 12, "train.checkpoint_every": 4, "train.eval_every": 4, "eval.modes": ["rank"],
        "train.report_to": ["tensorboard"]}


def _events(folder):
    """TensorBoard's reader of ``folder`` (only the test that writes event files needs tensorboard)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    return accumulator.EventAccumulator(str(folder))


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    ea = _events(folder)
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def _hparams(folder) -> dict:
    plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
    ea = _events(folder)
    ea.Reload()
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


@pytest.mark.slow
def test_tensorboard_receives_the_config_once_and_every_record_at_its_step_across_a_resume(tiny_t5_dir,
                                                                                            synthetic_data, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path, **OVER))
    with pytest.raises(KeyboardInterrupt):  # steps 5 and 6 are logged, then lost with the process: resume at 4
        run(cfg, progress=False, log=lambda *_: None, stop_after_steps=6)
    run(cfg, progress=False, log=lambda *_: None)

    board = cfg.run_dir / "tensorboard"
    scalars = _scalars(board)
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "split" not in r]
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["step"] for r in train] == list(range(1, 13)) and [r["step"] for r in valid] == [4, 8, 12]
    for tag in ("loss", "loss/answer", "loss/rationale/synth", "lr"):  # every term, each step once (5, 6 purged)
        assert [s for s, _ in scalars[tag]] == list(range(1, 13)), tag
        assert [v for _, v in scalars[tag]] == pytest.approx([r[tag] for r in train], rel=1e-6), tag
    for metric in ("rank_accuracy", "rank_top_share"):
        assert scalars[f"valid/{metric}"] == [(r["step"], pytest.approx(r[metric], rel=1e-6)) for r in valid]
    # the config and run name: once per process start (two here), each in its own hparams session
    sessions = [p for p in board.iterdir() if p.is_dir() and any(p.glob("events.out.tfevents.*"))]
    assert len(sessions) == 2
    for session in sessions:
        hp = _hparams(session)
        assert hp["run_name"] == "t" and hp["method"] == "tinyllm"
        assert hp["train.lr"] == pytest.approx(3e-3) and hp["train.report_to"] == '["tensorboard"]'


def test_tracker_values_name_valid_metrics_by_split_and_keep_numbers_only():
    assert values({"step": 3, "epoch": 0, "lr": 1e-3, "loss": 2.0, "loss/answer": 1.5, "data_parallel": "none"}) == {
        "epoch": 0, "lr": 1e-3, "loss": 2.0, "loss/answer": 1.5}
    assert values({"step": 3, "epoch": 0, "split": "valid", "rank_accuracy": 0.5, "valid_loss": 1.2,
                   "improved": True}) == {"valid/rank_accuracy": 0.5, "valid/loss": 1.2}


def test_a_tracker_that_is_not_installed_is_a_one_line_error(tiny_t5_dir, synthetic_data, tmp_path, capsys):
    available = {str(t) for t in get_available_trackers()}
    missing = next((name for name in TRACKERS if name not in available), None)
    if missing is None:
        pytest.skip("every tracker is installed here")
    raw = run_config(tiny_t5_dir, synthetic_data, tmp_path, **{**OVER, "train.report_to": [missing]})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: train.report_to: {missing} is not installed (pip install {missing})"
    assert not (tmp_path / "t" / "checkpoints").exists()


def test_an_unknown_tracker_name_names_the_field(tiny_t5_dir, synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.report_to"):
        config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path, **{"train.report_to": ["tensorbord"]}))


@pytest.mark.slow
def test_a_tinyllm_runs_rationale_stage_logs_into_the_same_tracker_run(tiny_bert_dir, tmp_path):
    """One training run, one tracker run: the rationale stage's records under `rationale_stage/`, the answer
    stage's steps continuing after it, in the run's one TensorBoard folder (not a second one restarting at 1)."""
    from tests.test_reproduce import choice_config, tinyllm_folder

    raw = choice_config(tiny_bert_dir, tinyllm_folder(tmp_path, n_train=40), tmp_path / "runs", method="tinyllm",
                        train={"max_steps": 4, "batch_size": 8, "lr": 5e-3, "mixed_precision": "no",
                               "warmup_ratio": 0.0, "rationale_stage_epochs": 0.5, "report_to": ["tensorboard"]})
    raw["data"]["valid_from_train"] = 8
    outcome = run(config_from_dict(raw), progress=False, log=lambda *_: None)
    run_dir = outcome.cfg.run_dir
    assert not (run_dir / "rationale_stage" / "tensorboard").exists()
    scalars = _scalars(run_dir / "tensorboard")
    stage = [json.loads(line) for line in (run_dir / "rationale_stage" / "metrics.jsonl").read_text().splitlines()]
    n = stage[-1]["step"]
    assert [s for s, _ in scalars["rationale_stage/loss"]] == [r["step"] for r in stage] and n >= 1
    assert "rationale_stage/loss/rationale/flan_t5" in scalars
    assert [s for s, _ in scalars["loss"]] == [n + k for k in range(1, 5)]  # answer steps 1-4, after the stage's
    assert [s for s, _ in scalars["valid/rank_accuracy"]] == [n + 4]


def test_a_tracker_that_fails_to_start_stops_the_run_in_one_line_before_the_data_is_read(
        tiny_t5_dir, synthetic_data, tmp_path, capsys, monkeypatch):
    raw = run_config(tiny_t5_dir, synthetic_data, tmp_path, **OVER)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tensorboard").write_text("a file where TensorBoard wants its folder")

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the trackers started")

    monkeypatch.setattr("tinydistill.run.load_train_valid", no_data)
    assert main(["train", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: train.report_to: tensorboard failed to start (") and "report_to" in err, err
