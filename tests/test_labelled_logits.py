"""The output layer runs only where a label is: same loss and same gradients as full logits masked afterwards."""

from __future__ import annotations

import pytest
import torch

from tinydistill.config.schema import StudentConfig
from tinydistill.data.records import Example
from tinydistill.losses import token_cross_entropy
from tinydistill.methods.registry import MultiTaskObjective
from tinydistill.students.collate import MultiTaskCollator, tokenize_tasks
from tinydistill.students.registry import load_student
from tinydistill.students.task_items import ANSWER_TASK, TaskSpec

ROWS = [Example("1", "what goes with a cat?", ("milk", "bone"), 0),
        Example("2", "which one is a colour that the sky often has on a clear day?", ("blue", "loud"), 0),
        Example("3", "pick the animal", ("stone", "dog"), 1)]
TASKS = [TaskSpec(ANSWER_TASK, "answer: ", lambda i, e: e.choices[e.answer], 8),
         TaskSpec("rationale/t", "explain: ", lambda i, e: f"because {e.choices[e.answer]} fits best here" * (i + 1),
                  24)]


def _batch(student, row_weights: bool):
    rows, _ = tokenize_tasks(student, ROWS, TASKS, 48)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(rows)
    if row_weights:
        batch["rationale/t"]["row_weights"] = torch.tensor([1.0, 0.25, 0.5])
    return batch


@pytest.mark.parametrize("model_fixture,prefix_side", [("tiny_t5_dir", "encoder"), ("tiny_t5_dir", "decoder"),
                                                        ("tiny_gpt2_dir", "auto")])
def test_labelled_logits_give_the_full_logits_loss_and_gradients(request, model_fixture, prefix_side):
    torch.manual_seed(0)
    student = load_student(StudentConfig(model=str(request.getfixturevalue(model_fixture)),
                                         prefix_side=prefix_side))
    student.model.eval()  # no dropout: both passes see the same function
    batch = _batch(student, row_weights=True)
    objective = MultiTaskObjective({ANSWER_TASK: 1.0, "rationale/t": 0.5})

    def full_loss() -> torch.Tensor:  # the reference: every position's logits, masked in the loss
        total = torch.zeros(())
        for task, tensors in batch.items():
            logits, labels = student.target_logits(tensors)
            assert logits.shape[:2] == labels.shape
            total = total + objective.task_weights[task] * token_cross_entropy(logits, labels,
                                                                                tensors.get("row_weights"))
        return total

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        student.model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in student.model.parameters() if p.grad is not None]

    reference = full_loss()
    terms = objective.terms(student, batch)
    labelled = sum(w * v for w, v in terms.values())
    assert labelled.item() == pytest.approx(reference.item(), rel=1e-5)
    assert reference.item() > 1.0  # a random tiny model: a real loss, not a degenerate zero
    for a, b in zip(grads(full_loss()), grads(sum(w * v for w, v in objective.terms(student, batch).values())),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # fp32 summation order differs by CPU


def test_only_labelled_positions_reach_the_output_layer(tiny_gpt2_dir):
    """A causal student's prompt positions carry no label: the output layer sees the target tokens alone."""
    student = load_student(StudentConfig(model=str(tiny_gpt2_dir)))
    tensors = _batch(student, row_weights=False)[ANSWER_TASK]
    seen = []
    handle = student.model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.append(a[0].shape))
    try:
        logits, labels, at = student.labelled_logits(tensors)
    finally:
        handle.remove()
    n_labels = int((tensors["labels"] != -100).sum())
    assert seen[0][0] == n_labels == logits.shape[0] == labels.shape[0] == int(at.sum())
    assert n_labels < tensors["input_ids"].numel() / 3  # the prompt dominates the sequence: most work skipped


def test_a_student_without_a_choice_head_says_so_in_one_line(tiny_t5_dir):
    """The choice-head methods every caller may reach exist on every kind; only a choice student implements them."""
    from tinydistill.config.schema import StudentConfig
    from tinydistill.errors import TinyDistillError
    from tinydistill.students.registry import load_student

    student = load_student(StudentConfig(model=str(tiny_t5_dir)))
    for call in (lambda: student.choice_scores({}), lambda: student.masked_rationale_loss({}),
                 lambda: student.masked_rationale_losses({})):
        with pytest.raises(TinyDistillError, match=f"a {student.kind} student has no (choice|masked-rationale) head"):
            call()
