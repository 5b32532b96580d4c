"""The causal (decoder-only) student: prompt and target in one sequence, position t predicting token t+1."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Forward, Student
from .task_items import TaskItem, pad_causal


class CausalStudent(Student):
    """A decoder-only language model (GPT-2, LLaMA, BERT as a causal LM)."""

    kind = "causal"
    source_suffix = "\n"  # the target starts on a fresh line after the prompt
    hidden_sides = ("decoder",)
    pad = staticmethod(pad_causal)
    hf_auto_class = "AutoModelForCausalLM"

    def target_token_ids(self, text: str) -> list[int]:
        """A target continues the prompt, so it starts with a space (one word piece, not a glued one)."""
        return super().target_token_ids(text if text.startswith(" ") else " " + text)

    logit_shift = 1  # position t predicts token t+1

    def model_logits(self, batch: dict[str, torch.Tensor], encoder_outputs: object | None = None) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits

    def forward_with_hidden(self, batch: dict[str, torch.Tensor], hidden: bool = True) -> Forward:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         output_hidden_states=hidden, use_cache=False)
        hs = {"decoder": out.hidden_states} if hidden else {}
        return Forward(out.logits[:, :-1], batch["labels"][:, 1:], hs, self.side_masks(batch))

    def pair_logits(self, sources: Sequence[list[int]], owners: Sequence[int], targets: Sequence[list[int]],
                    n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each (source, target) pair as one sequence."""
        pairs = pad_causal([TaskItem(sources[o], t) for o, t in zip(owners, targets, strict=True)],
                           self.pad_token_id)
        return self.target_logits({k: v.to(self.model.device) for k, v in pairs.items()})

    def generate_ids(self, sources: Sequence[list[int]], head: list[int], max_new_tokens: int) -> torch.Tensor:
        """Left-padded, so every row continues from its last prompt token; returns what follows the prompt."""
        width, pad, device = max(len(s) for s in sources), self.pad_token_id, self.model.device
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in sources])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sources])
        out = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                  max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
                                  eos_token_id=self.eos_token_id)
        return out[:, width:]
