"""White-box distillation (Scaling Down) for a multiple-choice student, over its (question, choice) pairs.

``L = (1-α)·CE + α·T²·KL(p_teacher ‖ p_student)`` over each row's choice scores, plus
``β · mean_pairs MSE(W·h_student, h_teacher)`` over a layer map (default: student layer i ↔ teacher layer
i·L_t/L_s, PKD skip) at every token of every pair (``hidden_positions: all``) or at its [CLS] token (``cls``), plus
optionally ``γ · KL(A_teacher ‖ A_student)`` of the last layers' self-attention distributions (MiniLM). The learned
projections ``W`` are the objective's own weights: checkpointed for resume, never saved in ``best/``.

The teacher is a saved multiple-choice model with the student's tokenizer (typically a fine-tuned full-size run's
``best/``). Its signals come every batch (``signals: online``) or once, before training, from
``run_dir/teacher_signals/`` (``cached``), keyed by row id and choice; the cache's key holds the teacher's weights'
fingerprint, the layer map and the positions, so a changed teacher or map is never read stale.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig

from ..config import LayerPair, StudentConfig, WhiteboxConfig
from ..errors import TinyDistillError
from ..losses import attention_kl, choice_cross_entropy, choice_kl, hidden_mse
from ..students import ANSWER_TASK, MultiTaskCollator, Student, encoder_inputs, load_student
from .whitebox import ProjectedObjective, fingerprint, make_projections

KEY = "whitebox.teacher_model"


def same_tokenizer(a, b) -> bool:
    return type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()


def load_choice_teacher(cfg: WhiteboxConfig, student: Student, *, eager: bool = False) -> Student:
    """The frozen multiple-choice teacher named by ``whitebox.teacher_model``; anything else is refused in one line
    naming the key (not a folder, not a saved choice model, another tokenizer)."""
    name = str(cfg.teacher_model)
    try:
        hf = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise TinyDistillError(f"{KEY}: cannot load {name!r} ({str(e).splitlines()[0]}); give the best/ folder "
                               f"of a fine-tuned multiple_choice run") from None
    archs = hf.architectures or []
    if not any("MultipleChoice" in a for a in archs):
        raise TinyDistillError(f"{KEY}: {name!r} is a {', '.join(archs) or hf.model_type} model, not a saved "
                               f"multiple-choice model; a multiple_choice student distils a multiple_choice "
                               f"teacher (e.g. the best/ of a fine-tuned full-size run)")
    teacher = load_student(StudentConfig(model=name, architecture="multiple_choice",
                                         attn_implementation="eager" if eager else "auto"))
    if not same_tokenizer(teacher.tokenizer, student.tokenizer):
        raise TinyDistillError(f"{KEY}: {name!r} has another tokenizer ({len(teacher.tokenizer)} tokens) than the "
                               f"student ({len(student.tokenizer)} tokens); logit and hidden-state KD need one "
                               f"tokenizer: use a text-level method (tinyllm, step_by_step) with this teacher")
    teacher.model.eval().requires_grad_(False)
    return teacher


def num_layers(owner: Student) -> int:
    return int(owner.model.config.num_hidden_layers)


def skip_layer_map(student_layers: int, teacher_layers: int) -> list[LayerPair]:
    """PKD skip: student hidden state i (1..L_s) ↔ teacher hidden state i·L_t/L_s (3 of 6: 1-2, 2-4, 3-6)."""
    return [LayerPair(side="encoder", student=i, teacher=i * teacher_layers // student_layers)
            for i in range(1, student_layers + 1)]


def choice_layer_map(cfg: WhiteboxConfig, student: Student, teacher: Student) -> list[LayerPair]:
    """``whitebox.layer_map`` (encoder side only) checked against both depths, or the PKD-skip default."""
    if not cfg.layer_map:
        return skip_layer_map(num_layers(student), num_layers(teacher))
    for p in cfg.layer_map:
        if p.side != "encoder":
            raise TinyDistillError("whitebox.layer_map: a multiple_choice student has only an encoder side")
        for who, owner, index in (("student", student, p.student), ("teacher", teacher, p.teacher)):
            if not -num_layers(owner) - 1 <= index <= num_layers(owner):
                raise TinyDistillError(f"whitebox.layer_map: the {who} has hidden states 0..{num_layers(owner)}, "
                                       f"no {index}")
    return list(cfg.layer_map)


@dataclass
class PairForward:
    """One forward over the (question, choice) pairs: scores (B, K); the mapped layers' states (B·K, S, H) and the
    last layer's attentions (B·K, heads, S, S) when asked; ``mask`` (B·K, S): real tokens of present choices."""

    scores: torch.Tensor
    hidden: list[torch.Tensor]
    attention: torch.Tensor | None
    mask: torch.Tensor


def pair_forward(owner: Student, batch: dict[str, torch.Tensor], layers: Sequence[int], attention: bool) -> (
        PairForward):
    out = owner.model.scorer(**encoder_inputs(batch), output_hidden_states=bool(layers), output_attentions=attention)
    scores = out.logits.float().masked_fill(~batch["choice_mask"].bool(), float("-inf"))
    mask = batch["attention_mask"].flatten(0, 1) * batch["choice_mask"].flatten().unsqueeze(-1).to(
        batch["attention_mask"].dtype)
    hidden = [out.hidden_states[i] for i in layers]
    return PairForward(scores, hidden, out.attentions[-1] if attention else None, mask)


def positions(mask: torch.Tensor, which: str) -> torch.Tensor:
    """The (B·K, S) mask of positions the hidden MSE reads: every real token, or the first ([CLS]) one."""
    if which == "all":
        return mask
    first = torch.zeros_like(mask)
    first[:, 0] = mask[:, 0]
    return first


class ChoiceWhiteBoxObjective(ProjectedObjective):
    """Choice CE + soft-label KL over the choices + projected hidden MSE (+ last-layer attention KL)."""

    def __init__(self, cfg: WhiteboxConfig, student: Student, *, row_ids: Sequence[str], cache_dir: Path,
                 teacher: Student | None = None) -> None:
        self.cfg, self.row_ids, self.cache_dir = cfg, list(row_ids), cache_dir
        self.attention = cfg.attention_kl_weight > 0
        self.teacher: Student | None = teacher or load_choice_teacher(cfg, student, eager=self.attention)
        if self.attention:  # only eager attention returns its probabilities
            for owner in (student, self.teacher):
                owner.model.scorer.set_attn_implementation("eager")
            heads = {owner.model.config.num_attention_heads for owner in (student, self.teacher)}
            if len(heads) > 1:
                raise TinyDistillError(f"whitebox.attention_kl_weight: the student and the teacher have different "
                                       f"numbers of attention heads ({sorted(heads)}); set it to 0")
        self.pairs = choice_layer_map(cfg, student, self.teacher)
        s_width = student.model.config.hidden_size
        self.t_width = t_width = self.teacher.model.config.hidden_size

        self.projections = make_projections(cfg.project, [(s_width, t_width)] * len(self.pairs))
        self.teacher_fingerprint = fingerprint(str(cfg.teacher_model))
        self._reader: Any = None  # the signal cache's safetensors reader, opened on first use

    # ------------------------------------------------------------------------------------------ teacher side
    @torch.no_grad()
    def _online(self, batch: dict[str, torch.Tensor]) -> PairForward:
        teacher = self._teacher_on(batch["input_ids"].device)
        fwd = pair_forward(teacher, batch, [p.teacher for p in self.pairs], self.attention)
        fwd.hidden = [h.float() for h in fwd.hidden]
        return fwd

    def cache_meta(self, n_rows: int, n_tokens: int) -> dict:
        return {"teacher": str(self.cfg.teacher_model), "teacher_sha256": self.teacher_fingerprint,
                "pairs": [p.model_dump() for p in self.pairs], "positions": self.cfg.hidden_positions,
                "attention": self.attention, "rows": n_rows, "tokens": n_tokens}

    def prepare(self, rows: Sequence[dict], batch_size: int = 16) -> None:
        """``signals: cached``: run the teacher once over every training row (reusing a cache with the same key),
        then let it go: training reads only the cache."""
        if self.cfg.signals != "cached":
            return
        self._write_cache([row[ANSWER_TASK] for row in rows if ANSWER_TASK in row], batch_size)
        self.teacher = None
        gc.collect()

    def _write_cache(self, items: Sequence, batch_size: int) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path, meta_path = self.cache_dir / "signals.safetensors", self.cache_dir / "meta.json"
        meta = self.cache_meta(len(items), sum(it.n_tokens for it in items))
        if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == meta:
            return
        assert self.teacher is not None
        collate = MultiTaskCollator(self.teacher.kind, self.teacher.pad_token_id)
        tensors: dict[str, torch.Tensor] = {}
        for start in range(0, len(items), batch_size):
            chunk = items[start: start + batch_size]
            batch = collate([{ANSWER_TASK: it} for it in chunk])[ANSWER_TASK]
            sig = self._online(batch)
            keep = positions(sig.mask, self.cfg.hidden_positions).bool()
            k = batch["choice_mask"].shape[1]
            for b, it in enumerate(chunk):
                key = self.row_ids[it.row]
                tensors[f"{key}::scores"] = sig.scores[b, : len(it.pair_ids)].contiguous()
                for c in range(len(it.pair_ids)):
                    n = b * k + c
                    for j, h in enumerate(sig.hidden):
                        tensors[f"{key}::{c}::hidden{j}"] = h[n][keep[n]].contiguous()
                    if sig.attention is not None:
                        length = int(sig.mask[n].sum())
                        tensors[f"{key}::{c}::attention"] = sig.attention[n, :, :length, :length].contiguous()
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
        meta_path.write_text(json.dumps(meta))
        self._reader = None

    def _cached(self, batch: dict[str, torch.Tensor], like: PairForward) -> PairForward:
        if self._reader is None:
            self._reader = safe_open(str(self.cache_dir / "signals.safetensors"), framework="pt")
        reader, device = self._reader, like.scores.device
        keys = [self.row_ids[int(r)] for r in batch["row_index"]]
        counts = batch["choice_mask"].sum(-1).tolist()
        k = batch["choice_mask"].shape[1]
        scores = torch.full_like(like.scores, float("-inf"))
        keep = positions(like.mask, self.cfg.hidden_positions).bool()
        hidden = [torch.zeros(*like.mask.shape, self.t_width, device=device) for _ in like.hidden]
        attention = torch.zeros(like.attention.shape, device=device) if like.attention is not None else None
        for b, key in enumerate(keys):
            scores[b, : counts[b]] = reader.get_tensor(f"{key}::scores").to(device)
            for c in range(int(counts[b])):
                n = b * k + c
                for j in range(len(hidden)):
                    hidden[j][n][keep[n]] = reader.get_tensor(f"{key}::{c}::hidden{j}").to(device)
                if attention is not None:
                    a = reader.get_tensor(f"{key}::{c}::attention").to(device)
                    attention[n, :, : a.shape[1], : a.shape[2]] = a
        return PairForward(scores, hidden, attention, like.mask)

    # ------------------------------------------------------------------------------------------ loss terms
    def terms(self, student: Student, batch: dict[str, dict[str, torch.Tensor]]) -> dict[
            str, tuple[float, torch.Tensor]]:
        t = batch[ANSWER_TASK]
        fwd = pair_forward(student, t, [p.student for p in self.pairs], self.attention)
        sig = self._cached(t, fwd) if self.cfg.signals == "cached" else self._online(t)
        alpha, temp = self.cfg.alpha_kd, self.cfg.kd_temperature
        out = {ANSWER_TASK: (1.0 - alpha, choice_cross_entropy(fwd.scores, t["labels"], t.get("row_weights"))),
               "kd": (alpha * temp * temp, choice_kl(fwd.scores, sig.scores, temp))}
        where = positions(fwd.mask, self.cfg.hidden_positions)
        for j, (p, proj) in enumerate(zip(self.pairs, self.projections, strict=True)):
            s_h, t_h = fwd.hidden[j], sig.hidden[j].to(fwd.hidden[j].dtype)
            if self.cfg.project == "student":
                s_h = proj(s_h)
            else:
                t_h = proj(t_h)
            out[f"hidden/{p.student}-{p.teacher}"] = (self.cfg.hidden_mse_weight / len(self.pairs),
                                                      hidden_mse(s_h, t_h, where))
        if self.attention:
            assert fwd.attention is not None and sig.attention is not None
            out["attention"] = (self.cfg.attention_kl_weight, attention_kl(fwd.attention, sig.attention, fwd.mask))
        return out
