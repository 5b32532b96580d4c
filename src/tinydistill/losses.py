"""Loss terms as pure tensor functions. Shapes: B batch, T target length, V vocabulary.

Labels use -100 for positions that carry no loss (padding, the prompt of a causal student).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def token_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over the valid target tokens of a batch.

    logits: (B, T, V) already aligned with labels (position t predicts labels[:, t]); labels: (B, T).
    row_weights: optional (B,) per-row weights (e.g. down-weighted rationales); each token of row b is
    weighted by row_weights[b] and the sum is divided by the weighted token count. Returns a scalar;
    0 (with grad) when no token is valid.
    """
    per_token = F.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B, T)
    mask = (labels != IGNORE_INDEX).float()
    if row_weights is not None:
        mask = mask * row_weights.to(mask.dtype).unsqueeze(1)
    denom = mask.sum()
    if denom <= 0:
        return logits.sum() * 0.0
    return (per_token * mask).sum() / denom


def sequence_log_likelihood(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """Log-probability of each row's target tokens: (B, T, V), (B, T) → (B,). ``mean`` divides by length."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = labels != IGNORE_INDEX
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
    total = picked.sum(-1)
    if reduction == "mean":
        return total / mask.sum(-1).clamp_min(1)
    if reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}")
    return total


def weighted_total(terms: dict[str, tuple[float, torch.Tensor]]) -> torch.Tensor:
    """Σ weight · term over named terms (the trainer logs each term by name)."""
    total: torch.Tensor | None = None
    for weight, value in terms.values():
        contribution = weight * value
        total = contribution if total is None else total + contribution
    if total is None:
        raise ValueError("no loss terms")
    return total


LOSSES = {
    "answer": token_cross_entropy,
    "rationale": token_cross_entropy,
}
