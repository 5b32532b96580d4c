"""A local transformers teacher backend: seq2seq or causal, batched by length, greedy or sampled.

Device and dtype come from accelerate; prompts are tokenised once, sorted by length (longest first, so the
padding in each batch is small and a memory error shows up on the first batch) and truncated from the left.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from accelerate import PartialState
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from ..config import GenerationSpec, HFTeacherSpec
from ..data import longest_first_batches
from ..errors import TinyDistillError
from .backend import LENGTH, Generation, sampling_params
from .templates import messages_to_text

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> torch.device:
    """The device accelerate would place a model on (GPU if present, else CPU)."""
    return PartialState().device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it, else float32."""
    if name != "auto":
        return _DTYPES[name]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(
    name: str, *, revision: str | None = None, dtype: str = "auto", device: torch.device | None = None
) -> tuple[Any, Any]:  # (a transformers model, its tokenizer)
    """Load a seq2seq (incl. ``EncoderDecoderModel``) or causal LM and its tokenizer, in eval mode; a name that
    is neither a model folder nor loadable from the hub (or its cache, offline) is a one-line error."""
    device = device or default_device()
    try:
        config = AutoConfig.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as e:
        offline = " (HF_HUB_OFFLINE is set: give a local folder or a model already in the cache)" if os.environ.get(
            "HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") else ""
        raise TinyDistillError(f"cannot load model {name!r}: {str(e).splitlines()[0]}{offline}") from None
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model: Any = cls.from_pretrained(name, revision=revision, dtype=resolve_dtype(dtype, device))
    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    return model.to(device).eval(), tokenizer


def _special_ids(model: Any, tokenizer: Any) -> tuple[int, list[int]]:
    """(pad id, eos ids) from the generation config, falling back to the tokenizer."""
    gc = model.generation_config
    eos = gc.eos_token_id if gc.eos_token_id is not None else tokenizer.eos_token_id
    if eos is None:
        eos = tokenizer.sep_token_id  # BERT-style tokenizers (bert2bert) end with [SEP]
    eos_ids = [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    pad = gc.pad_token_id if gc.pad_token_id is not None else tokenizer.pad_token_id
    if pad is None:
        pad = eos_ids[0] if eos_ids else 0
    return int(pad), [int(e) for e in eos_ids]


class HFBackend:
    """Generates with a loaded local model (see :meth:`from_spec` to load one from a spec)."""

    def __init__(
        self,
        model: Any,  # a transformers model
        tokenizer: Any,
        *,
        name: str,
        revision: str | None = None,
        generation: GenerationSpec = GenerationSpec(),
        chat_template: bool | None = None,
        max_input_tokens: int = 1024,
    ) -> None:
        self.module = model
        self.tokenizer = tokenizer
        self.model = name
        self.revision = revision
        self.generation = generation
        self.max_input_tokens = max_input_tokens
        has_template = getattr(tokenizer, "chat_template", None) is not None
        self.uses_chat_template = has_template if chat_template is None else chat_template and has_template
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.pad_id, self.eos_ids = _special_ids(model, tokenizer)

    @classmethod
    def from_spec(cls, spec: HFTeacherSpec) -> HFBackend:
        try:
            model, tokenizer = load_model(spec.model, revision=spec.revision, dtype=spec.dtype)
        except TinyDistillError as e:
            raise TinyDistillError(f"teacher {spec.name!r} (kind: hf) model: {e}") from None
        return cls(
            model,
            tokenizer,
            name=spec.model,
            revision=spec.revision,
            generation=spec.generation,
            chat_template=spec.chat_template,
            max_input_tokens=spec.max_input_tokens,
        )

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # ---------------------------------------------------------------------------------- Backend API
    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The chat template's text when used, else the message contents joined by blank lines."""
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
        return messages_to_text(messages)

    def params(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.generation.max_new_tokens,
            **sampling_params(self.generation),
            "max_input_tokens": self.max_input_tokens,
        }

    def generate(self, prompts: Sequence[str], samples: Sequence[int]) -> Iterator[tuple[int, Generation]]:
        g = self.generation
        yield from self.generate_texts(
            prompts,
            max_new_tokens=g.max_new_tokens,
            temperature=g.gen_temperature,
            top_p=g.top_p,
            batch_size=g.batch_size,
            seed=g.seed,
            samples=samples,
            add_special_tokens=not self.uses_chat_template,
        )

    # ------------------------------------------------------------------------------------- generation
    def encode(self, prompts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        """Token ids of each prompt, truncated from the left to ``max_input_tokens``."""
        ids = self.tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
        return [x[-self.max_input_tokens :] for x in ids]

    def _batch(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad to a (B, T) batch: on the left for causal models (generation continues at the right edge)."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(width - len(r), width) if not self.is_encoder_decoder else slice(0, len(r))
            ids[i, span] = torch.tensor(r, dtype=torch.long)
            mask[i, span] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _finish(self, new: list[int], max_new_tokens: int) -> tuple[list[int], str]:
        """Cut at the first EOS; ``length`` if none came within ``max_new_tokens``."""
        for j, t in enumerate(new):
            if t in self.eos_ids:
                return new[: j + 1], "stop"
        return new, LENGTH if len(new) >= max_new_tokens else "stop"

    @torch.inference_mode()
    def generate_texts(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        batch_size: int = 8,
        seed: int = 0,
        samples: Sequence[int] | None = None,
        add_special_tokens: bool = True,
    ) -> Iterator[tuple[int, Generation]]:
        """Yield ``(index, Generation)`` batch by batch, longest prompts first; new text only."""
        encoded = self.encode(prompts, add_special_tokens)
        sampled = temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sampled,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_ids or None,
        }
        if sampled:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:  # override sampling defaults a checkpoint's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        for idx in longest_first_batches([len(e) for e in encoded], batch_size):
            batch = self._batch([encoded[i] for i in idx])
            with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
                if sampled:  # the batch's seed depends on its contents, so a resumed run draws the same
                    ks = samples if samples is not None else [0] * len(prompts)
                    digest = hashlib.sha256(repr([(prompts[i], ks[i]) for i in idx]).encode()).digest()
                    torch.manual_seed(seed * 1_000_003 + int.from_bytes(digest[:6], "big"))
                out = self.module.generate(**batch, **kwargs)  # (B, T_in + new) causal, (B, 1 + new) seq2seq
            new_tokens = out[:, 1:] if self.is_encoder_decoder else out[:, batch["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                toks, reason = self._finish(new_tokens[row].tolist(), max_new_tokens)
                text = self.tokenizer.decode(toks, skip_special_tokens=True)
                yield i, Generation(text.strip(), len(encoded[i]), len(toks), reason)
