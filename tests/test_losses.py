import math

import pytest
import torch

from tinydistill.losses import IGNORE_INDEX, sequence_log_likelihood, token_cross_entropy, weighted_total


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
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    loss = token_cross_entropy(logits, torch.full((1, 2), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_sequence_log_likelihood_sum_and_mean():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0], [0, IGNORE_INDEX]])
    total = sequence_log_likelihood(logits, labels, "sum")
    assert total.tolist() == pytest.approx([math.log(0.5) + math.log(0.75), math.log(0.5)], rel=1e-6)
    mean = sequence_log_likelihood(logits, labels, "mean")
    assert mean.tolist() == pytest.approx([(math.log(0.5) + math.log(0.75)) / 2, math.log(0.5)], rel=1e-6)


def test_weighted_total_is_answer_plus_alpha_weighted_rationales():
    terms = {"answer": (1.0, torch.tensor(2.0)), "rationale/a": (0.5, torch.tensor(4.0)),
             "rationale/b": (0.0, torch.tensor(100.0))}
    assert weighted_total(terms).item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        weighted_total({})
