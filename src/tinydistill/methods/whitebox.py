"""White-box distillation (Scaling Down): a local teacher's soft labels and hidden states.

``kd``: ``(1-α)·CE + α·T²·KL(teacher ‖ student)`` on the answer target. ``whitebox`` adds
``hidden_mse_weight · MSE(projected hidden states)`` over a configurable layer map (encoder and/or decoder).
The teacher runs every batch (``signals: online``) or once, before training, into
``run_dir/teacher_signals/signals.safetensors`` keyed by row id (``signals: cached``; top-k logits and only
the mapped hidden states are kept).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import LayerPair, StudentConfig, WhiteboxConfig
from ..errors import TinyDistillError
from ..losses import IGNORE_INDEX, hidden_mse, soft_label_kl, token_cross_entropy
from ..students import ANSWER_TASK, Forward, MultiTaskCollator, Student, TaskItem, load_student

Batch = dict[str, dict[str, torch.Tensor]]


def forward_with_hidden(model_owner: Student, batch: dict[str, torch.Tensor], hidden: bool = True) -> Forward:
    """One forward of a task batch returning logits and (optionally) every layer's hidden states per side
    (each student kind owns the shift: :meth:`Student.forward_with_hidden`)."""
    return model_owner.forward_with_hidden(batch, hidden)


def fingerprint(folder: str) -> str:
    """sha256 of a saved model's weight files (a retrained teacher at the same path changes it)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")):
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def same_tokenizer(a, b) -> bool:
    return type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()


def load_teacher(cfg: WhiteboxConfig, student: Student) -> Student:
    """Load the white-box teacher (frozen, eval mode) and check it can be distilled from at the logit level."""
    assert cfg.teacher_model is not None
    teacher = load_student(StudentConfig(model=cfg.teacher_model))
    if not same_tokenizer(teacher.tokenizer, student.tokenizer):
        raise TinyDistillError(
            f"whitebox.teacher_model: logit/hidden-state KD needs one tokenizer, but {cfg.teacher_model!r} "
            f"({len(teacher.tokenizer)} tokens) and the student ({len(student.tokenizer)} tokens) differ; "
            f"use a text-level method (step_by_step, tinyllm, pinto) with this teacher's rationales instead")
    if teacher.kind != student.kind:
        raise TinyDistillError(f"whitebox.teacher_model: the teacher is {teacher.kind} but the student is "
                               f"{student.kind}; white-box KD needs the same kind on both sides")
    teacher.model.eval()
    teacher.model.requires_grad_(False)
    return teacher


def resolve_layer_map(cfg: WhiteboxConfig, student: Student) -> list[LayerPair]:
    if cfg.layer_map:
        pairs = list(cfg.layer_map)
        for side in dict.fromkeys(p.side for p in pairs):
            if side not in student.hidden_sides:
                raise TinyDistillError(f"whitebox.layer_map: a {student.kind} student has no {side} side")
        return pairs
    return [LayerPair(side=s, teacher=-1, student=-1) for s in student.hidden_sides]


def hidden_sizes(owner: Student) -> dict[str, int]:
    cfg = owner.model.config
    if getattr(cfg, "encoder", None) is not None and getattr(cfg, "decoder", None) is not None:
        return {"encoder": cfg.encoder.hidden_size, "decoder": cfg.decoder.hidden_size}
    size = getattr(cfg, "d_model", None) or cfg.hidden_size
    return {"encoder": size, "decoder": size}


def make_projection(d_in: int, d_out: int) -> torch.nn.Linear:
    """A learned linear map; the identity when both widths agree (so MSE starts as the plain MSE)."""
    proj = torch.nn.Linear(d_in, d_out)
    if d_in == d_out:
        with torch.no_grad():
            proj.weight.copy_(torch.eye(d_in))
            proj.bias.zero_()
    return proj


def make_projections(project: str, widths: Sequence[tuple[int, int]]) -> torch.nn.ModuleList:
    """One projection per (student width, teacher width): student → teacher where ``project`` is ``student``,
    else teacher → student."""
    return torch.nn.ModuleList([make_projection(s, t) if project == "student" else make_projection(t, s)
                                for s, t in widths])


class ProjectedObjective:
    """What both white-box objectives share: learned ``projections`` trained beside the student, and a
    ``teacher`` (None once released after caching its signals) run on the batch's device."""

    projections: torch.nn.ModuleList
    teacher: Student | None

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.projections.parameters())

    @property
    def checkpoint_module(self) -> torch.nn.Module:
        """Weights the trainer checkpoints with the model (the projections; never part of ``best/``)."""
        return self.projections

    def _teacher_on(self, device: torch.device) -> Student:
        """The teacher, its weights moved to ``device`` where they are not there yet."""
        assert self.teacher is not None, "the teacher was released after caching its signals"
        if next(self.teacher.model.parameters()).device != device:
            self.teacher.model.to(device)
        return self.teacher


@dataclass
class TeacherSignals:
    """What the loss needs from the teacher for one answer batch (aligned with the student's batch)."""

    logits: torch.Tensor  # (B, T, V) logits, or top-k log-probabilities at kd_temperature (B, T, k)
    indices: torch.Tensor | None  # (B, T, k) vocabulary ids of the top-k values, or None
    hidden: list[torch.Tensor]  # one (B, S, H_teacher) per layer pair


def _top_k(logits: torch.Tensor, k: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Full logits (k = 0), or the top-k log-probabilities at ``temperature`` and their ids."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits, None
    values, indices = torch.log_softmax(logits / temperature, dim=-1).topk(k, dim=-1)
    return values, indices


class WhiteBoxObjective(ProjectedObjective):
    """Answer CE + soft-label KL (+ hidden-state MSE through learned projections)."""

    def __init__(self, cfg: WhiteboxConfig, student: Student, *, with_hidden: bool, row_ids: Sequence[str],
                 cache_dir: Path, teacher: Student | None = None) -> None:
        self.cfg, self.with_hidden, self.row_ids = cfg, with_hidden, list(row_ids)
        self.teacher: Student | None = teacher or load_teacher(cfg, student)
        self.pairs = resolve_layer_map(cfg, student) if with_hidden else []
        s_sizes, t_sizes = hidden_sizes(student), hidden_sizes(self.teacher)
        self.projections = make_projections(cfg.project, [(s_sizes[p.side], t_sizes[p.side]) for p in self.pairs])
        self.cache_dir = cache_dir
        self._reader: Any = None  # the cache file's safetensors reader, opened on first use

    # ------------------------------------------------------------------------------------------ teacher side
    @torch.no_grad()
    def _online(self, batch: dict[str, torch.Tensor]) -> TeacherSignals:
        teacher = self._teacher_on(batch["input_ids"].device)
        keys = ("input_ids", "attention_mask", "labels", "decoder_targets")
        fwd = forward_with_hidden(teacher, {k: batch[k] for k in keys if k in batch}, hidden=bool(self.pairs))
        values, indices = _top_k(fwd.logits.float(), self.cfg.top_k, self.cfg.kd_temperature)
        hidden = [fwd.hidden[p.side][p.teacher].float() for p in self.pairs]
        return TeacherSignals(values, indices, hidden)

    def prepare(self, rows: Sequence[dict[str, TaskItem]], batch_size: int = 16) -> None:
        """``signals: cached``: run the teacher once over every training row (reusing a matching cache), then
        let the teacher go: training reads only the cache, so its weights need not stay in memory."""
        if self.cfg.signals != "cached":
            return
        self._write_cache(rows, batch_size)
        self.teacher = None
        gc.collect()

    def _write_cache(self, rows: Sequence[dict[str, TaskItem]], batch_size: int) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path, meta_path = self.cache_dir / "signals.safetensors", self.cache_dir / "meta.json"
        items = [(row[ANSWER_TASK]) for row in rows if ANSWER_TASK in row]

        meta = {"teacher": self.cfg.teacher_model, "teacher_sha256": fingerprint(str(self.cfg.teacher_model)),
                "top_k": self.cfg.top_k, "kd_temperature": self.cfg.kd_temperature,
                "pairs": [p.model_dump() for p in self.pairs], "rows": len(items),
                "lengths": sum(len(it.source_ids) + len(it.target_ids) for it in items)}
        if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == meta:
            return
        teacher = self.teacher
        assert teacher is not None, "the teacher was released before its signals were cached"
        collate = MultiTaskCollator(teacher.kind, teacher.pad_token_id)
        tensors: dict[str, torch.Tensor] = {}
        for start in range(0, len(items), batch_size):
            chunk = items[start: start + batch_size]
            batch = collate([{ANSWER_TASK: it} for it in chunk])[ANSWER_TASK]
            sig = self._online(batch)
            labels = teacher.forward_labels(batch)
            masks = teacher.side_masks(batch)
            for b, it in enumerate(chunk):
                key = self.row_ids[it.row]
                valid = labels[b] != IGNORE_INDEX
                tensors[f"{key}::logits"] = sig.logits[b][valid].contiguous()
                if sig.indices is not None:
                    tensors[f"{key}::indices"] = sig.indices[b][valid].to(torch.int32).contiguous()
                for j, p in enumerate(self.pairs):
                    tensors[f"{key}::hidden{j}"] = sig.hidden[j][b][masks[p.side][b].bool()].contiguous()
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
        meta_path.write_text(json.dumps(meta))

    def _cached(self, batch: dict[str, torch.Tensor], labels: torch.Tensor, masks: dict[str, torch.Tensor],
                vocab: int) -> TeacherSignals:
        if self._reader is None:
            self._reader = safe_open(str(self.cache_dir / "signals.safetensors"), framework="pt")
        reader, device = self._reader, labels.device
        keys = [self.row_ids[int(r)] for r in batch["row_index"]]
        k = self.cfg.top_k if 0 < self.cfg.top_k < vocab else vocab
        B, T = labels.shape
        logits = torch.zeros(B, T, k, device=device)
        indices = torch.zeros(B, T, k, dtype=torch.long, device=device) if k < vocab else None
        hidden = []
        for b, key in enumerate(keys):
            valid = labels[b] != IGNORE_INDEX
            logits[b][valid] = reader.get_tensor(f"{key}::logits").to(device)[:, :k]
            if indices is not None:
                indices[b][valid] = reader.get_tensor(f"{key}::indices").to(device).long()
        for j, p in enumerate(self.pairs):
            mask = masks[p.side]
            rows = [reader.get_tensor(f"{key}::hidden{j}") for key in keys]
            h = torch.zeros(B, mask.shape[1], rows[0].shape[-1], device=device)
            for b, r in enumerate(rows):
                h[b][mask[b].bool()] = r.to(device)
            hidden.append(h)
        return TeacherSignals(logits, indices, hidden)

    # ------------------------------------------------------------------------------------------ loss terms
    def terms(self, student: Student, batch: Batch) -> dict[str, tuple[float, torch.Tensor]]:
        t = batch[ANSWER_TASK]
        fwd = forward_with_hidden(student, t, hidden=bool(self.pairs))
        if self.cfg.signals == "cached":
            sig = self._cached(t, fwd.labels, fwd.masks, fwd.logits.shape[-1])
        else:
            sig = self._online(t)
        s_logits, t_logits = fwd.logits, sig.logits
        if sig.indices is None and t_logits.shape[-1] != s_logits.shape[-1]:  # padded vocabularies (T5: 32128)
            v = min(t_logits.shape[-1], s_logits.shape[-1])
            s_logits, t_logits = s_logits[..., :v], t_logits[..., :v]
        alpha, temp = self.cfg.alpha_kd, self.cfg.kd_temperature
        out = {
            ANSWER_TASK: (1.0 - alpha, token_cross_entropy(fwd.logits, fwd.labels, t.get("row_weights"))),
            "kd": (alpha * temp * temp, soft_label_kl(s_logits, t_logits, fwd.labels, temp, sig.indices)),
        }
        for j, (p, proj) in enumerate(zip(self.pairs, self.projections, strict=True)):
            s_h = fwd.hidden[p.side][p.student]
            t_h = sig.hidden[j].to(s_h.dtype)
            if self.cfg.project == "student":
                s_h = proj(s_h)
            else:
                t_h = proj(t_h)
            name = f"hidden/{p.side}/{p.student}-{p.teacher}"
            out[name] = (self.cfg.hidden_mse_weight / len(self.pairs), hidden_mse(s_h, t_h, fwd.masks[p.side]))
        return out


@torch.no_grad()
def kl_to_teacher(student: Student, teacher: Student, rows: Sequence[dict[str, TaskItem]],
                  temperature: float = 1.0, batch_size: int = 32) -> float:
    """Mean token KL(teacher ‖ student) on the answer targets of tokenised rows (how close the student is)."""
    collate = MultiTaskCollator(student.kind, student.pad_token_id)
    was = student.model.training
    student.model.eval()
    total, n = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start: start + batch_size])[ANSWER_TASK]
        s = forward_with_hidden(student, batch, hidden=False)
        t = forward_with_hidden(teacher, batch, hidden=False)
        v = min(s.logits.shape[-1], t.logits.shape[-1])
        tokens = int((s.labels != IGNORE_INDEX).sum())
        total += float(soft_label_kl(s.logits[..., :v], t.logits[..., :v], s.labels, temperature)) * tokens
        n += tokens
    student.model.train(was)
    return total / max(n, 1)
