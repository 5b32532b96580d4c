"""Hyperparameter search: trials are ordinary runs, the SQLite study resumes, bad spaces name file/line/key."""

import json

import pytest
import yaml

from tinydistill.cli import main
from tinydistill.errors import ConfigError
from tinydistill.study.search import load_space

from .conftest import run_config

SPACE = """\
train.lr: {type: loguniform, low: 1e-4, high: 1.0e-2}
train.batch_size: {type: categorical, choices: [4, 8]}
teachers.0.alpha_rationale: {type: uniform, low: 0.1, high: 1.0}
"""


@pytest.fixture()
def search_files(tiny_t5_dir, synthetic_data, tmp_path):
    cfg = run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", method="finetune", **{  # α: set, not trained
        "name": "s", "train.epochs": 1, "data.train.limit": 8, "data.valid.limit": 16, "eval.modes": ["rank"],
        "train.eval_every": 1})
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(cfg))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return config, space, tmp_path / "study"


def _search(config, space, study, *extra: str) -> int:
    return main(["search", str(config), "--space", str(space), "--study-dir", str(study), "--no-progress", *extra])


@pytest.mark.slow
def test_random_search_completes_persists_and_resumes(search_files, capsys):
    config, space, study = search_files
    assert _search(config, space, study, "--trials", "3", "--sampler", "random", "--pruner", "none") == 0
    out = json.loads((study / "trials.json").read_text())
    assert [t["state"] for t in out["trials"]] == ["complete"] * 3
    assert {t["run"] for t in out["trials"]} == {"trial_0", "trial_1", "trial_2"}
    for t in out["trials"]:  # each trial is a normal run with its sampled values and its reported evaluations
        run_cfg = yaml.safe_load((study / t["run"] / "config.yaml").read_text())
        assert run_cfg["train"]["lr"] == pytest.approx(t["params"]["train.lr"])
        assert 1e-4 <= run_cfg["train"]["lr"] <= 1e-2 and run_cfg["train"]["batch_size"] in (4, 8)
        assert run_cfg["teachers"][0]["alpha_rationale"] == pytest.approx(t["params"]["teachers.0.alpha_rationale"])
        summary = json.loads((study / t["run"] / "summary.json").read_text())
        assert t["value"] == pytest.approx(summary["valid"]["rank_accuracy"])
        assert t["last_step"] is not None
    best = max(out["trials"], key=lambda t: t["value"])
    assert out["best"]["number"] == best["number"]
    best_cfg = yaml.safe_load((study / "best_config.yaml").read_text())
    assert best_cfg["train"]["lr"] == pytest.approx(best["params"]["train.lr"]) and best_cfg["name"] == "s-best"
    assert (study / "study.db").is_file() and (study / "history.png").read_bytes().startswith(b"\x89PNG")
    assert "★" in (study / "trials.md").read_text()
    first_summary = (study / "trial_0" / "summary.json").stat().st_mtime_ns

    assert _search(config, space, study, "--trials", "4") == 0  # resumes: exactly one more trial
    out2 = json.loads((study / "trials.json").read_text())
    assert len(out2["trials"]) == 4 and out2["trials"][:3] == out["trials"]
    assert (study / "trial_0" / "summary.json").stat().st_mtime_ns == first_summary
    assert out2["trials"][3]["params"] not in [t["params"] for t in out["trials"]]  # the sampler moved on
    assert "4 trials; best trial" in capsys.readouterr().out


@pytest.mark.slow
def test_pruned_and_interrupted_trials(search_files, monkeypatch):
    import optuna

    from tinydistill import run as run_module
    from tinydistill.study import search as search_module
    from tinydistill.study.search import run_search

    config, space, study = search_files
    real_run = run_module.run

    def interrupted(cfg, **kw):  # Ctrl-C after the first optimizer step, as a user would
        real_run(cfg, **{**kw, "stop_after_steps": 1})

    monkeypatch.setattr(search_module, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_search(config, space, trials=1, study_dir=study, log=lambda *_: None)
    monkeypatch.setattr(search_module, "run", real_run)
    result = run_search(config, space, trials=1, study_dir=study, log=lambda *_: None)
    first, retry = result["trials"]
    assert first["state"] == "fail" and retry["state"] == "complete"
    assert retry["params"] == first["params"] and retry["run"] == "trial_0"  # resumed in the same run folder
    assert not (study / "trial_1").exists()

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    result = run_search(config, space, trials=2, study_dir=study, log=lambda *_: None)
    pruned = result["trials"][-1]
    assert pruned["state"] == "pruned" and pruned["last_step"] == 1
    assert not (study / pruned["run"] / "summary.json").exists()  # stopped at its first valid evaluation


@pytest.mark.parametrize("text,expected", [
    ("train.lr: {type: loguniform, low: 1e-5, high: 1e-3}\ntrain.batch_size: {type: normal, low: 1, high: 2}\n",
     r"space.yaml:2: train.batch_size: unknown type 'normal'"),
    ("train.lr: {type: uniform, low: 0.1, high: 0.01}\n", r"space.yaml:1: train.lr: low \(0.1\) must be below high"),
    ("\n\ntrain.lr: {type: categorical, choices: []}\n", r"space.yaml:3: train.lr: categorical needs a non-empty"),
    ("train.lr: [1, 2\n", r"space.yaml:2: malformed YAML"),
])
def test_bad_space_names_file_line_and_key(tmp_path, text, expected):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_space(path)


def test_a_key_the_config_refuses_is_a_one_line_error(search_files, capsys):
    config, space, study = search_files
    space.write_text(SPACE + "train.warmup_ratio: {type: uniform, low: 0.5, high: 1.5}\ntrain.lrr: "
                             "{type: uniform, low: 0.1, high: 0.2}\n")
    assert _search(config, space, study, "--trials", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {space}:4: train.warmup_ratio: value 1.5 is refused")
    assert not (study / "study.db").exists()  # nothing ran
