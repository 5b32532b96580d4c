"""One process: accelerate places the model, wraps the optimizer and schedule and saves them with the RNG state;
nothing is reduced or shared. :mod:`.ddp` builds on it."""

from __future__ import annotations

import torch

from ...methods import Objective
from ...students import Student
from .base import Strategy


class Local(Strategy):
    """Training in a single process (also what :mod:`.ddp` does on each of several)."""

    name = "none"

    def prepare(self, student: Student, objective: Objective, total_steps: int) -> None:
        self._optimizer(student, objective, total_steps, self.optimizer_class())
        model, self.optimizer, self.scheduler = self.accelerator.prepare(
            student.model, self.optimizer, self.scheduler, device_placement=[True, self.place_optimizer(), True])
        extra = getattr(objective, "checkpoint_module", None)  # e.g. white-box projections: saved, resumed too
        if extra is not None:
            self.accelerator.register_for_checkpointing(extra)
        student.model = self.accelerator.unwrap_model(model)  # objectives call model methods
        self.compute = lambda batch: objective.terms(student, batch)
        self.clipped = [*model.parameters(), *objective.parameters()]  # every trained weight (as DeepSpeed clips)

    def optimizer_class(self) -> type:
        """The optimizer's class (:mod:`.ddp` may shard it)."""
        return torch.optim.AdamW

    def place_optimizer(self) -> bool:
        """Whether accelerate moves the optimizer's state to the device (and round-trips it in checkpoints)."""
        return True
