"""The distillation losses against values computed by hand."""

import math

import pytest
import torch

from tinydistill.losses import IGNORE_INDEX, choice_kl, hidden_mse, shortcut_penalty, soft_label_kl
from tinydistill.methods.whitebox import make_projection


def test_identical_logits_give_zero_kl():
    logits = torch.randn(2, 3, 7)
    labels = torch.zeros(2, 3, dtype=torch.long)
    assert soft_label_kl(logits, logits.clone(), labels, temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_matches_hand_computed_value_and_ignores_masked_tokens():
    # teacher [ln 3, 0] → p = (3/4, 1/4); student [0, 0] → q = (1/2, 1/2)
    student = torch.tensor([[[0.0, 0.0], [9.0, -9.0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0], [-9.0, 9.0]]])
    labels = torch.tensor([[0, IGNORE_INDEX]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_label_kl(student, teacher, labels, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # temperature 2 softens the teacher to [ln 3 / 2, 0] → p = (√3, 1)/(√3 + 1)
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    expected_t2 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert soft_label_kl(student, teacher, labels, 2.0).item() == pytest.approx(expected_t2, rel=1e-6)


def test_temperature_limits():
    torch.manual_seed(0)
    s, t = torch.randn(1, 4, 9), torch.randn(1, 4, 9)
    labels = torch.zeros(1, 4, dtype=torch.long)
    assert soft_label_kl(s, t, labels, 1e4).item() == pytest.approx(0.0, abs=1e-6)  # both uniform
    assert soft_label_kl(s, t, labels, 1.0).item() > soft_label_kl(s, t, labels, 4.0).item() > 0


def test_top_k_buckets_match_full_kl_at_k_equal_v_and_vanish_for_identical_models():
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    labels = torch.zeros(2, 3, dtype=torch.long)

    def kl_top(student, k, temp):
        values, idx = torch.log_softmax(t / temp, dim=-1).topk(k, dim=-1)
        return soft_label_kl(student, values, labels, temp, idx).item()

    assert kl_top(s, 6, 1.5) == pytest.approx(soft_label_kl(s, t, labels, 1.5).item(), rel=1e-4)
    assert kl_top(t, 2, 1.0) == pytest.approx(0.0, abs=1e-6)
    assert 0 <= kl_top(s, 2, 1.0) <= soft_label_kl(s, t, labels).item() + 1e-6  # coarser buckets, smaller KL


def test_hidden_mse_through_an_identity_projection():
    proj = make_projection(3, 3)
    s = torch.tensor([[[1.0, 2.0, 3.0], [100.0, 100.0, 100.0]]])
    t = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[1, 0]])
    expected = (0 + 4 + 9) / 3  # the padded position is ignored
    assert hidden_mse(proj(s), t, mask).item() == pytest.approx(expected, rel=1e-6)
    assert hidden_mse(t, t, torch.ones(1, 2)).item() == 0.0
    one = hidden_mse(torch.tensor([[[3.0]]]), torch.tensor([[[1.0]]]), torch.tensor([[1]]))  # 1 position, H = 1
    assert one.item() == pytest.approx(4.0)
    none = torch.ones(1, 2, 3, requires_grad=True)
    empty = hidden_mse(none, t, torch.zeros(1, 2))  # no valid position: 0 with a gradient, not NaN
    assert empty.item() == 0.0
    empty.backward()
    assert none.grad is not None and none.grad.abs().sum() == 0


def test_projection_between_widths_is_learned_linear():
    proj = make_projection(4, 6)
    assert proj(torch.zeros(1, 2, 4)).shape == (1, 2, 6)


def test_shortcut_penalty_hand_computed():
    prior = torch.tensor([0.75, 0.25])
    # argmaxes: rows 0 and 1 → choice 1, row 2 → choice 0; histogram (1/3, 2/3), smoothed with 0.1 uniform
    scores = torch.tensor([[0.0, math.log(3.0)], [0.0, 1.0], [2.0, 0.0]])
    mean = [0.9 / 3 + 0.05, 0.9 * 2 / 3 + 0.05]
    expected = 0.75 * math.log(0.75 / mean[0]) + 0.25 * math.log(0.25 / mean[1])
    assert shortcut_penalty(scores, prior, 1.0, smoothing=0.1).item() == pytest.approx(expected, rel=1e-6)
    balanced = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert shortcut_penalty(balanced, torch.tensor([0.5, 0.5])).item() == pytest.approx(0.0, abs=1e-7)
    # a choice the training data never has as gold (prior 0) adds nothing (not 0 · log 0 = NaN); a float64
    # prior still gives a float32 value
    three = torch.tensor([[0.0, math.log(3.0), -1.0], [0.0, 1.0, -1.0], [2.0, 0.0, -1.0]])
    zero = shortcut_penalty(three, torch.tensor([0.75, 0.25, 0.0], dtype=torch.float64), smoothing=0.15)
    mean3 = [0.85 / 3 + 0.05, 0.85 * 2 / 3 + 0.05]
    assert zero.dtype == torch.float32
    assert zero.item() == pytest.approx(0.75 * math.log(0.75 / mean3[0]) + 0.25 * math.log(0.25 / mean3[1]), rel=1e-5)


def test_shortcut_penalty_grows_with_collapse_has_gradient_and_handles_missing_choices():
    prior = torch.tensor([0.7, 0.2, 0.1])
    spread = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, float("-inf")]])
    collapsed = torch.tensor([[5.0, 0.0, 0.0]] * 3 + [[5.0, 0.0, float("-inf")]], requires_grad=True)
    value = shortcut_penalty(collapsed, prior, 1.0)
    assert value > 5 * shortcut_penalty(spread, prior, 1.0)
    assert torch.isfinite(value)
    value.backward()
    assert collapsed.grad[:, 1:3][torch.isfinite(collapsed.detach()[:, 1:3])].lt(0).all()  # raise other choices
    # the default temperature is 1: the value reads the argmax histogram, the gradient the softmax at T
    grads = []
    for kwargs in ({}, {"temperature": 1.0}, {"temperature": 2.0}):
        scores = collapsed.detach().clone().requires_grad_(True)
        shortcut_penalty(scores, prior, **kwargs).backward()
        grads.append(scores.grad)
    assert torch.equal(grads[0], grads[1]) and not torch.allclose(grads[1], grads[2])


def test_choice_kl_matches_hand_computed_values_over_present_choices_and_temperature():
    """Row 1: teacher (3/4, 1/4), student (1/3, 2/3) over two present choices (a third is absent, -inf on both
    sides); row 2: identical distributions (0). The mean over rows, at T = 1 and T = 2 (both sides softened)."""
    inf = float("inf")
    student = torch.tensor([[0.0, math.log(2), -inf], [1.0, 2.0, 3.0]])
    teacher = torch.tensor([[math.log(3), 0.0, -inf], [1.0, 2.0, 3.0]])

    def kl(p, q):
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))

    assert choice_kl(student, teacher).item() == pytest.approx(kl([3 / 4, 1 / 4], [1 / 3, 2 / 3]) / 2, abs=1e-6)
    r3, r2 = math.sqrt(3), math.sqrt(2)
    at_2 = kl([r3 / (1 + r3), 1 / (1 + r3)], [1 / (1 + r2), r2 / (1 + r2)]) / 2
    assert choice_kl(student, teacher, temperature=2.0).item() == pytest.approx(at_2, abs=1e-6)
    assert choice_kl(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_label_kl_averages_over_valid_tokens_and_is_zero_without_one():
    student = torch.tensor([[[0.0, math.log(2)], [1.0, 1.0], [5.0, 5.0]]], requires_grad=True)
    teacher = torch.tensor([[[math.log(3), 0.0], [1.0, 1.0], [0.0, 9.0]]])
    per_first = 3 / 4 * math.log((3 / 4) / (1 / 3)) + 1 / 4 * math.log((1 / 4) / (2 / 3))
    labels = torch.tensor([[0, 1, IGNORE_INDEX]])  # two valid tokens (the second: 0), the third ignored
    assert soft_label_kl(student, teacher, labels).item() == pytest.approx(per_first / 2, rel=1e-5)
    none = soft_label_kl(student, teacher, torch.full((1, 3), IGNORE_INDEX))
    assert none.item() == 0.0
    none.backward()
    assert student.grad is not None and student.grad.abs().sum() == 0
