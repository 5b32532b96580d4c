import math

import pytest
import torch

from tinydistill.losses import (
    IGNORE_INDEX,
    choice_cross_entropy,
    sequence_log_likelihood,
    token_cross_entropy,
    weighted_total,
)


def test_token_cross_entropy_matches_hand_computed_value():
    # two tokens over a 2-word vocabulary: logits [0, 0] → -log(1/2); [log 3, 0] picking index 0 → -log(3/4)
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[1, 0, IGNORE_INDEX]])
    expected = (math.log(2.0) + -math.log(0.75)) / 2
    assert token_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_row_weights_scale_rows_and_zero_weight_ignores_a_row():
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    labels = torch.tensor([[1], [0]])
    only_first = token_cross_entropy(logits, labels, torch.tensor([1.0, 0.0]))
    assert only_first.item() == pytest.approx(math.log(2.0), rel=1e-6)
    weighted = token_cross_entropy(logits, labels, torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx((math.log(2.0) + 3 * -math.log(0.75)) / 4, rel=1e-6)


def test_no_valid_token_gives_zero_with_gradient():
    logits = torch.ones(1, 2, 3, requires_grad=True)
    loss = token_cross_entropy(logits, torch.full((1, 2), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_sequence_log_likelihood_sum_and_mean():
    """B=2 rows, T=3 positions, V=4 words (no two dims alike): row 0 scores words 1, 0 then padding; row 1 word
    3 once. Uniform logits except row 0's second position (log 3 on word 0: p = 3/6)."""
    logits = torch.zeros(2, 3, 4)
    logits[0, 1, 0] = math.log(3.0)
    labels = torch.tensor([[1, 0, IGNORE_INDEX], [3, IGNORE_INDEX, IGNORE_INDEX]])
    row0, row1 = math.log(1 / 4) + math.log(3 / 6), math.log(1 / 4)
    assert sequence_log_likelihood(logits, labels).tolist() == pytest.approx([row0, row1], rel=1e-6)  # sum
    mean = sequence_log_likelihood(logits, labels, "mean")
    assert mean.tolist() == pytest.approx([row0 / 2, row1], rel=1e-6)
    empty = sequence_log_likelihood(logits[:1], torch.full((1, 3), IGNORE_INDEX), "mean")
    assert empty.tolist() == [0.0]  # a row without a target token scores 0, not NaN
    with pytest.raises(ValueError, match="^unknown reduction 'max'$"):
        sequence_log_likelihood(logits, labels, "max")


def test_weighted_total_is_answer_plus_alpha_weighted_rationales():
    terms = {"answer": (1.0, torch.tensor(2.0)), "rationale/a": (0.5, torch.tensor(4.0)),
             "rationale/b": (0.0, torch.tensor(100.0))}
    assert weighted_total(terms).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="^no loss terms$"):
        weighted_total({})


def test_flat_labelled_positions_take_one_weight_per_token():
    """The labelled positions only, flat: logits (N, V), labels (N,), token weights (N,)."""
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]])
    labels = torch.tensor([1, 0, IGNORE_INDEX])
    plain = (math.log(2.0) - math.log(0.75)) / 2
    assert token_cross_entropy(logits, labels).item() == pytest.approx(plain, rel=1e-6)
    weighted = token_cross_entropy(logits, labels, torch.tensor([3.0, 1.0, 5.0]))
    assert weighted.item() == pytest.approx((3 * math.log(2.0) - math.log(0.75)) / 4, rel=1e-6)


def test_choice_cross_entropy_over_present_choices_with_row_weights():
    """Row 1: choices (0, ln 3) and an absent one, gold 1 → -ln(3/4); row 2: two equal choices, gold 0 → ln 2."""
    scores = torch.tensor([[0.0, math.log(3.0), float("-inf")], [0.0, 0.0, float("-inf")]])
    labels = torch.tensor([1, 0])
    a, b = -math.log(0.75), math.log(2.0)
    assert choice_cross_entropy(scores, labels).item() == pytest.approx((a + b) / 2, rel=1e-6)
    assert choice_cross_entropy(scores, labels, torch.tensor([1.0, 3.0])).item() == pytest.approx(
        (a + 3 * b) / 4, rel=1e-6)
    assert choice_cross_entropy(scores, labels, torch.tensor([0.25, 0.25])).item() == pytest.approx((a + b) / 2)
    assert choice_cross_entropy(scores, labels, torch.tensor([1, 3], dtype=torch.float64)).dtype == torch.float32
    assert choice_cross_entropy(scores, labels, torch.tensor([0.0, 0.0])).item() == 0.0  # no weight: 0, not NaN
