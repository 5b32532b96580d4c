"""What one run returns: its config, the selected student's valid (and test) results, teachers and timings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import RunConfig
from .evaluate import EvalResult


@dataclass
class RunOutcome:
    cfg: RunConfig
    valid: EvalResult
    teachers: dict[str, dict]
    train_seconds: float
    eval_seconds: float
    truncation: dict
    n_train: int
    n_params: int
    test: EvalResult | None = None
    test_teachers: dict[str, dict] = field(default_factory=dict)
