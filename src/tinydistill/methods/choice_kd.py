"""Standard KD for a multiple-choice student: a white-box choice-model teacher's softened choice distribution.

``L = (1-α)·CE(gold choice) + α·T²·KL(p_teacher ‖ p_student)`` over each row's choices (Hinton et al.). The
teacher is any saved ``AutoModelForMultipleChoice`` folder (``whitebox.teacher_model``), e.g. a larger fine-tuned
scorer, or — when nothing larger exists — the fine-tuned student itself (born-again distillation).
"""

from __future__ import annotations

import torch

from ..config import WhiteboxConfig
from ..losses import choice_cross_entropy, choice_kl
from ..students import ANSWER_TASK, Student
from .choice_whitebox import load_choice_teacher


class ChoiceKDObjective:
    """Answer CE plus the temperature-softened KL to a frozen multiple-choice teacher, run online."""

    def __init__(self, cfg: WhiteboxConfig, student: Student) -> None:
        self.teacher = load_choice_teacher(cfg, student)  # frozen; another kind or tokenizer: one line
        self.cfg = cfg

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def terms(self, student: Student, batch: dict[str, dict[str, torch.Tensor]]) -> dict[
            str, tuple[float, torch.Tensor]]:
        tensors = batch[ANSWER_TASK]
        if next(self.teacher.model.parameters()).device != tensors["input_ids"].device:
            self.teacher.model.to(tensors["input_ids"].device)
        scores = student.choice_scores(tensors)
        with torch.no_grad():
            teacher_scores = self.teacher.choice_scores(tensors)
        alpha, t = self.cfg.alpha_kd, self.cfg.kd_temperature
        return {ANSWER_TASK: (1 - alpha, choice_cross_entropy(scores, tensors["labels"], tensors.get("row_weights"))),
                "kd": (alpha * t * t, choice_kl(scores, teacher_scores, t))}
