"""Evaluation batches rows of similar length together (less padding) and still returns results in input order:
batched scores equal one-row-at-a-time scores for a choice head and a seq2seq student."""

from __future__ import annotations

import pytest
import torch

from tinydistill.config.schema import StudentConfig
from tinydistill.data.batching import longest_first_batches
from tinydistill.data.records import Example
from tinydistill.evaluation.evaluate import generate_answers, rank_choices
from tinydistill.students.registry import load_student

ROWS = [Example(id=str(k), question="Which?" + " very long words here" * k, choices=["a", "bb" * (k + 1), "c", "d d d"],
                answer=k % 4) for k in (0, 7, 1, 5, 2, 9, 0, 3)]


def test_batches_group_lengths_and_cover_every_row_once():
    batches = longest_first_batches([len(ex.question) + max(map(len, ex.choices)) for ex in ROWS], 3)
    assert sorted(i for b in batches for i in b) == list(range(len(ROWS)))
    assert batches[0] == [5, 1, 3]  # k = 9, 7, 5: the longest rows share a batch
    assert [len(b) for b in batches] == [3, 3, 2]


@pytest.mark.parametrize("kind", ["multiple_choice", "seq2seq"])
def test_batched_scores_are_the_per_row_scores_in_input_order(kind, tiny_bert_dir, tiny_t5_dir):
    model = tiny_bert_dir if kind == "multiple_choice" else tiny_t5_dir
    torch.manual_seed(0)
    student = load_student(StudentConfig(model=str(model), architecture=kind))
    student.model.eval()
    if kind == "multiple_choice":  # the fresh head's 0.02-scale weights score every pair alike
        torch.nn.init.normal_(student.model.scorer.classifier.weight, std=3.0)
    kwargs = dict(prefix="", max_input_length=64, answer_style="letter", max_answer_length=8)
    batched = rank_choices(student, ROWS, batch_size=3, **kwargs)
    alone = [rank_choices(student, [ex], batch_size=1, **kwargs)[0] for ex in ROWS]
    assert len(batched) == len(ROWS)
    for got, want in zip(batched, alone, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    assert len({tuple(round(x, 3) for x in row) for row in alone}) > 1  # rows differ, so order is tested
    if kind == "seq2seq":
        texts = generate_answers(student, ROWS, prefix="", max_input_length=64, max_new_tokens=4, batch_size=3)
        assert texts == [generate_answers(student, [ex], prefix="", max_input_length=64, max_new_tokens=4,
                                          batch_size=1)[0] for ex in ROWS]


def test_a_progress_bar_written_to_a_file_ends_its_line(tmp_path, monkeypatch):
    """Output redirected (`> log 2>&1`): the bar ends with a newline, so the result line printed after it is a
    line of its own, not glued after a `\\r`-cleared bar (`rank: 100%|…| test.jsonl …`)."""
    import sys

    from tinydistill.data.records import Example
    from tinydistill.evaluation.evaluate import _in_input_order

    rows = [Example(id=str(k), question="q" * k, choices=("a", "b"), answer=0) for k in range(5)]
    log = tmp_path / "log"
    with open(log, "w") as f:  # both streams into one plain file, as a shell's `> log 2>&1` gives a process
        monkeypatch.setattr(sys, "stdout", f)
        monkeypatch.setattr(sys, "stderr", f)
        _in_input_order(rows, 2, lambda b: [0] * len(b), desc="rank", progress=True)
        print("test.jsonl (5 rows): rank accuracy 100.0%", flush=True)
        monkeypatch.undo()
    text = log.read_bytes().decode()  # as written: no newline translation turning a \r into a line end
    assert "\ntest.jsonl (5 rows): rank accuracy 100.0%\n" in text, repr(text)
    assert "\rrank: 100%" in text, repr(text)  # the finished bar stays in the log
