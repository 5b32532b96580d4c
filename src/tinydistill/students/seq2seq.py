"""The sequence-to-sequence student (T5, BART, a bert2bert encoder-decoder): the encoder reads the source, the
decoder writes the target under teacher forcing; a task prefix may open the decoder side instead."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.modeling_outputs import BaseModelOutput

from ..losses import IGNORE_INDEX
from .base import Forward, Student
from .task_items import TaskItem, pad_seq2seq


class Seq2SeqStudent(Student):
    """An encoder-decoder; ``prefix_side: auto`` puts task prefixes on the decoder (one encoder pass per row)."""

    kind = "seq2seq"
    auto_prefix_side = "decoder"
    decoder_prefix = True
    hidden_sides = ("encoder", "decoder")
    pad = staticmethod(pad_seq2seq)
    hf_auto_class = "AutoModelForSeq2SeqLM"

    @classmethod
    def card_prefix_note(cls, prefix_side: str) -> str:
        if prefix_side == "encoder":
            return ""
        return (f" The prefix opens the decoder input, not the encoder's: decoder_input_ids = [decoder start token] "
                f"+ the prefix's token ids (`student.prefix_side: {prefix_side}`); the encoder reads the question "
                f"alone.")

    def _config_eos(self) -> int | list[int] | None:
        eos = self.model.config.eos_token_id
        if eos is None and getattr(self.model.config, "decoder", None) is not None:
            eos = self.model.config.decoder.eos_token_id
        return eos

    def _decoder_input_ids(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Right-shifted labels; ``decoder_targets``: the labels with the decoder-side task prefix still unmasked."""
        return self.model.prepare_decoder_input_ids_from_labels(labels=batch.get("decoder_targets", batch["labels"]))

    def model_logits(self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None) -> torch.Tensor:
        """The decoder reads the right-shifted labels (teacher forcing); logits align with the labels as they are."""
        return self.model(
            input_ids=None if encoder_outputs is not None else batch["input_ids"],
            attention_mask=batch["attention_mask"], decoder_input_ids=self._decoder_input_ids(batch),
            encoder_outputs=encoder_outputs, use_cache=False,
        ).logits

    def forward_with_hidden(self, batch: dict[str, torch.Tensor], hidden: bool = True) -> Forward:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         decoder_input_ids=self._decoder_input_ids(batch), output_hidden_states=hidden,
                         use_cache=False)
        hs = {"encoder": out.encoder_hidden_states, "decoder": out.decoder_hidden_states} if hidden else {}
        return Forward(out.logits, batch["labels"], hs, self.side_masks(batch))

    def side_masks(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"encoder": batch["attention_mask"], "decoder": (batch["labels"] != IGNORE_INDEX).long()}

    def shared_encoding(self, batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor | None:
        """One encoder pass over the batch's rows when the collator found every task reads the same source
        (``student.prefix_side: decoder``); None otherwise."""
        first = next(iter(batch.values()), {})
        if "shared_input_ids" not in first:
            return None
        return self.model.get_encoder()(input_ids=first["shared_input_ids"],
                                        attention_mask=first["shared_attention_mask"]).last_hidden_state

    def pair_logits(self, sources: Sequence[list[int]], owners: Sequence[int], targets: Sequence[list[int]],
                    n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoder pass per source; the decoder reads each of its targets."""
        device = self.model.device
        src = pad_seq2seq([TaskItem(s, [0]) for s in sources], self.pad_token_id)
        src = {k: v.to(device) for k, v in src.items()}
        hidden = self.model.get_encoder()(input_ids=src["input_ids"],
                                          attention_mask=src["attention_mask"]).last_hidden_state
        idx = torch.tensor(owners, device=device)
        tgt = pad_seq2seq([TaskItem([0], t, n_prefix=n_prefix) for t in targets], self.pad_token_id)
        pair = {"attention_mask": src["attention_mask"][idx], "labels": tgt["labels"].to(device)}
        if n_prefix:
            pair["decoder_targets"] = tgt["decoder_targets"].to(device)
        return self.target_logits(pair, BaseModelOutput(last_hidden_state=hidden[idx]))

    def generate_ids(self, sources: Sequence[list[int]], head: list[int], max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding; a decoder-side prefix (``head``) is forced after the decoder start token."""
        model, device = self.model, self.model.device
        ids, mask = self._right_padded(sources)
        forced = {}
        if head:
            start = model.generation_config.decoder_start_token_id
            start = model.config.decoder_start_token_id if start is None else start
            forced = {"decoder_input_ids": torch.tensor([[start, *head]] * len(sources), device=device)}
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, num_beams=1, pad_token_id=self.pad_token_id,
                             eos_token_id=self.eos_token_id, **forced)
        return out[:, 1 + len(head):] if head else out
