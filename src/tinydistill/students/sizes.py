"""Students of several sizes from one model: a layer subset initialised from it, or a narrower random config.

``keep_layers`` copies the chosen transformer blocks (DistilBERT's "one layer out of two"); for an
encoder-decoder (bert2bert, T5) the same indices are kept on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from .base import _ENCODER_ONLY, Student, _configure_special_tokens, attention_dropout_override, resolve_model_name
from .causal import CausalStudent
from .seq2seq import Seq2SeqStudent

_STACK_NAMES = ("layer", "layers", "block", "h")


def evenly_spaced(total: int, keep: int) -> list[int]:
    """``keep`` of ``total`` layer indices, evenly spaced from the first: 6 → 3 gives [0, 2, 4]."""
    if not 1 <= keep <= total:
        raise TinyDistillError(f"student.num_layers: {keep} is not between 1 and the model's {total} layers")
    return [i * total // keep for i in range(keep)]


def _stacks(module: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    """Every ModuleList of transformer blocks (``encoder.layer``, ``block``, ``h``), outermost first."""
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, torch.nn.ModuleList) and n.rsplit(".", 1)[-1] in _STACK_NAMES and len(m) > 0]


def _cut(stack: torch.nn.ModuleList, keep: Sequence[int], where: str) -> torch.nn.ModuleList:
    if keep[-1] >= len(stack):
        raise TinyDistillError(f"student.layers: {where} has {len(stack)} layers, no layer {keep[-1]}")
    kept = torch.nn.ModuleList([stack[i] for i in keep])
    for i, block in enumerate(kept):  # caches index layers by position
        for mod in block.modules():
            if hasattr(mod, "layer_idx"):
                setattr(mod, "layer_idx", i)  # noqa: B010 (an attribute of some attention modules only)
    return kept


def _cut_single(model: torch.nn.Module, config, keep: Sequence[int] | None, num: int | None,
                attr: str = "num_hidden_layers", where: str = "model") -> None:
    stacks = _stacks(model)
    if not stacks:
        raise TinyDistillError(f"student.layers: no transformer layer list found in the {where}")
    name, stack = stacks[0]
    idx = list(keep) if keep is not None else evenly_spaced(len(stack), num or len(stack))
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], _cut(stack, idx, where))
    setattr(config, attr, len(idx))


def keep_layers(student: Student, *, layers: Sequence[int] | None = None, num_layers: int | None = None) -> None:
    """Cut ``student.model`` in place to the given layers (or ``num_layers`` evenly spaced), both sides."""
    model = student.model
    if isinstance(model, EncoderDecoderModel):
        _cut_single(model.encoder, model.config.encoder, layers, num_layers, where="encoder")
        _cut_single(model.decoder, model.config.decoder, layers, num_layers, where="decoder")
        model.encoder.config, model.decoder.config = model.config.encoder, model.config.decoder
        return
    if getattr(model.config, "is_encoder_decoder", False):  # T5 style: encoder.block, decoder.block
        if layers is not None and layers[0] != 0 and model.config.model_type in ("t5", "mt5", "umt5"):
            raise TinyDistillError("student.layers: a T5 subset must keep layer 0 (it holds the position bias)")
        _cut_single(model.get_encoder(), model.config, layers, num_layers, "num_layers", "encoder")
        _cut_single(model.get_decoder(), model.config, layers, num_layers, "num_decoder_layers", "decoder")
        for stack in (model.get_encoder(), model.get_decoder()):
            if hasattr(stack, "config"):
                stack.config.num_layers = model.config.num_layers
        return
    _cut_single(model, model.config, layers, num_layers)


def narrow_student(cfg: StudentConfig) -> Student:
    """A randomly initialised student whose config is the named model's with ``cfg.config_overrides``."""
    name = resolve_model_name(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(name)
    base = AutoConfig.from_pretrained(name)
    over = dict(cfg.config_overrides)
    for key in over:
        if not hasattr(base, key):
            raise TinyDistillError(f"student.config_overrides: {type(base).__name__} has no field {key!r}")
    arch = cfg.architecture
    if arch == "multiple_choice":
        raise TinyDistillError("student.config_overrides: a random narrower student is built as a generator "
                               "(bert2bert or causal), not with architecture 'multiple_choice'; use "
                               "student.num_layers or student.layers to shrink a choice student")
    over.update(attention_dropout_override(base, cfg.attention_dropout))
    if arch in ("auto", "bert2bert") and type(base).__name__ in _ENCODER_ONLY and arch != "causal":
        enc = AutoConfig.from_pretrained(name, **over)
        dec = AutoConfig.from_pretrained(name, **over, is_decoder=True, add_cross_attention=True)
        model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec))
        _configure_special_tokens(model, tokenizer)
        return Seq2SeqStudent(model, tokenizer, frozenset(n for n, _ in model.named_parameters()))
    config = AutoConfig.from_pretrained(name, **over)
    if config.is_encoder_decoder and arch != "causal":
        return Seq2SeqStudent(AutoModelForSeq2SeqLM.from_config(config), tokenizer)
    model = AutoModelForCausalLM.from_config(config)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return CausalStudent(model, tokenizer)


__all__ = ["keep_layers", "narrow_student", "evenly_spaced"]
