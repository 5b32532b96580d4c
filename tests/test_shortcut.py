"""Anti-shortcut penalty: on a skewed task a plain run collapses onto the frequent answer; the penalty stops it."""

import random

import pytest
import torch

from tinydistill.config.loader import config_from_dict
from tinydistill.data.splits import load_split
from tinydistill.evaluation.evaluate import collapse_metrics
from tinydistill.losses import choice_cross_entropy
from tinydistill.methods.registry import build_method, choice_scores
from tinydistill.run import run
from tinydistill.students.collate import MultiTaskCollator, tokenize_tasks
from tinydistill.students.registry import load_student

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


def test_penalty_also_trains_a_multiple_choice_student(tiny_bert_dir, tmp_path):
    """The choice head's scores feed the penalty (it once read sequence-to-sequence choice targets and failed
    with a KeyError): on a yes/no task with 80% yes, one batch's ``shortcut`` term is KL(label prior ‖ the
    histogram of the head's answers, smoothed by 1%), at the configured weight, beside the answer's loss."""
    data = {"train": write_jsonl(tmp_path / "train.jsonl", yes_no_rows(96, 1)),
            "valid": write_jsonl(tmp_path / "valid.jsonl", yes_no_rows(40, 2)), "rationales": ""}
    over = {"method": "finetune", "teachers": [], "student.architecture": "multiple_choice",
            "student.max_input_length": 48, "eval.modes": ["rank"], "shortcut_penalty_weight": 0.7}
    cfg = config_from_dict(run_config(tiny_bert_dir, data, tmp_path / "runs", **over))
    rows = load_split(cfg.data.train, "train", 0)
    student = load_student(cfg.student)
    plan = build_method(cfg, rows, {}, student)
    items, _ = tokenize_tasks(student, rows[:16], plan.tasks, 48)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(items)
    student.model.eval()
    heads: list[dict] = []
    head = student.choice_scores
    student.choice_scores = lambda b: (heads.append(b), head(b))[1]  # type: ignore[method-assign]
    terms = plan.objective.terms(student, batch)
    assert len(heads) == 1  # the penalty reuses the answer term's scores: the head runs once per batch
    del student.choice_scores
    assert terms.keys() == {"answer", "shortcut"}
    scores = student.choice_scores(batch["answer"])
    torch.testing.assert_close(choice_scores(student, batch["answer"]), scores)  # the head's scores, as they are
    torch.testing.assert_close(terms["answer"][1], choice_cross_entropy(scores, batch["answer"]["labels"]))
    share_yes = sum(ex.answer == 0 for ex in rows) / len(rows)
    prior = torch.tensor([share_yes, 1 - share_yes])
    hist = torch.bincount(scores.argmax(-1), minlength=2).float() / 16
    mean = 0.99 * hist + 0.01 / 2
    expected = (prior * (prior / mean).log()).sum()
    assert terms["shortcut"][0] == 0.7 and expected.item() > 0.01
    torch.testing.assert_close(terms["shortcut"][1], expected)
    terms["shortcut"][1].backward()  # the gradient reaches the head through the soft probabilities
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.model.parameters())


@pytest.mark.parametrize("prefix_side", ["encoder", "decoder"])
def test_penalty_on_a_sequence_to_sequence_student_scores_every_choice_target(tiny_t5_dir, tmp_path, prefix_side):
    """A seq2seq student has no choice head: the penalty scores each row's every choice target (the
    configured rank reduction) and takes KL(label prior ‖ the smoothed histogram of the best-scored choices)."""
    from tinydistill.evaluation.evaluate import rank_choices
    from tinydistill.losses import shortcut_penalty
    from tinydistill.methods.registry import label_prior

    reduction = "sum" if prefix_side == "encoder" else "mean"  # the configured reduction reaches the penalty
    style = "letter_text" if prefix_side == "encoder" else "text"  # and the configured target style
    cfg = _cfg(tiny_t5_dir, tmp_path, shortcut_penalty_weight=0.4, shortcut_temperature=2.0,
               **{"student.prefix_side": prefix_side, "eval.rank_reduction": reduction,
                  "student.answer_target": style})
    rows = load_split(cfg.data.train, "train", 0)
    prior = label_prior(rows)
    gold = torch.tensor([ex.answer for ex in rows])
    torch.testing.assert_close(prior, torch.bincount(gold, minlength=4).float() / len(rows))
    student = load_student(cfg.student)
    plan = build_method(cfg, rows, {}, student)
    items, _ = tokenize_tasks(student, rows[:8], plan.tasks, 64, prefix_side)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(items)
    assert ("choice_decoder_targets" in batch["answer"]) is (prefix_side == "decoder")
    student.model.eval()
    terms = plan.objective.terms(student, batch)
    assert terms.keys() == {"answer", "shortcut"} and terms["shortcut"][0] == 0.4
    scores = choice_scores(student, batch["answer"], cfg.eval.rank_reduction)
    assert scores.shape == (8, 4) and torch.isfinite(scores).all()
    torch.testing.assert_close(choice_scores(student, batch["answer"]),  # "sum" by default
                               choice_scores(student, batch["answer"], "sum"))
    assert plan.notes[-1] == "anti-shortcut penalty: weight 0.4, temperature 2.0"
    assert [t.name for t in plan.tasks] == ["answer"] and plan.tasks[0].choices(0, rows[0]) == [
        f"({'abcd'[c]}) {text}" if style == "letter_text" else text
        for c, text in enumerate(rows[0].choices)]  # every choice's target, as styled
    # the scores evaluation ranks the choices by (another code path): the penalty sees what rank accuracy sees
    ranked = rank_choices(student, rows[:8], prefix=cfg.answer_prefix, max_input_length=64,
                          answer_style=cfg.student.answer_target, max_answer_length=cfg.student.max_answer_length,
                          reduction=cfg.eval.rank_reduction, prefix_side=prefix_side)
    torch.testing.assert_close(scores.detach(), torch.tensor(ranked), rtol=1e-4, atol=1e-4)
    expected = shortcut_penalty(scores, prior, cfg.shortcut_temperature)
    torch.testing.assert_close(terms["shortcut"][1], expected)
    # the value is the argmax histogram's; the temperature and the reduction show in the gradient, which flows
    # through softmax(scores / temperature) of the configured reduction's scores
    params = [p for p in student.model.parameters() if p.requires_grad]
    got = torch.autograd.grad(terms["shortcut"][1], params, allow_unused=True)
    want = torch.autograd.grad(expected, params, allow_unused=True)
    assert sum(g.abs().sum() for g in want if g is not None) > 0
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            torch.testing.assert_close(g, w)


def test_label_prior_is_the_gold_position_frequency_and_needs_gold_answers():
    from tinydistill.data.records import Example
    from tinydistill.errors import TinyDistillError
    from tinydistill.methods.registry import label_prior

    rows = [Example(str(i), "q", ("a", "b", "c"), a) for i, a in enumerate([0, 0, 2, 0])]
    torch.testing.assert_close(label_prior(rows), torch.tensor([0.75, 0.0, 0.25]))
    # a batch with fewer choices than the prior is wide reads the prior renormalised over its own choices
    from types import SimpleNamespace

    from tinydistill.losses import shortcut_penalty
    from tinydistill.methods.registry import ShortcutPenaltyObjective, add_shortcut_penalty

    class Inner:  # an answer objective that scores the batch's choices through the student it is given
        def terms(self, student, batch):
            return {"answer": (1.0, student.choice_scores(batch["answer"]).sum())}

    scores = torch.tensor([[0.2, 1.5], [1.0, -0.5], [0.3, 0.1]])
    student = SimpleNamespace(choice_scores=lambda b: scores)
    penalty = ShortcutPenaltyObjective(Inner(), 0.5, torch.tensor([0.5, 0.3, 0.2]), 2.0, "sum")
    terms = penalty.terms(student, {"answer": {}})
    assert terms["shortcut"][0] == 0.5
    torch.testing.assert_close(terms["shortcut"][1], shortcut_penalty(scores, torch.tensor([0.625, 0.375]), 2.0))
    # only the answer task gets choice targets; a rationale task is left as it is
    from tinydistill.config.loader import config_from_dict
    from tinydistill.methods.registry import MethodPlan, MultiTaskObjective
    from tinydistill.students import TaskSpec

    cfg = config_from_dict({"name": "p", "data": {"train": {"path": "t.jsonl"}, "valid": {"path": "v.jsonl"}},
                            "student": {"model": "m"},
                            "shortcut_penalty_weight": 0.2})
    rationale = TaskSpec("rationale/t", "explain: ", lambda i, ex: "r", 8)
    plan = add_shortcut_penalty(cfg, MethodPlan([TaskSpec("answer", "", lambda i, ex: "a", 8), rationale],
                                                MultiTaskObjective({})), rows)
    assert plan.tasks[1] is rationale and plan.tasks[0].choices is not None
    for empty in ([], [Example("1", "q", ("a", "b"), None)]):
        with pytest.raises(TinyDistillError, match="^shortcut_penalty_weight: the training rows have no gold "
                                                   "answers$"):
            label_prior(empty)
