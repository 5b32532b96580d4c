"""Open-answer tasks: SQuAD-normalised exact match and token F1, loading, and a tiny end-to-end run."""

import pytest

from tinydistill.config.loader import config_from_dict
from tinydistill.data.loaders import load_examples
from tinydistill.errors import DataError
from tinydistill.evaluation.openqa import best_over_answers, exact_match, normalize_answer, open_metrics, token_f1
from tinydistill.run import run

from .conftest import PAIRS, run_config, write_jsonl


def test_normalisation_and_exact_match():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert exact_match("the Paris.", "Paris") == 1.0
    assert exact_match("Paris France", "Paris") == 0.0


def test_token_f1_hand_computed():
    # prediction "new york city", gold "new york": precision 2/3, recall 1 → F1 = 0.8
    assert token_f1("new york city", "New York") == pytest.approx(0.8)
    assert token_f1("london", "paris") == 0.0
    assert token_f1("a", "the") == 1.0  # both normalise to empty


def test_best_over_aliases_and_corpus_average():
    assert best_over_answers("JFK", ["John F. Kennedy", "JFK"]) == (1.0, 1.0)
    from tinydistill.data.records import Example

    rows = [Example("1", "q", (), None, answers=("paris",)), Example("2", "q", (), None, answers=("new york",))]
    m = open_metrics(["Paris", "new york city"], rows)
    assert m == pytest.approx({"exact_match": 0.5, "token_f1": (1.0 + 0.8) / 2})


def test_open_rows_load_with_aliases_and_mcqa_validation_stays(tmp_path):
    path = write_jsonl(tmp_path / "o.jsonl", [
        {"id": "a", "question": "capital of France?", "answer": "Paris"},
        {"id": "b", "question": "JFK?", "answer": {"value": "John F. Kennedy", "aliases": ["JFK"]}},
        {"id": "c", "question": "colours?", "answer": ["red", "blue"]},
        {"id": "d", "question": "is water wet?", "answer": True},  # a JSON true: the text, not a crash
    ])
    rows = load_examples(path, task="open")
    assert [r.answers for r in rows] == [("Paris",), ("John F. Kennedy", "JFK"), ("red", "blue"), ("True",)]
    assert all(r.choices == () for r in rows)
    # whole rows: ids (the row number where none is given), stripped questions, domains, answers cleaned
    from tinydistill.config.schema import ColumnsConfig
    from tinydistill.data.records import Example, build_example

    cols = ColumnsConfig(domain="topic")
    raw = [{"question": " capital? ", "answer": [" Paris ", None, "", "Paris", "paris"], "topic": "geo"},
           {"id": " ", "question": "q", "answer": "x", "topic": ""}, {"id": 7, "question": "q", "answer": 3.5}]
    assert [build_example(r, path="o.jsonl", row=i, columns=cols, task="open") for i, r in enumerate(raw)] == [
        Example("0", "capital?", (), None, "geo", answers=("Paris", "paris")),
        Example("1", "q", (), None, None, answers=("x",)), Example("7", "q", (), None, None, answers=("3.5",))]
    assert build_example(raw[0], path="o.jsonl", row=0, task="open").domain is None  # no domain column mapped
    for answer, says in ((None, "missing field"), ([None, " "], "needs a non-empty answer text"),
                         ("", "needs a non-empty answer text")):
        with pytest.raises(DataError, match=f"^o.jsonl:2 field 'answer': {says}$"):
            build_example({"question": "q", "answer": answer}, path="o.jsonl", row=1, line=2, task="open")
    assert build_example({"question": "q"}, path="o.jsonl", row=1, task="open", require_answer=False).answers == ()
    with pytest.raises(DataError, match="choices"):
        load_examples(path)  # the same rows are not MCQA


@pytest.mark.slow
def test_tiny_open_answer_run_reports_em_and_f1(tiny_t5_dir, tmp_path):
    rows = [{"id": f"{i}", "question": f"what goes with a {k}?", "answer": v}
            for i, (k, v) in enumerate(list(PAIRS.items()) * 4)]
    data = {"train": write_jsonl(tmp_path / "t.jsonl", rows), "valid": write_jsonl(tmp_path / "v.jsonl", rows[:8]),
            "rationales": ""}
    cfg = config_from_dict(run_config(tiny_t5_dir, data, tmp_path / "r", method="finetune", teachers=[],
                                      **{"data.task": "open", "train.max_steps": 2,
                                         "train.select_metric": "token_f1"}))
    outcome = run(cfg, progress=False, log=lambda *_: None)
    assert {"exact_match", "token_f1"} <= outcome.valid.metrics.keys()
    rows_out = outcome.valid.predictions  # each row scored against its own gold answers, then averaged
    assert [r["gold"] for r in rows_out] == [[r["answer"]] for r in rows[:8]]
    for r in rows_out:
        em, f1 = best_over_answers(r["prediction_text"], r["gold"])
        assert r["exact_match"] == em and r["token_f1"] == round(f1, 4)
    m = outcome.valid.metrics
    assert m["token_f1"] == pytest.approx(sum(r["token_f1"] for r in rows_out) / 8, abs=1e-4)
    assert m["exact_match"] == pytest.approx(sum(r["exact_match"] for r in rows_out) / 8)
