"""Load a student (seq2seq, bert2bert warm-started from an encoder, causal, or multiple-choice) with its tokenizer:
:func:`load_student` picks the kind's class; :data:`STUDENT_CLASSES` names every kind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderConfig,
    EncoderDecoderModel,
)

from ..config import StudentConfig
from ..errors import TinyDistillError
from .base import (
    _ENCODER_ONLY,
    ATTENTION_DROPOUT_FIELDS,
    Student,
    StudentKind,
    _configure_special_tokens,
    attention_dropout_override,
    minilm_path,
    resolve_model_name,
)
from .causal import CausalStudent
from .choice import ChoiceStudent, load_choice_model
from .seq2seq import Seq2SeqStudent
from .sizes import keep_layers, narrow_student

__all__ = ["ATTENTION_DROPOUT_FIELDS", "STUDENT_CLASSES", "CausalStudent", "ChoiceStudent", "Seq2SeqStudent",
           "Student", "StudentKind", "attention_dropout_override", "build_bert2bert", "count_trainable",
           "load_student", "minilm_path", "quiet_saves", "resolve_model_name", "save_student",
           "saved_student_config", "student_class"]

#: every student kind's class, by the kind's name
STUDENT_CLASSES: dict[str, type[Student]] = {cls.kind: cls for cls in (Seq2SeqStudent, CausalStudent, ChoiceStudent)}


def student_class(kind: str) -> type[Student]:
    """The class of the student kind named ``kind`` (``seq2seq``, ``causal``, ``multiple_choice``)."""
    try:
        return STUDENT_CLASSES[kind]
    except KeyError:
        raise TinyDistillError(f"unknown student kind {kind!r}; known: {', '.join(STUDENT_CLASSES)}") from None


def build_bert2bert(encoder_path: str, attn: str | None = None, config_changes: dict | None = None) -> Student:
    """Warm-start an encoder-decoder from one encoder checkpoint on both sides (Rothe et al., 2020);
    ``config_changes`` (e.g. the attention dropout) apply to both sides."""
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    sides = {"encoder_attn_implementation": attn, "decoder_attn_implementation": attn} if attn else {}
    sides.update({f"{side}_{k}": v for k, v in (config_changes or {}).items() for side in ("encoder", "decoder")})
    model: Any = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_path, encoder_path, **sides)
    _configure_special_tokens(model, tokenizer)
    enc_names = {f"decoder.{n}" for n, _ in model.encoder.named_parameters()}
    new = frozenset(n for n, _ in model.named_parameters() if n.startswith("decoder.") and n not in enc_names)
    return Seq2SeqStudent(model, tokenizer, new)


class _DropNotice(logging.Filter):
    """Drops one library notice that needs no action (matched by a fragment of its text)."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def quiet_saves() -> None:
    """Silence two notices every save printed that need no action (idempotent):

    - accelerate's "Removed shared tensor {...} while saving": a student's tied weights (a rationale decoder's
      output layer is its word embeddings) are one tensor under two names; safetensors stores it once and
      loading ties it again (tested: a reloaded checkpoint equals the saved model);
    - DeepSpeed's "Setting accelerator to CPU" on its first import (inside ``save_pretrained``), with a torch
      built without CUDA, where there is no other accelerator to find.
    """
    import torch

    notices = [("accelerate.utils.other", "Removed shared tensor")]
    if not torch.backends.cuda.is_built():
        notices.append(("DeepSpeed", "Setting accelerator to CPU"))
    for name, fragment in notices:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.fragment == fragment for f in logger.filters):
            logger.addFilter(_DropNotice(fragment))


def load_student(cfg: StudentConfig, *, with_rationale_head: bool = False) -> Student:
    """Load the student named in ``cfg``, then cut it to ``cfg.layers`` / ``cfg.num_layers`` if asked.
    ``with_rationale_head``: a multiple-choice student gets its ``cfg.rationale_head`` (mlm or decoder)."""
    quiet_saves()
    if cfg.config_overrides:
        return narrow_student(cfg)
    student = _load_student(cfg, with_rationale_head)
    if cfg.layers is not None or cfg.num_layers is not None:
        keep_layers(student, layers=cfg.layers, num_layers=cfg.num_layers)
    return student


def saved_student_config(cfg: StudentConfig, folder: str | Path) -> StudentConfig:
    """The config that reloads a saved student as it is (no second layer cut)."""
    return cfg.model_copy(update={"model": str(folder), "architecture": "auto", "layers": None,
                                  "num_layers": None, "config_overrides": {}})


def _check_kind(arch: str, hf_config: Any, model: str) -> None:
    """``student.architecture`` names a kind transformers has a class for with this checkpoint (a BERT is no
    seq2seq model, a T5 has no choice head); otherwise one line naming the key, before transformers' traceback."""
    from transformers.models.auto import modeling_auto as auto

    forms = {"multiple_choice": auto.MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES,
             "seq2seq": auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
             "causal": auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES}
    model_type = getattr(hf_config, "model_type", "")
    if model_type not in forms[arch]:
        fits = [kind for kind, names in forms.items() if model_type in names]
        others = f", or one of: {', '.join(fits)}" if fits else ""
        raise TinyDistillError(f"student.architecture: {arch}, but {model!r} is a {model_type or 'custom'} model, "
                               f"which has no {arch} form; use auto{others}")


def _load_student(cfg: StudentConfig, with_rationale_head: bool = False) -> Student:
    name = resolve_model_name(cfg.model)
    try:
        hf_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise TinyDistillError(f"student.model: cannot load {cfg.model!r}: {str(e).splitlines()[0]}") from None
    arch = cfg.architecture
    attn = None if cfg.attn_implementation == "auto" else cfg.attn_implementation
    two_sided = isinstance(hf_config, EncoderDecoderConfig)  # a saved bert2bert: fields live on each side
    dropout = attention_dropout_override(hf_config.encoder if two_sided else hf_config, cfg.attention_dropout)
    if arch == "auto" and any("MultipleChoice" in a for a in (hf_config.architectures or [])):
        arch = "multiple_choice"
    if arch == "multiple_choice":  # encoder + choice head (+ a rationale head on the same encoder)
        _check_kind(arch, hf_config, cfg.model)
        scorer, new = load_choice_model(name, cfg.rationale_head if with_rationale_head else None, attn, dropout)
        return ChoiceStudent(scorer, AutoTokenizer.from_pretrained(name), new)
    if arch == "auto":
        if hf_config.is_encoder_decoder:
            arch = "seq2seq"
        elif type(hf_config).__name__ in _ENCODER_ONLY:
            arch = "bert2bert"
        else:
            arch = "causal"
    if arch == "bert2bert":
        if hf_config.is_encoder_decoder:
            arch = "seq2seq"  # a saved bert2bert student loads as a plain seq2seq model
        else:
            return build_bert2bert(name, attn, dropout)
    _check_kind(arch, hf_config, cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(name)
    if arch == "seq2seq":
        changes: dict = dropout
        if dropout and two_sided:  # from_pretrained's kwargs reach only the top-level config
            for side in (hf_config.encoder, hf_config.decoder):
                side.update(dropout)
            changes = {"config": hf_config}
        model = AutoModelForSeq2SeqLM.from_pretrained(name, attn_implementation=attn, **changes)
        if model.config.decoder_start_token_id is None:
            _configure_special_tokens(model, tokenizer)
        return Seq2SeqStudent(model, tokenizer)
    extra = {"is_decoder": True} if type(hf_config).__name__ in _ENCODER_ONLY else {}  # BERT as a causal LM
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation=attn, **extra, **dropout)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return CausalStudent(model, tokenizer)




def save_student(student: Student, folder: str | Path) -> None:
    """``save_pretrained`` the model and tokenizer, so plain transformers loads the folder."""
    quiet_saves()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    student.model.save_pretrained(folder, safe_serialization=True)
    student.tokenizer.save_pretrained(folder)


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
