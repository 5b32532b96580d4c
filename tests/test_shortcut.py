"""Anti-shortcut penalty: on a skewed task a plain run collapses onto the frequent answer; the penalty stops it."""

import json
import math
import random

import pytest

from tinydistill.config.loader import config_from_dict
from tinydistill.evaluation.evaluate import collapse_metrics
from tinydistill.run import run

from .conftest import PAIRS, run_config, write_jsonl


def skewed_rows(n: int, seed: int, share_a: float = 0.7) -> list[dict]:
    """'what goes with a cat?' with the gold choice at (a) in ``share_a`` of the rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        animal = rng.choice(list(PAIRS))
        wrong = rng.sample([v for k, v in PAIRS.items() if k != animal], 3)
        pos = 0 if rng.random() < share_a else rng.randrange(1, 4)
        choices = wrong[:pos] + [PAIRS[animal]] + wrong[pos:]
        rows.append({"id": f"k{seed}-{i}", "question": f"what goes with a {animal}?", "choices": choices,
                     "answer": pos})
    return rows


def _cfg(model_dir, tmp_path, **over):
    data = {"train": write_jsonl(tmp_path / "train.jsonl", skewed_rows(96, 1)),
            "valid": write_jsonl(tmp_path / "valid.jsonl", skewed_rows(40, 2)), "rationales": ""}
    base = {"method": "finetune", "teachers": [], "student.answer_target": "letter_text",
            "train.max_steps": 30, "train.eval_every": 30, "train.lr": 3e-3, "eval.modes": ["rank"]}
    return config_from_dict(run_config(model_dir, data, tmp_path / "runs", **{**base, **over}))


@pytest.mark.slow
def test_penalty_prevents_the_collapse_a_plain_run_falls_into(tiny_t5_dir, tmp_path):
    plain = run(_cfg(tiny_t5_dir, tmp_path, name="plain"), progress=False, log=lambda *_: None)
    penal = run(_cfg(tiny_t5_dir, tmp_path, name="penalty", shortcut_penalty_weight=1.0), progress=False,
                log=lambda *_: None)
    top_plain = collapse_metrics([r["rank_prediction"] for r in plain.valid.predictions])["top_share"]
    top_penal = collapse_metrics([r["rank_prediction"] for r in penal.valid.predictions])["top_share"]
    assert top_plain >= 0.95, plain.valid.metrics  # collapsed onto (a)
    assert top_penal <= 0.85, penal.valid.metrics  # the label prior is 0.7
    first = (tmp_path / "runs" / "penalty" / "metrics.jsonl").read_text().splitlines()[0]
    assert '"loss/shortcut"' in first
    assert top_penal < top_plain


def yes_no_rows(n: int, seed: int, share_yes: float = 0.8) -> list[dict]:
    """'does a cat go with a mouse?' — yes in ``share_yes`` of the rows, always choice (a)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        animal = rng.choice(list(PAIRS))
        yes = rng.random() < share_yes
        partner = PAIRS[animal] if yes else rng.choice([v for k, v in PAIRS.items() if k != animal])
        rows.append({"id": f"y{seed}-{i}", "question": f"does a {animal} go with a {partner}?",
                     "choices": ["yes", "no"], "answer": 0 if yes else 1})
    return rows


@pytest.mark.slow
def test_penalty_also_trains_a_multiple_choice_student(tiny_bert_dir, tmp_path):
    """The choice head's scores feed the penalty (it once read sequence-to-sequence choice targets and failed
    with a KeyError): on a yes/no task with 80% yes, a head answering 'yes' to every row pays the KL between
    the label prior and its answers, logged as ``loss/shortcut``."""
    data = {"train": write_jsonl(tmp_path / "train.jsonl", yes_no_rows(96, 1)),
            "valid": write_jsonl(tmp_path / "valid.jsonl", yes_no_rows(40, 2)), "rationales": ""}
    over = {"method": "finetune", "teachers": [], "student.architecture": "multiple_choice",
            "student.max_input_length": 48, "train.max_steps": 30, "train.eval_every": 30, "train.lr": 1e-3,
            "eval.modes": ["rank"], "shortcut_penalty_weight": 1.0}
    result = run(config_from_dict(run_config(tiny_bert_dir, data, tmp_path / "runs", **over)), progress=False,
                 log=lambda *_: None)
    logged = [json.loads(line) for line in (tmp_path / "runs" / "t" / "metrics.jsonl").read_text().splitlines()]
    penalties = [row["loss/shortcut"] for row in logged if "loss/shortcut" in row]
    assert penalties and all(math.isfinite(p) for p in penalties)
    if collapse_metrics([r["rank_prediction"] for r in result.valid.predictions])["top_share"] == 1.0:
        assert penalties[-1] > 0.3  # KL(0.8, 0.2 ‖ ≈1, ≈0): the penalty sees the collapse
