"""The selection eval of the best student is reused as the final valid eval when it is the same evaluation."""

import json

import pytest

import tinydistill.run as run_module
from tests.conftest import run_config
from tinydistill.config.loader import config_from_dict
from tinydistill.run import evaluate_run, run


@pytest.fixture()
def counted(monkeypatch):
    calls: list[int] = []
    real = run_module.evaluate_on

    def evaluate_on(student, cfg, examples, modes=None, progress=False):
        calls.append(len(examples))
        return real(student, cfg, examples, modes=modes, progress=progress)

    monkeypatch.setattr(run_module, "evaluate_on", evaluate_on)
    return calls


def _cfg(tiny_bert_dir, synthetic_data, tmp_path, epochs=2, **overrides):
    raw = run_config(tiny_bert_dir, synthetic_data, tmp_path, method="finetune", **overrides)
    raw["student"]["architecture"] = "multiple_choice"
    raw["train"].update(epochs=epochs, batch_size=16, lr=1e-3)
    raw["eval"]["modes"] = ["rank"]
    return config_from_dict(raw)


def test_valid_is_scored_once_per_selection_and_matches_the_reloaded_best(tiny_bert_dir, synthetic_data, tmp_path,
                                                                          counted):
    cfg = _cfg(tiny_bert_dir, synthetic_data, tmp_path)
    outcome = run(cfg, progress=False, log=lambda *_: None)
    assert counted == [48, 48]  # one selection eval per epoch, no final re-evaluation
    reloaded = evaluate_run(cfg.run_dir, synthetic_data["valid"], out=tmp_path / "again", progress=False)
    assert reloaded.metrics["rank_accuracy"] == outcome.valid.metrics["rank_accuracy"]
    kept = [json.loads(line) for line in (cfg.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in kept] == [r["prediction"] for r in reloaded.predictions]


def test_a_selection_on_part_of_valid_still_scores_all_of_it(tiny_bert_dir, synthetic_data, tmp_path, counted):
    # one selection eval on 20 rows (one epoch) is enough to show the final eval scores all 48
    cfg = _cfg(tiny_bert_dir, synthetic_data, tmp_path, epochs=1, **{"eval.valid_limit": 20})
    run(cfg, progress=False, log=lambda *_: None)
    assert counted == [20, 48]
