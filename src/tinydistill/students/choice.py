"""A multiple-choice student: an encoder scores each (question, choice) pair with a classification head, and
the *same* encoder learns the teachers' rationales through a rationale head.

This is TinyLLM's multi-task idea on an encoder student: the rationale losses shape the shared encoder, the
answer comes from a head that cannot collapse onto a letter. Two rationale heads:

- ``mlm`` (default): the encoder reads ``(task prefix + question + choices, rationale)`` with a share of the
  rationale's tokens masked and predicts them through the tied word embeddings (a conditional masked language
  model of each teacher's explanation). The head is three small tensors, used in training only.
- ``decoder``: a causal LM with cross-attention, initialised from the same checkpoint, writes the rationale.

The deployable model is a plain ``AutoModelForMultipleChoice`` (``best/``); a rationale decoder is saved beside
it (``best/rationale_decoder``). :class:`ChoiceStudent` is the student kind around a :class:`ChoiceModel`.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForMultipleChoice, PreTrainedModel

from ..data import Example, stated_answer
from ..losses import IGNORE_INDEX, token_cross_entropy
from . import bert_readout
from .base import Student, autocast
from .task_items import ANSWER_TASK, ItemContext, SourceEncoder, TaskSpec, pad_seq2seq

DECODER_DIR = "rationale_decoder"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def encoder_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``batch`` an encoder reads (``ENCODER_INPUTS`` that are present)."""
    return {k: batch[k] for k in ENCODER_INPUTS if k in batch}


class MaskedRationaleHead(nn.Module):
    """BERT's MLM transform (dense → GELU → LayerNorm) plus an output bias; the output matrix is the encoder's
    word embeddings (tied, not a copy). The dense layer starts as the identity, so the first logits are the
    encoder's own hidden states read against its embeddings."""

    def __init__(self, hidden_size: int, vocab_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        with torch.no_grad():
            self.dense.weight.copy_(torch.eye(hidden_size))
            self.dense.bias.zero_()

    def forward(self, hidden: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden states, (V, H) word embeddings → (N, V) logits."""
        return F.linear(self.norm(F.gelu(self.dense(hidden))), embeddings, self.bias)


class ChoiceModel(nn.Module):
    """``scorer``: an ``AutoModelForMultipleChoice``; ``decoder``: a causal LM with cross-attention (or None);
    ``mlm_head``: a :class:`MaskedRationaleHead` on the scorer's encoder (or None)."""

    #: a BERT encoder computes only the states the heads read (:mod:`.bert_readout`); False runs it whole
    selective_readout: bool = True

    def __init__(self, scorer: PreTrainedModel, decoder: PreTrainedModel | None = None,
                 mlm_head: MaskedRationaleHead | None = None) -> None:
        super().__init__()
        self.scorer: Any = scorer
        self.decoder: Any = decoder
        self.mlm_head = mlm_head
        self.config = scorer.config

    @property
    def encoder(self) -> Any:  # the scorer's transformers encoder (BertModel for MiniLM)
        return self.scorer.base_model

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def hidden_at(self, inputs: dict[str, torch.Tensor], where: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states at the (B, L) boolean ``where`` of (B, L) inputs → (N, H); a BERT
        encoder computes only those (:mod:`.bert_readout`), any other runs whole."""
        if self.selective_readout and bert_readout.supports(self.encoder):
            return bert_readout.hidden_at(self.encoder, inputs["input_ids"], inputs["attention_mask"],
                                          inputs.get("token_type_ids"), where)
        return self.encoder(**inputs).last_hidden_state[where]

    def choice_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K, L) pair tensors → (B, K) scores; padded choices get -inf."""
        if self.selective_readout and bert_readout.supports_choice_head(self.scorer, batch["attention_mask"]):
            logits = bert_readout.choice_logits(self.scorer, batch["input_ids"], batch["attention_mask"],
                                                batch.get("token_type_ids")).float()
        else:
            logits = self.scorer(**encoder_inputs(batch)).logits.float()
        return logits.masked_fill(~batch["choice_mask"].bool(), float("-inf"))

    def masked_rationale_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the masked rationale tokens of (B, L) pair tensors, ``mlm_labels`` (B, L) holding the
        original id at masked positions and -100 elsewhere; each token weighs its row's ``row_weights``."""
        if self.mlm_head is None:
            raise RuntimeError("this multiple-choice student was built without a masked-rationale head")
        labels = batch["mlm_labels"]
        where = labels != IGNORE_INDEX
        hidden = self.hidden_at(encoder_inputs(batch), where)  # (N, H)
        logits = self.mlm_head(hidden, self.encoder.get_input_embeddings().weight)  # (N, V)
        weights = batch.get("row_weights")
        token_weights = None if weights is None else weights[:, None].expand_as(labels)[where]  # (N,)
        return token_cross_entropy(logits, labels[where], token_weights)

    def masked_rationale_losses(self, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """:meth:`masked_rationale_loss` of several tasks' (B_t, L_t) batches: the same values, computed with all
        their rows sorted by length and cut into as many encoder passes as there are tasks (each padded to its
        own longest row: less padding than one pass per task), then one head pass over every masked token (one
        vocabulary-sized matmul and gradient of the tied embeddings instead of one per task)."""
        if len(batches) == 1:
            ((name, batch),) = batches.items()
            return {name: self.masked_rationale_loss(batch)}
        if self.mlm_head is None:
            raise RuntimeError("this multiple-choice student was built without a masked-rationale head")
        width = max(b["input_ids"].shape[1] for b in batches.values())

        def joined(key: str, fill: int) -> torch.Tensor:
            return torch.cat([F.pad(b[key], (0, width - b[key].shape[1]), value=fill) for b in batches.values()])

        keys = [k for k in ENCODER_INPUTS if all(k in b for b in batches.values())]
        inputs, labels = {k: joined(k, 0) for k in keys}, joined("mlm_labels", IGNORE_INDEX)
        owner = torch.cat([torch.full((b["input_ids"].shape[0],), t) for t, b in enumerate(batches.values())])
        row_weights = torch.cat([b.get("row_weights", torch.ones(b["input_ids"].shape[0])) for b in batches.values()])
        lengths = inputs["attention_mask"].sum(1).cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        hidden, picked = [], []
        for rows in order.split(-(-len(order) // len(batches))):
            cut = int(lengths[rows[0]])  # right padding: every row of this pass fits in its longest
            rows = rows.to(labels.device)
            lab = labels[rows, :cut]
            where = lab != IGNORE_INDEX
            hidden.append(self.hidden_at({k: v[rows, :cut] for k, v in inputs.items()}, where))
            picked.append((lab[where], owner.to(lab.device)[rows][:, None].expand_as(lab)[where],
                           row_weights.to(lab.device)[rows][:, None].expand_as(lab)[where]))
        target, task, weights = (torch.cat(x) for x in zip(*picked, strict=True))
        logits = self.mlm_head(torch.cat(hidden), self.encoder.get_input_embeddings().weight)  # (N, V)
        per_token = F.cross_entropy(logits.float(), target, reduction="none")  # (N,)
        out = {}
        for t, name in enumerate(batches):
            mask = (task == t).to(per_token.dtype) * weights.to(per_token.dtype)
            denom = mask.sum()
            out[name] = (per_token * mask).sum() / denom if denom > 0 else per_token.sum() * 0.0
        return out

    def rationale_logits(self, batch: dict[str, torch.Tensor], start_id: int, pad_id: int) -> torch.Tensor:
        """Encode the source with the shared encoder; the decoder reads right-shifted labels. → (B, T, V)."""
        if self.decoder is None:
            raise RuntimeError("this multiple-choice student was built without a rationale decoder")
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        labels = batch["labels"]
        decoder_input = labels.new_full(labels.shape, pad_id)
        decoder_input[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == IGNORE_INDEX, pad_id)
        decoder_input[:, 0] = start_id
        out = self.decoder(input_ids=decoder_input, attention_mask=(decoder_input != pad_id) | (
            torch.arange(labels.shape[1], device=labels.device) == 0), encoder_hidden_states=hidden,
            encoder_attention_mask=batch["attention_mask"], use_cache=False)
        return out.logits

    @torch.no_grad()
    def generate_rationales(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, start_id: int,
                            eos_id: int, pad_id: int, max_new_tokens: int) -> torch.Tensor:
        """Greedy rationales from the decoder for (B, L) sources → (B, T) new token ids."""
        if self.decoder is None:
            raise RuntimeError("this multiple-choice student was built without a rationale decoder")
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start = torch.full((input_ids.shape[0], 1), start_id, dtype=torch.long, device=input_ids.device)
        out = self.decoder.generate(input_ids=start, attention_mask=torch.ones_like(start),
                                    encoder_hidden_states=hidden, encoder_attention_mask=attention_mask,
                                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                    eos_token_id=eos_id, pad_token_id=pad_id, use_cache=False)
        return out[:, 1:]

    def save_pretrained(self, folder: str | Path, **kwargs) -> None:
        folder = Path(folder)
        self.scorer.save_pretrained(folder, **kwargs)
        if self.decoder is not None:
            self.decoder.save_pretrained(folder / DECODER_DIR, **kwargs)


def load_choice_model(name: str, rationale_head: str | None, attn: str | None = None,
                      config_changes: dict | None = None) -> tuple[ChoiceModel, frozenset[str]]:
    """Scorer (and rationale head: ``"mlm"``, ``"decoder"`` or None) from one checkpoint; returns the names of
    randomly initialised parameters. ``config_changes`` (e.g. the attention dropout) apply to both."""
    config_changes = config_changes or {}
    scorer = AutoModelForMultipleChoice.from_pretrained(name, attn_implementation=attn, **config_changes)
    decoder = mlm_head = None
    saved_decoder = Path(name) / DECODER_DIR
    if rationale_head == "mlm":
        mlm_head = MaskedRationaleHead(scorer.config.hidden_size, scorer.config.vocab_size,
                                       getattr(scorer.config, "layer_norm_eps", 1e-12))
    elif rationale_head == "decoder" or saved_decoder.is_dir():
        source = str(saved_decoder) if saved_decoder.is_dir() else name
        decoder = AutoModelForCausalLM.from_pretrained(source, is_decoder=True, add_cross_attention=True,
                                                       attn_implementation=attn, **config_changes)
    model = ChoiceModel(scorer, decoder, mlm_head)
    fresh = "architectures" not in scorer.config.to_dict() or not any(
        "MultipleChoice" in a for a in (scorer.config.architectures or []))
    new = set()
    if fresh:
        new |= {f"scorer.{n}" for n, _ in scorer.named_parameters() if n.startswith("classifier")}
    if decoder is not None and not saved_decoder.is_dir():
        new |= {f"decoder.{n}" for n, _ in decoder.named_parameters()
                if "crossattention" in n or ".predictions.transform" in n}
    if mlm_head is not None:
        new |= {f"mlm_head.{n}" for n, _ in mlm_head.named_parameters()}
    return model, frozenset(new)


@dataclass
class ChoiceItem:
    """One row of the answer task for a multiple-choice student: token ids of each (question, choice) pair."""

    pair_ids: list[list[int]]
    type_ids: list[list[int]]
    label: int
    weight: float = 1.0
    row: int = -1  # the row's index in the training set (cached teacher signals are keyed by it)

    @property
    def n_tokens(self) -> int:
        """Tokens this item costs a batch: every (question, choice) pair's."""
        return sum(len(p) for p in self.pair_ids)


def _pairs(tokenizer, first: str, choices: Sequence[str], **truncation):
    return tokenizer([first] * len(choices), list(choices), return_token_type_ids=True, **truncation)


def _longest(enc) -> int:
    return max(len(ids) for ids in enc["input_ids"])


def choice_overflow(tokenizer, ex: Example, prefix: str, max_length: int) -> int:
    """How many tokens the longest ``(prefix + question, choice)`` pair exceeds ``max_length`` by (0: it fits)."""
    return max(0, _longest(_pairs(tokenizer, prefix + ex.question, ex.choices)) - max_length)


def encode_choices(tokenizer, ex: Example, prefix: str, max_length: int) -> tuple[ChoiceItem, int]:
    """Tokenise ``(prefix + question, choice)`` pairs; returns (item, question tokens dropped: 0 if it fits).

    A pair too long loses the *start* of its question, as the sequence-to-sequence collator does: long rows
    (PubMedQA, BioASQ) put their context first and the question asked last, so the prefix, the end of the
    question and every choice survive. A choice is cut only if it alone leaves no room."""
    enc = _pairs(tokenizer, prefix + ex.question, ex.choices)
    dropped = over = _longest(enc) - max_length
    question = ex.question
    for _ in range(4):  # dropping whole leading tokens of the text can re-split one word: re-measure
        if over <= 0 or not question:
            break
        question = _without_leading_tokens(tokenizer, question, over)
        enc = _pairs(tokenizer, prefix + question, ex.choices)
        over = _longest(enc) - max_length
    if over > 0:  # a choice alone leaves no room
        try:
            enc = _pairs(tokenizer, prefix + ex.question, ex.choices, truncation="only_first", max_length=max_length)
        except Exception:  # tokenizers raises a bare Exception when the question cannot absorb the cut
            enc = _pairs(tokenizer, prefix + ex.question, ex.choices, truncation="longest_first",
                         max_length=max_length)
    label = ex.answer if ex.answer is not None else -1
    return ChoiceItem(enc["input_ids"], enc["token_type_ids"], label), max(dropped, 0)


def _without_leading_tokens(tokenizer, text: str, n: int) -> str:
    """``text`` without its first ``n`` tokens (cut at a token's character offset; empty if it has no more)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text[offsets[n][0]:] if n < len(offsets) else ""


def pad_choices(items: Sequence[ChoiceItem], pad_id: int) -> dict[str, torch.Tensor]:
    """→ input_ids/attention_mask/token_type_ids (B, K, L), choice_mask (B, K), labels (B,), row_weights (B,),
    row_index (B,)."""
    k = max(len(it.pair_ids) for it in items)
    length = max(len(p) for it in items for p in it.pair_ids)
    ids = torch.full((len(items), k, length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), k, length), dtype=torch.long)
    types = torch.zeros((len(items), k, length), dtype=torch.long)
    choice_mask = torch.zeros((len(items), k), dtype=torch.bool)
    for b, it in enumerate(items):
        for c in range(k):
            pair = it.pair_ids[c] if c < len(it.pair_ids) else it.pair_ids[0][:1]  # a padded choice: one token
            ids[b, c, : len(pair)] = torch.tensor(pair)
            mask[b, c, : len(pair)] = 1
            if c < len(it.type_ids):
                types[b, c, : len(it.type_ids[c])] = torch.tensor(it.type_ids[c])
        choice_mask[b, : len(it.pair_ids)] = True
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "choice_mask": choice_mask,
            "labels": torch.tensor([it.label for it in items]),
            "row_weights": torch.tensor([it.weight for it in items], dtype=torch.float),
            "row_index": torch.tensor([it.row for it in items], dtype=torch.long)}


@dataclass
class MaskedRationaleItem:
    """One row of a rationale task for the ``mlm`` head: the (source, rationale) pair with some rationale
    tokens masked, and the original ids at those positions (-100 elsewhere)."""

    input_ids: list[int]
    type_ids: list[int]
    mlm_labels: list[int]
    weight: float = 1.0
    row: int = -1

    @property
    def n_tokens(self) -> int:
        """Tokens this item costs a batch: its one (source, rationale) sequence."""
        return len(self.input_ids)


def mask_positions(n: int, ratio: float, key: str) -> list[int]:
    """Which of ``n`` rationale tokens to mask: ``round(ratio · n)`` of them (at least one), drawn by a
    generator seeded from ``key`` alone, so a row's masks are the same in every run, epoch and resume."""
    count = min(n, max(1, round(ratio * n)))
    return sorted(random.Random(zlib.crc32(key.encode())).sample(range(n), count))


def encode_masked_rationale(tokenizer, source_ids: Sequence[int], rationale: str, max_rationale_length: int,
                            ratio: float, key: str) -> tuple[MaskedRationaleItem, bool]:
    """``source_ids`` ([CLS] … [SEP]) + rationale tokens (cut to ``max_rationale_length`` - 1) + [SEP], type 1 on
    the rationale side, ``ratio`` of its tokens replaced by [MASK]; returns (item, whether it was cut)."""
    if tokenizer.mask_token_id is None:
        raise ValueError("student.rationale_head 'mlm' needs a tokenizer with a mask token; use 'decoder'")
    ids = tokenizer(rationale, add_special_tokens=False)["input_ids"]
    cut = len(ids) > max_rationale_length - 1
    ids = ids[: max_rationale_length - 1]
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    labels = [IGNORE_INDEX] * (len(source_ids) + len(ids) + 1)  # the originals go in at masked positions
    masked = list(ids)
    for p in mask_positions(len(ids), ratio, key) if ids else ():
        labels[len(source_ids) + p] = ids[p]
        masked[p] = tokenizer.mask_token_id
    full = [*source_ids, *masked, sep]
    types = [0] * len(source_ids) + [1] * (len(ids) + 1)
    return MaskedRationaleItem(full, types, labels), cut


def pad_masked_rationales(items: Sequence[MaskedRationaleItem], pad_id: int) -> dict[str, torch.Tensor]:
    """→ input_ids/attention_mask/token_type_ids/mlm_labels (B, L), row_weights (B,), row_index (B,)."""
    length = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.long)
    types = torch.zeros((len(items), length), dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    for b, it in enumerate(items):
        n = len(it.input_ids)
        ids[b, :n] = torch.tensor(it.input_ids)
        mask[b, :n] = 1
        types[b, :n] = torch.tensor(it.type_ids)
        labels[b, :n] = torch.tensor(it.mlm_labels)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "mlm_labels": labels,
            "row_weights": torch.tensor([it.weight for it in items], dtype=torch.float),
            "row_index": torch.tensor([it.row for it in items], dtype=torch.long)}


class ChoiceStudent(Student):
    """A :class:`ChoiceModel`: the answer task scores (question, choice) pairs; rationale tasks train the rationale
    head (masked rationale tokens, or a decoder that reads the shared encoder like a seq2seq model)."""

    kind = "multiple_choice"
    scores_choices = True
    hidden_sides = ("encoder",)  # white-box KD matches the encoder's states over the (question, choice) pairs
    pad = staticmethod(pad_seq2seq)  # the rationale decoder reads its own encoder, like a seq2seq model
    lora_trains_fully = ("classifier",)  # the (new) choice head trains fully
    hf_auto_class = "AutoModelForMultipleChoice"
    card_usage_note = "The head scores each (question, choice) pair; the highest score is the answer."

    def choice_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) scores of each row's choices (padded choices are -inf)."""
        return self.model.choice_scores(batch)

    def masked_rationale_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """With the ``mlm`` rationale head: the masked rationale tokens' cross-entropy."""
        return self.model.masked_rationale_loss(batch)

    def masked_rationale_losses(self, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Several rationale tasks' masked-token cross-entropies from one encoder pass (see :class:`ChoiceModel`)."""
        return self.model.masked_rationale_losses(batches)

    def _start_id(self) -> int:
        return self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else self.pad_token_id

    def target_logits(
        self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rationale decoder reads the shared encoder and the right-shifted labels."""
        return self.model.rationale_logits(batch, self._start_id(), self.pad_token_id), batch["labels"]

    def encode_task_item(self, i: int, ex: Example, task: TaskSpec, ctx: ItemContext) -> object | None:
        """The answer task: every (question, choice) pair; a rationale task with the ``mlm`` head: ``(source,
        rationale)`` with ``ctx.mask_ratio`` of its tokens masked, the positions fixed by (seed, task, row)."""
        if task.name == ANSWER_TASK:
            weight = self.task_weight(i, task)  # as for every kind: a row weighing 0 is left out
            if weight <= 0:
                return None
            item, cut = encode_choices(self.tokenizer, ex, task.prefix, ctx.max_input_length)
            ctx.stats.sources += bool(cut)
            ctx.stats.source_tokens_dropped += cut
            item.row, item.weight = i, weight
            return item
        if getattr(self.model, "mlm_head", None) is None:
            return super().encode_task_item(i, ex, task, ctx)
        target = self.task_target(i, ex, task)
        if target is None:
            return None
        text, weight = target
        masked, cut = encode_masked_rationale(self.tokenizer, ctx.source.encode(ex, task.prefix), text,
                                              task.max_target_length, ctx.mask_ratio,
                                              f"{ctx.mask_seed}/{task.name}/{i}")
        if cut:
            ctx.stats.targets[task.name] = ctx.stats.targets.get(task.name, 0) + 1
        masked.weight, masked.row = weight, i
        return masked

    def count_truncated_sources(self, examples: Sequence[Example], prefix: str, max_input_length: int) -> int:
        """What the choice head reads: rows with a (question, choice) pair too long."""
        return sum(choice_overflow(self.tokenizer, ex, prefix, max_input_length) > 0 for ex in examples)

    def rank_scores(self, examples: Sequence[Example], *, source: SourceEncoder, prefix: str, head: list[int],
                    max_input_length: int, answer_style: str, max_answer_length: int, reduction: str,
                    autocast_dtype: torch.dtype | None) -> list[list[float]]:
        """The choice head's scores."""
        device = self.model.device
        items = [encode_choices(self.tokenizer, ex, prefix, max_input_length)[0] for ex in examples]
        tensors = {k: v.to(device) for k, v in pad_choices(items, self.pad_token_id).items()}
        with autocast(device, autocast_dtype):
            scores = self.choice_scores(tensors).tolist()
        return [row[: len(ex.choices)] for row, ex in zip(scores, examples, strict=True)]

    def generate_ids(self, sources: Sequence[list[int]], head: list[int], max_new_tokens: int) -> torch.Tensor:
        """The rationale decoder writes from the shared encoder's reading of each source."""
        ids, mask = self._right_padded(sources)
        device = self.model.device
        return self.model.generate_rationales(ids.to(device), mask.to(device), start_id=self._start_id(),
                                              pad_id=self.pad_token_id, eos_id=self.eos_token_id,
                                              max_new_tokens=max_new_tokens)

    def generation_prefix(self, prefix: str, rationale_prefix: str | None) -> str | None:
        """A choice student generates only through a rationale decoder, with its first teacher's task prefix."""
        return rationale_prefix if getattr(self.model, "decoder", None) is not None and rationale_prefix else None

    def parse_generated(self, text: str, choices: Sequence[str]) -> int | None:
        """The answer the written rationale states."""
        return stated_answer(text, choices)

    @property
    def lora_host(self) -> nn.Module:
        """LoRA adapts the scorer (its encoder); the rationale head is left as it is."""
        return self.model.scorer

    @lora_host.setter
    def lora_host(self, module: nn.Module) -> None:
        self.model.scorer = module
