"""The rationale stage's joint pass: every teacher's (source, rationale) rows of a batch are sorted by length across
teachers for the encoder passes, and the masked-rationale head runs once over all masked tokens. Same losses and
gradients as one pass per teacher; a resumed run (with dropout, so the generator state matters) equals the
uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForMultipleChoice

from tests.test_reproduce import choice_config, tinyllm_folder
from tinydistill.config.loader import config_from_dict
from tinydistill.config.schema import StudentConfig
from tinydistill.data.records import Example
from tinydistill.methods.registry import MultiTaskObjective
from tinydistill.run import run
from tinydistill.students.collate import MultiTaskCollator, TaskSpec, tokenize_tasks
from tinydistill.students.registry import load_student

ROWS = [Example(str(i), f"what goes with a {a}?" + " really" * (i % 4), ("milk", "bone", "seed"), i % 3)
        for i, a in enumerate(("cat", "dog", "bird", "cow", "fish", "hen"))]
SHORT = ["cats drink milk", "dogs chew", "birds eat seed", "cows", "fish", "hens peck seed all day long"]
LONG = ["milk is what a cat drinks most of the time, warm or cold", "a bone", "seed", "grass and milk",
        "water", "seeds and grain"]


def batch_and_student(tiny_bert_dir, weights: bool):
    student = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice"),
                           with_rationale_head=True)
    w = (lambda i: 0.25 + 0.25 * (i % 3)) if weights else None
    tasks = [TaskSpec("rationale/flan", "explain flan: ", lambda i, e: SHORT[i], 16, w),
             TaskSpec("rationale/llama", "explain llama: ", lambda i, e: LONG[i] if i != 2 else None, 24)]
    items, _ = tokenize_tasks(student, ROWS, tasks, 48, mask_ratio=0.4, mask_seed=0)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(items)
    assert batch["rationale/flan"]["input_ids"].shape[1] != batch["rationale/llama"]["input_ids"].shape[1]
    return student, batch


def loss_and_grads(student, batch, joint: bool) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    student.model.zero_grad(set_to_none=True)
    if joint:  # what the objective does
        terms = MultiTaskObjective({"rationale/flan": 0.5, "rationale/llama": 0.7}).terms(student, batch)
    else:  # one encoder and head pass per teacher
        terms = {t: (w, student.masked_rationale_loss(batch[t]))
                 for t, w in (("rationale/flan", 0.5), ("rationale/llama", 0.7))}
    sum(w * v for w, v in terms.values()).backward()
    grads = {n: p.grad.clone() for n, p in student.model.named_parameters() if p.grad is not None}
    return {t: v.item() for t, (_, v) in terms.items()}, grads


@pytest.mark.parametrize("weights", [False, True])
def test_one_joint_pass_gives_the_per_teacher_losses_and_gradients(tiny_bert_dir, weights):
    student, batch = batch_and_student(tiny_bert_dir, weights)
    student.model.eval()  # no dropout: the two layouts must then agree to rounding
    per_task, per_task_grads = loss_and_grads(student, batch, joint=False)
    joint, joint_grads = loss_and_grads(student, batch, joint=True)
    assert per_task.keys() == joint.keys()
    for task in per_task:
        assert joint[task] == pytest.approx(per_task[task], rel=1e-5, abs=1e-6)
    assert per_task_grads.keys() == joint_grads.keys() and len(joint_grads) > 10  # encoder, embeddings, head
    for name, g in per_task_grads.items():
        torch.testing.assert_close(joint_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_one_task_alone_is_its_plain_loss(tiny_bert_dir):
    student, batch = batch_and_student(tiny_bert_dir, weights=True)
    student.model.eval()
    one = {"rationale/flan": batch["rationale/flan"]}
    assert student.masked_rationale_losses(one)["rationale/flan"].item() == pytest.approx(
        student.masked_rationale_loss(batch["rationale/flan"]).item(), rel=1e-6)


@pytest.mark.slow  # three runs; a thrown-away RNG state on resume fails the fast test_training.py resume test too
def test_a_run_with_dropout_stopped_in_the_rationale_stage_resumes_to_the_uninterrupted_result(tmp_path,
                                                                                              tiny_bert_dir,
                                                                                              monkeypatch):
    """Through the selective readout (students/bert_readout.py: eager attention, as the quickstart): its dropout
    draws follow the generator the checkpoint restores."""
    from tinydistill.students import bert_readout

    read = []
    real_hidden_at = bert_readout.hidden_at
    monkeypatch.setattr(bert_readout, "hidden_at", lambda *a: read.append(1) or real_hidden_at(*a))
    data = tinyllm_folder(tmp_path)

    def cfg(out):
        raw = choice_config(tiny_bert_dir, data, out, method="tinyllm",
                            train={"epochs": 1, "batch_size": 8, "lr": 1e-2, "mixed_precision": "no",
                                   "warmup_ratio": 0.0, "rationale_stage_epochs": 2, "checkpoint_every": 1})
        raw["student"]["attention_dropout"] = 0.2  # random masks in every joint pass: the resumed draws must match
        raw["student"]["attn_implementation"] = "eager"
        return config_from_dict(raw)

    whole = run(cfg(tmp_path / "a"), progress=False, log=lambda *_: None)
    assert read  # the rationale stage went through the selective readout
    with pytest.raises(KeyboardInterrupt, match="rationale stage"):
        run(cfg(tmp_path / "b"), progress=False, log=lambda *_: None, stop_after_steps=3)
    resumed = run(cfg(tmp_path / "b"), progress=False, log=lambda *_: None)
    assert resumed.valid.metrics == whole.valid.metrics
    a = AutoModelForMultipleChoice.from_pretrained(whole.cfg.run_dir / "best").state_dict()
    b = AutoModelForMultipleChoice.from_pretrained(resumed.cfg.run_dir / "best").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_answer_and_every_teachers_rationale_get_their_terms_with_row_weights(tiny_bert_dir):
    """A batch of the answer task (the choice head, rows weighted) and two teachers' masked rationales: each task
    gets its own weighted term; the answer's is the row-weighted choice cross-entropy (a row weighing 0 left
    out), the rationales' those of their own passes."""
    from tinydistill.losses import choice_cross_entropy
    from tinydistill.students import ANSWER_TASK

    student, _ = batch_and_student(tiny_bert_dir, weights=False)
    torch.manual_seed(1)
    with torch.no_grad():  # a random tiny scorer gives every choice nearly the same score: spread them
        for p in student.model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    row_weight = [1.0, 0.5, 0.0, 1.0, 0.75, 0.25]  # row 2 weighs 0: left out, as for every student kind
    tasks = [TaskSpec(ANSWER_TASK, "", lambda i, e: "x", 8, lambda i: row_weight[i]),
             TaskSpec("rationale/flan", "explain flan: ", lambda i, e: SHORT[i], 16),
             TaskSpec("rationale/llama", "explain llama: ", lambda i, e: LONG[i], 24)]
    items, _ = tokenize_tasks(student, ROWS, tasks, 48, mask_ratio=0.4, mask_seed=0)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(items)
    assert list(batch) == [ANSWER_TASK, "rationale/flan", "rationale/llama"]
    student.model.eval()
    terms = MultiTaskObjective({ANSWER_TASK: 1.0, "rationale/flan": 0.5, "rationale/llama": 0.7}).terms(student, batch)
    assert {t: w for t, (w, _) in terms.items()} == {ANSWER_TASK: 1.0, "rationale/flan": 0.5, "rationale/llama": 0.7}
    with torch.no_grad():
        scores = student.choice_scores(batch[ANSWER_TASK])
        labels = batch[ANSWER_TASK]["labels"]
        kept = [i for i, w in enumerate(row_weight) if w > 0]
        assert batch[ANSWER_TASK]["row_index"].tolist() == kept
        weighted = choice_cross_entropy(scores, labels, torch.tensor([row_weight[i] for i in kept]))
        assert weighted.item() != pytest.approx(choice_cross_entropy(scores, labels).item(), rel=1e-3)
        assert terms[ANSWER_TASK][1].item() == pytest.approx(weighted.item(), rel=1e-5)
        for task in ("rationale/flan", "rationale/llama"):
            assert terms[task][1].item() == pytest.approx(student.masked_rationale_loss(batch[task]).item(), rel=1e-5)
