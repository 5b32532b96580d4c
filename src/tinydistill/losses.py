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

    logits: (B, T, V) already aligned with labels (position t predicts labels[:, t]); labels: (B, T); or the
    labelled positions only, flat: logits (N, V), labels (N,).
    row_weights: optional (B,) per-row weights (e.g. down-weighted rationales); each token of row b is
    weighted by row_weights[b] and the sum is divided by the weighted token count (flat labels: (N,), one per
    token). Returns a scalar; 0 (with grad) when no token is valid.
    """
    per_token = F.cross_entropy(  # flattened (B·T, V): the class dim stays contiguous
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape)  # (B, T)
    mask = (labels != IGNORE_INDEX).float()
    if row_weights is not None:
        weights = row_weights.to(mask.dtype)
        mask = mask * (weights if weights.shape == mask.shape else weights.unsqueeze(1))
    denom = mask.sum()
    if denom <= 0:
        return logits.sum() * 0.0
    return (per_token * mask).sum() / denom


def choice_cross_entropy(
    scores: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over each row's choices: scores (B, K) with -inf for absent choices, labels (B,)."""
    per_row = F.cross_entropy(scores.float(), labels, reduction="none")  # (B,)
    if row_weights is None:
        return per_row.mean()
    w = row_weights.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp_min(1e-8)


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


def soft_label_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
    teacher_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over valid target tokens of KL(p_teacher ‖ p_student), both softened by ``temperature``.

    student_logits: (B, T, V); labels: (B, T) with -100 where no loss. teacher_logits: (B, T, V) logits, or,
    with ``teacher_indices`` (B, T, k), the teacher's top-k *log-probabilities at this temperature* and their
    vocabulary ids: the KL is then taken over k + 1 buckets (the top k ids and "everything else"), which is 0 for
    identical models and equals the full KL when k = V. Not multiplied by T² (the caller weights it). Scalar.
    """
    log_q = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, T, V)
    if teacher_indices is None:
        log_p = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, T, V)
        per_token = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B, T)
    else:
        log_p, log_q = teacher_logits.float(), log_q.gather(-1, teacher_indices.long())  # (B, T, k)
        p_rest = (1 - log_p.exp().sum(-1)).clamp_min(1e-8)  # (B, T) teacher mass outside its top k
        q_rest = (1 - log_q.exp().sum(-1)).clamp_min(1e-8)
        per_token = (log_p.exp() * (log_p - log_q)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
    mask = (labels != IGNORE_INDEX).float()
    denom = mask.sum()
    if denom <= 0:
        return student_logits.sum() * 0.0
    return (per_token * mask).sum() / denom


def choice_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over rows of KL(p_teacher ‖ p_student) across each row's choices, both softened by ``temperature``.

    student_scores, teacher_scores: (B, K) with ``-inf`` for absent choices (the same ones on both sides).
    Not multiplied by T² (the caller weights it). Scalar.
    """
    present = torch.isfinite(teacher_scores)
    log_q = torch.log_softmax(student_scores.float() / temperature, dim=-1)
    log_p = torch.log_softmax(teacher_scores.float() / temperature, dim=-1)
    per_choice = torch.where(present, log_p.exp() * (log_p - log_q), torch.zeros_like(log_p))
    return per_choice.sum(-1).mean()


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between hidden states at the valid positions (Scaling Down's hidden-layer loss).

    student_hidden, teacher_hidden: (B, S, H), already in one space (the caller projects one side);
    mask: (B, S), 1 where the position is a real token. Averaged over valid positions and the H features.
    """
    m = mask.to(student_hidden.dtype).unsqueeze(-1)  # (B, S, 1)
    denom = m.sum() * student_hidden.shape[-1]
    if denom <= 0:
        return student_hidden.sum() * 0.0
    sq = (student_hidden.float() - teacher_hidden.float()).pow(2) * m
    return sq.sum() / denom


def attention_kl(student_attn: torch.Tensor, teacher_attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM's self-attention distribution transfer: mean KL(A_teacher ‖ A_student) over heads and valid queries.

    student_attn, teacher_attn: (N, heads, S, S) attention probabilities (rows sum to 1 over the keys; the same
    number of heads on both sides); mask: (N, S), 1 where the position is a real token (queries elsewhere carry no
    loss; keys elsewhere hold no mass). Scalar.
    """
    eps = 1e-12
    p, q = teacher_attn.float(), student_attn.float()
    per_query = (p * ((p + eps).log() - (q + eps).log())).sum(-1)  # (N, heads, S)
    m = mask.to(per_query.dtype).unsqueeze(1).expand_as(per_query)
    denom = m.sum()
    if denom <= 0:
        return student_attn.sum() * 0.0
    return (per_query * m).sum() / denom


def shortcut_penalty(
    choice_scores: torch.Tensor, prior: torch.Tensor, temperature: float = 1.0, smoothing: float = 0.01
) -> torch.Tensor:
    """KL(prior ‖ the batch's predicted-answer distribution): large when a batch collapses onto one answer.

    choice_scores: (B, C) the student's score (log-likelihood) of each choice, ``-inf`` where a row has fewer
    than C choices; prior: (C,) the label prior of the training data (sums to 1). The value uses the histogram
    of each row's argmax (what evaluation sees), mixed with ``smoothing`` of the uniform distribution so it
    stays finite; the gradient flows straight through ``softmax(scores / temperature)``.
    """
    soft = torch.softmax(choice_scores.float() / temperature, dim=-1)  # (B, C)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)  # (B, C)
    predicted = hard + soft - soft.detach()  # forward: argmax histogram; backward: the soft probabilities
    mean = (1 - smoothing) * predicted.mean(0) + smoothing / soft.shape[-1]  # (C,)
    p = prior.to(mean)
    present = p > 0
    return (p[present] * (p[present].log() - mean[present].log())).sum()


LOSSES = {
    "answer": token_cross_entropy,
    "rationale": token_cross_entropy,
    "kd": soft_label_kl,
    "choice_kd": choice_kl,
    "hidden_mse": hidden_mse,
    "attention_kl": attention_kl,
    "shortcut": shortcut_penalty,
}
