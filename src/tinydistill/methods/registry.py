"""Methods: which tasks a method trains on and which weighted loss terms it sums.

One registry, :data:`METHODS`, maps a config's ``method:`` to a builder. A builder returns a :class:`MethodPlan`:
the tasks to tokenise (answer, each teacher's rationale, …) and the objective the trainer calls per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from transformers.modeling_outputs import BaseModelOutput

from ..config import RunConfig
from ..data import Example, answer_target, without_stated_answer
from ..errors import TinyDistillError
from ..losses import choice_cross_entropy, sequence_log_likelihood, shortcut_penalty, token_cross_entropy
from ..students import ANSWER_TASK, Student, TaskSpec, rationale_task
from ..teachers import Teacher
from .objective import Objective

Batch = dict[str, dict[str, torch.Tensor]]
Terms = dict[str, tuple[float, torch.Tensor]]


class MultiTaskObjective:
    """Σ_task weight · token cross-entropy of that task's target (TinyLLM eq. 2 when tasks are rationales)."""

    def __init__(self, task_weights: dict[str, float]) -> None:
        self.task_weights = dict(task_weights)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Trainable weights the objective owns besides the student's (a projection, say)."""
        return []

    def terms(self, student: Student, batch: Batch) -> Terms:
        out: Terms = {}
        encoded = student.shared_encoding(batch)
        # a multiple-choice student's masked rationale tokens: every teacher's rows in one encoder pass
        masked = {task: tensors for task, tensors in batch.items() if "mlm_labels" in tensors}
        masked_losses = student.masked_rationale_losses(masked) if masked else {}
        for task, tensors in batch.items():  # one forward per task (answer, each teacher)
            weight = self.task_weights.get(task, 0.0)
            if "choice_mask" in tensors:  # a multiple-choice student's answer head
                scores = student.choice_scores(tensors)
                out[task] = (weight, choice_cross_entropy(scores, tensors["labels"], tensors.get("row_weights")))
                continue
            if task in masked_losses:
                out[task] = (weight, masked_losses[task])
                continue
            if encoded is not None:  # this task's rows of the one shared encoder pass
                idx = tensors["source_index"]
                reads = {**tensors, "attention_mask": tensors["shared_attention_mask"][idx]}
                logits, labels, at = student.labelled_logits(reads, BaseModelOutput(last_hidden_state=encoded[idx]))
            else:
                logits, labels, at = student.labelled_logits(tensors)
            row_weights = tensors.get("row_weights")
            token_weights = None if row_weights is None else row_weights.unsqueeze(1).expand_as(at)[at]
            out[task] = (weight, token_cross_entropy(logits, labels, token_weights))
        return out


@dataclass
class RationaleStage:
    """Rationale-only training that runs before the answer stage, from the same student: the rationale tasks,
    their weighted objective (``α_m`` per teacher) and how many epochs."""

    tasks: list[TaskSpec]
    objective: Objective
    epochs: float


@dataclass
class MethodPlan:
    """What a method trains on (tasks, rows) and optimises (objective), plus how it saves and evaluates.

    ``rows``: the training rows to tokenise, when the method rewrites them (PINTO adds rationales);
    ``eval_rows``: the same rewrite for valid/test rows at evaluation; ``save``/``load_best``: how the best
    student is written and read back (LoRA); ``prepare``: called with the tokenised rows before training
    (cached teacher signals); ``notes``: lines for the report; ``rationale_stage``: rationale-only training
    before ``tasks`` (see :func:`rationale_stage_epochs`).
    """

    tasks: list[TaskSpec]
    objective: Objective
    trains: bool = True
    notes: list[str] = field(default_factory=list)
    rows: list[Example] | None = None
    eval_rows: Callable[[Sequence[Example]], list[Example]] | None = None
    save: Callable[[Student, Path], None] | None = None
    load_best: Callable[[Path], Student] | None = None
    prepare: Callable[[list], None] | None = None
    rationale_stage: RationaleStage | None = None


def rationale_stage_epochs(cfg: RunConfig, student: Student) -> float:
    """Epochs of rationale-only training before the answer stage: ``train.rationale_stage_epochs``, or by
    default 1 for a multiple-choice student's masked-rationale head and 0 (the joint objective) otherwise.

    Measured on OBQA (README, reading notes): trained jointly from the first step, the rationale terms' gradients
    on the shared encoder drown the answer's while the choice head is still random (answer loss stuck at ln 4);
    learning the rationales first and the answers after lifts the student above answer-only fine-tuning."""
    if cfg.train.rationale_stage_epochs is not None:
        return cfg.train.rationale_stage_epochs
    return 1.0 if getattr(student.model, "mlm_head", None) is not None else 0.0


def staged(cfg: RunConfig, student: Student, rationale: list[TaskSpec], weights: dict[str, float],
           joint: MethodPlan) -> MethodPlan:
    """``joint`` as it is, or — with a rationale stage — the rationale tasks first, then the answer alone."""
    epochs = rationale_stage_epochs(cfg, student)
    if epochs <= 0 or not rationale:
        return joint
    stage = RationaleStage(rationale, MultiTaskObjective(weights), epochs)
    note = (f"rationale stage: {epochs:g} epoch(s) on {', '.join(t.name for t in rationale)} "
            f"(weights {', '.join(f'{w:g}' for w in weights.values())}), then the answer stage")
    return MethodPlan([answer_task(cfg)], MultiTaskObjective({ANSWER_TASK: 1.0}), rationale_stage=stage,
                      notes=[note])


def gold_target(ex: Example, style: str) -> str | None:
    """The answer target of one row: the gold choice (MCQA) or the first gold answer text (open tasks)."""
    if not ex.choices:
        answers = getattr(ex, "answers", ())
        return answers[0] if answers else None
    return answer_target(ex.choices, ex.answer, style) if ex.answer is not None else None


def answer_task(cfg: RunConfig) -> TaskSpec:
    style = cfg.student.answer_target
    return TaskSpec(ANSWER_TASK, cfg.answer_prefix, lambda i, ex: gold_target(ex, style),
                    cfg.student.max_answer_length)


def _by_row(values: Sequence[Any]) -> Callable[..., Any]:
    """A task's per-row lookup (``target(i, ex)``, ``weight(i)``): the value of row ``i``."""
    return lambda i, *_: values[i]


def rationale_tasks(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher]) -> tuple[
        list[TaskSpec], dict[str, float]]:
    """One rationale task per active teacher: its own prefix, its rationales, its per-row weights and α_m."""
    tasks, weights = [], {}
    for spec in cfg.active_teachers():
        teacher = teachers[spec.name]
        texts = teacher.rationales(train_rows)
        weigh = getattr(teacher, "rationale_weights", None)
        row_weights = weigh(train_rows) if weigh else None
        tasks.append(TaskSpec(
            rationale_task(spec.name), spec.student_prefix, _by_row(texts), cfg.student.max_rationale_length,
            _by_row(row_weights) if row_weights is not None else None,
        ))
        weights[rationale_task(spec.name)] = spec.alpha_rationale
    return tasks, weights


def build_tinyllm(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                  student: Student) -> MethodPlan:
    """``L = L_answer + Σ_m α_m · L_rationale(teacher m)``, one task prefix per teacher; with a rationale stage,
    ``Σ_m α_m · L_rationale(teacher m)`` first, then ``L_answer``."""
    tasks, weights = rationale_tasks(cfg, train_rows, teachers)
    joint = MethodPlan([answer_task(cfg), *tasks], MultiTaskObjective({ANSWER_TASK: 1.0, **weights}))
    return staged(cfg, student, tasks, weights, joint)


def build_finetune(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                   student: Student) -> MethodPlan:
    """Full fine-tuning on the gold answers only."""
    return MethodPlan([answer_task(cfg)], MultiTaskObjective({ANSWER_TASK: 1.0}))


def build_inference(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                    student: Student) -> MethodPlan:
    """No training: the student as loaded."""
    return MethodPlan([], MultiTaskObjective({}), trains=False)


def build_lora(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
               student: Student) -> MethodPlan:
    """Fine-tuning on the answers through peft LoRA adapters only (the base weights stay frozen)."""
    from ..students import apply_lora, load_lora_student, save_lora_student

    apply_lora(student, cfg.lora)
    mode = cfg.lora.save
    return MethodPlan([answer_task(cfg)], MultiTaskObjective({ANSWER_TASK: 1.0}),
                      save=lambda s, folder: save_lora_student(s, folder, mode),
                      load_best=lambda folder: load_lora_student(cfg.student, folder),
                      notes=[f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha}; best student saved {mode}"])


def _white_box(cfg: RunConfig, train_rows: Sequence[Example], student: Student, with_hidden: bool) -> MethodPlan:
    from .whitebox import WhiteBoxObjective

    objective = WhiteBoxObjective(cfg.whitebox, student, with_hidden=with_hidden,
                                  row_ids=[ex.id for ex in train_rows],
                                  cache_dir=cfg.run_dir / "teacher_signals")
    wb = cfg.whitebox
    note = (f"white-box teacher `{wb.teacher_model}` ({wb.signals} signals, top_k={wb.top_k or 'all'}), "
            f"kd_temperature={wb.kd_temperature}, alpha_kd={wb.alpha_kd}")
    if with_hidden:
        note += f", hidden_mse_weight={wb.hidden_mse_weight} over {len(objective.pairs)} layer pair(s)"
    return MethodPlan([answer_task(cfg)], objective, prepare=objective.prepare, notes=[note])


def build_kd(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
             student: Student) -> MethodPlan:
    """Standard KD (Hinton): ``(1-α)·CE(gold) + α·T²·KL(teacher ‖ student)`` on the answer target.

    A multiple-choice student distils a multiple-choice teacher's distribution over the choices instead."""
    if student.scores_choices:
        from .choice_kd import ChoiceKDObjective

        wb = cfg.whitebox
        note = (f"KD over the choices from `{wb.teacher_model}` (online), kd_temperature={wb.kd_temperature}, "
                f"alpha_kd={wb.alpha_kd}")
        return MethodPlan([answer_task(cfg)], ChoiceKDObjective(wb, student), notes=[note])
    return _white_box(cfg, train_rows, student, with_hidden=False)


def build_whitebox(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                   student: Student) -> MethodPlan:
    """Scaling Down: standard KD plus ``hidden_mse_weight`` · MSE of projected hidden states (layer map).

    A multiple-choice student distils over its (question, choice) pairs (:mod:`.choice_whitebox`), after a
    rationale stage on the ``teachers``' rationales when ``whitebox.rationale_stage`` is set."""
    if student.scores_choices:
        return _choice_white_box(cfg, train_rows, teachers, student)
    return _white_box(cfg, train_rows, student, with_hidden=True)


def _choice_white_box(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                      student: Student) -> MethodPlan:
    from .choice_whitebox import ChoiceWhiteBoxObjective

    wb = cfg.whitebox
    objective = ChoiceWhiteBoxObjective(wb, student, row_ids=[ex.id for ex in train_rows],
                                        cache_dir=cfg.run_dir / "teacher_signals")
    pairs = ", ".join(f"{p.student}-{p.teacher}" for p in objective.pairs)
    note = (f"white-box over the choices from `{wb.teacher_model}` ({wb.signals} signals), "
            f"kd_temperature={wb.kd_temperature}, alpha_kd={wb.alpha_kd}, hidden_mse_weight={wb.hidden_mse_weight} "
            f"over layers (student-teacher) {pairs} at {wb.hidden_positions} positions"
            + (f", attention_kl_weight={wb.attention_kl_weight}" if wb.attention_kl_weight else "")
            + "; the projections are not saved in best/")
    plan = MethodPlan([answer_task(cfg)], objective, prepare=objective.prepare, notes=[note])
    if not wb.rationale_stage:
        return plan
    tasks, weights = rationale_tasks(cfg, train_rows, teachers)
    if not tasks:
        raise TinyDistillError("whitebox.rationale_stage: no rationale teacher with alpha_rationale > 0 in "
                               "`teachers`; add one or set whitebox.rationale_stage: false")
    epochs = rationale_stage_epochs(cfg, student)
    plan.rationale_stage = RationaleStage(tasks, MultiTaskObjective(weights), epochs)
    plan.notes.insert(0, f"rationale stage: {epochs:g} epoch(s) on {', '.join(t.name for t in tasks)}, then "
                         f"white-box")
    return plan


def _rationale_teacher(cfg: RunConfig, teachers: dict[str, Teacher]) -> tuple[str, Teacher, str]:
    spec = next(t for t in cfg.teachers if t.name == (cfg.rationale_method.teacher or cfg.teachers[0].name))
    return spec.name, teachers[spec.name], spec.student_prefix


def build_step_by_step(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                       student: Student) -> MethodPlan:
    """Distill step-by-step: ``α·L_label + (1-α)·L_rationale`` with one teacher's rationales; with a rationale
    stage, that teacher's rationales first, then the labels."""
    name, teacher, prefix = _rationale_teacher(cfg, teachers)
    texts = teacher.rationales(train_rows)
    task = TaskSpec(rationale_task(name), prefix, lambda i, ex: texts[i], cfg.student.max_rationale_length)
    alpha = cfg.rationale_method.alpha_label
    joint = MethodPlan([answer_task(cfg), task], MultiTaskObjective({ANSWER_TASK: alpha, task.name: 1.0 - alpha}))
    return staged(cfg, student, [task], {task.name: 1.0}, joint)


def with_rationales(rows: Sequence[Example], rationales: Sequence[str | None], prefix: str) -> list[Example]:
    """PINTO input: each row's question followed by ``prefix`` + its teacher rationale (unchanged if none)."""
    return [replace(ex, question=f"{ex.question}\n{prefix}{r}") if r else ex
            for ex, r in zip(rows, rationales, strict=True)]


def build_pinto(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                student: Student) -> MethodPlan:
    """PINTO-style: the teacher's rationale is part of the student's input, in training and at inference."""
    name, teacher, _ = _rationale_teacher(cfg, teachers)
    prefix = cfg.rationale_method.rationale_prefix

    def rationales(examples: Sequence[Example]) -> list[str | None]:
        texts = teacher.rationales(examples)
        if not cfg.rationale_method.strip_stated_answer:
            return list(texts)
        return [without_stated_answer(t) if t else t for t in texts]

    rows = with_rationales(train_rows, rationales(train_rows), prefix)

    def eval_rows(examples: Sequence[Example]) -> list[Example]:
        return with_rationales(examples, rationales(examples), prefix)

    note = (f"PINTO: the student reads teacher `{name}`'s rationale in its input, in training and at evaluation; "
            f"deploying it needs that teacher at inference time")
    return MethodPlan([answer_task(cfg)], MultiTaskObjective({ANSWER_TASK: 1.0}), rows=rows, eval_rows=eval_rows,
                      notes=[note])


MethodBuilder = Callable[[RunConfig, Sequence[Example], dict[str, Teacher], Student], MethodPlan]

METHODS: dict[str, MethodBuilder] = {
    "tinyllm": build_tinyllm,
    "finetune": build_finetune,
    "inference": build_inference,
    "lora": build_lora,
    "kd": build_kd,
    "whitebox": build_whitebox,
    "step_by_step": build_step_by_step,
    "pinto": build_pinto,
}


# ------------------------------------------------------------------------------------------ anti-shortcut
def label_prior(rows: Sequence[Example]) -> torch.Tensor:
    """(C,) frequency of each gold answer position in ``rows`` (C = the most choices any row has)."""
    width = max((len(ex.choices) for ex in rows), default=0)
    counts = torch.zeros(width)
    for ex in rows:
        if ex.answer is not None:
            counts[ex.answer] += 1
    if counts.sum() == 0:
        raise TinyDistillError("shortcut_penalty_weight: the training rows have no gold answers")
    return counts / counts.sum()


def choice_scores(student: Student, batch: dict[str, torch.Tensor], reduction: str = "sum") -> torch.Tensor:
    """(B, C) log-likelihood of every choice's target (``-inf`` past a row's last choice), with gradient; a
    multiple-choice student's head scores its (question, choice) pairs instead."""
    if "choice_mask" in batch:
        return student.choice_scores(batch)
    pairs = {"input_ids": batch["choice_input_ids"], "attention_mask": batch["choice_attention_mask"],
             "labels": batch["choice_labels"]}
    if "choice_decoder_targets" in batch:  # prefix_side decoder
        pairs["decoder_targets"] = batch["choice_decoder_targets"]
    logits, labels = student.target_logits(pairs)
    ll = sequence_log_likelihood(logits, labels, reduction)  # (N,)
    rows, pos = batch["choice_row"], batch["choice_pos"]
    scores = torch.full((batch["labels"].shape[0], int(pos.max()) + 1), float("-inf"), device=ll.device)
    return scores.index_put((rows, pos), ll)


class _ChoiceScoreRecorder:
    """The student, keeping the choice-head scores an objective computes for one batch, so the penalty reuses
    them instead of running the head over the same pairs a second time."""

    def __init__(self, student: Student, batch: dict[str, torch.Tensor]) -> None:
        self.student, self.batch = student, batch
        self.scores: torch.Tensor | None = None

    def __getattr__(self, name: str):
        return getattr(self.student, name)

    def choice_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scores = self.student.choice_scores(batch)
        if batch is self.batch:
            self.scores = scores
        return scores


class ShortcutPenaltyObjective:
    """Any method's terms plus ``shortcut``: KL(label prior ‖ batch-mean predicted choice distribution)."""

    def __init__(self, inner: Objective, weight: float, prior: torch.Tensor, temperature: float,
                 reduction: str) -> None:
        self.inner, self.weight, self.prior = inner, weight, prior
        self.temperature, self.reduction = temperature, reduction

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.inner.parameters()

    @property
    def checkpoint_module(self) -> torch.nn.Module | None:
        return getattr(self.inner, "checkpoint_module", None)

    def terms(self, student: Student, batch: Batch) -> Terms:
        recorder = _ChoiceScoreRecorder(student, batch[ANSWER_TASK])
        out = self.inner.terms(cast(Student, recorder), batch)  # the recorder stands in for the student
        scores = recorder.scores
        if scores is None:  # a sequence-to-sequence or causal student: score every choice's target
            scores = choice_scores(student, batch[ANSWER_TASK], self.reduction)
        prior = self.prior[: scores.shape[1]]
        out["shortcut"] = (self.weight, shortcut_penalty(scores, prior / prior.sum(), self.temperature))
        return out


def add_shortcut_penalty(cfg: RunConfig, plan: MethodPlan, train_rows: Sequence[Example]) -> MethodPlan:
    """Score every choice of the answer task each batch and add the weighted anti-shortcut term."""
    style = cfg.student.answer_target
    plan.tasks = [replace(t, choices=lambda i, ex: [answer_target(ex.choices, c, style)
                                                    for c in range(len(ex.choices))])
                  if t.name == ANSWER_TASK else t for t in plan.tasks]
    plan.objective = ShortcutPenaltyObjective(plan.objective, cfg.shortcut_penalty_weight, label_prior(train_rows),
                                              cfg.shortcut_temperature, cfg.eval.rank_reduction)
    plan.notes.append(f"anti-shortcut penalty: weight {cfg.shortcut_penalty_weight}, "
                      f"temperature {cfg.shortcut_temperature}")
    return plan


def build_method(cfg: RunConfig, train_rows: Sequence[Example], teachers: dict[str, Teacher],
                 student: Student) -> MethodPlan:
    plan = METHODS[cfg.method](cfg, train_rows, teachers, student)
    if cfg.shortcut_penalty_weight > 0 and plan.trains:
        plan = add_shortcut_penalty(cfg, plan, train_rows)
    return plan
