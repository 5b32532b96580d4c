"""The BERT encoder computed on real tokens only, its last layer only where a head reads it (students/bert_readout):
the same states, logits, losses and gradients as the transformers forward — with dropout on too, since it draws
the padded forward's masks in the same order — and the transformers forward wherever it cannot promise that."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMultipleChoice

from tinydistill.students import bert_readout
from tinydistill.students.choice import ChoiceModel, MaskedRationaleHead
from tinydistill.training.cpu_dropout import cpu_dropout


def tiny_scorer(attn: str = "eager", dropout: float = 0.2) -> BertForMultipleChoice:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=64, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout, attn_implementation=attn)
    return BertForMultipleChoice(cfg)


def ragged(rows: int, length: int, read: float = 0.3, seed: int = 0):
    """(rows, length) inputs with rows of different real lengths (right padding) and positions to read."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length + 1, (rows,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = torch.randint(5, 120, (rows, length), generator=g) * mask
    types = (torch.arange(length)[None] >= lengths[:, None] // 2).long() * mask
    wanted = (torch.rand(rows, length, generator=g) < read) & mask.bool()
    wanted[1] = False  # a row read nowhere
    wanted[2, 0] = True
    return ids, mask, types, wanted


def grads(model: torch.nn.Module, out: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()  # every element matters
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and len(a) > 20
    for name, g in a.items():
        torch.testing.assert_close(b[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("fast_cpu_dropout", [False, True])
def test_states_read_where_wanted_equal_the_transformers_forward_with_their_gradients(training, fast_cpu_dropout):
    encoder = tiny_scorer().bert.train(training)
    ids, mask, types, wanted = ragged(6, 20)
    assert bert_readout.supports(encoder)
    with cpu_dropout(torch.device("cpu" if fast_cpu_dropout else "meta")):
        torch.manual_seed(7)
        full = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state[wanted]
        full_grads = grads(encoder, full)
        torch.manual_seed(7)
        read = bert_readout.hidden_at(encoder, ids, mask, types, wanted)
        read_grads = grads(encoder, read)
    assert read.shape == full.shape == (int(wanted.sum()), 32)
    torch.testing.assert_close(read, full, rtol=1e-5, atol=1e-6)
    assert_same_grads(full_grads, read_grads)
    if training:  # dropout really drew masks: another seed reads other values
        torch.manual_seed(8)
        assert not torch.allclose(bert_readout.hidden_at(encoder, ids, mask, types, wanted), full, atol=1e-3)


@pytest.mark.parametrize("training", [False, True])
def test_choice_logits_equal_the_multiple_choice_forward(training):
    scorer = tiny_scorer().train(training)
    ids, mask, types, _ = ragged(6, 16)
    shaped = [t.view(2, 3, 16) for t in (ids, mask, types)]
    assert bert_readout.supports_choice_head(scorer, shaped[1])
    with cpu_dropout(torch.device("cpu")):
        torch.manual_seed(3)
        full = scorer(input_ids=shaped[0], attention_mask=shaped[1], token_type_ids=shaped[2]).logits
        full_grads = grads(scorer, full)
        torch.manual_seed(3)
        read = bert_readout.choice_logits(scorer, *shaped)
        read_grads = grads(scorer, read)
    torch.testing.assert_close(read, full, rtol=1e-5, atol=1e-6)
    assert_same_grads(full_grads, read_grads)


def test_the_choice_models_losses_and_gradients_do_not_change_with_the_readout():
    """The two heads as training calls them, selective readout on and off, dropout on, same seed."""
    scorer = tiny_scorer()
    model = ChoiceModel(scorer, mlm_head=MaskedRationaleHead(32, 120)).train()
    ids, mask, types, wanted = ragged(8, 18, seed=1)
    labels = torch.where(wanted, ids, torch.full_like(ids, -100))
    rationale = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "mlm_labels": labels}
    teachers = {"a": {k: v[:4] for k, v in rationale.items()}, "b": {k: v[4:, :12] for k, v in rationale.items()}}
    teachers["b"]["attention_mask"] = teachers["b"]["attention_mask"].clone()
    teachers["b"]["attention_mask"][:, 11] = 0  # rows cut at 12 stay right-padded
    answer = {"input_ids": ids.view(2, 4, 18), "attention_mask": mask.view(2, 4, 18),
              "token_type_ids": types.view(2, 4, 18), "choice_mask": torch.ones(2, 4, dtype=torch.bool)}

    def losses(selective: bool):
        model.selective_readout = selective
        model.zero_grad(set_to_none=True)
        with cpu_dropout(torch.device("cpu")):
            torch.manual_seed(11)
            joint = model.masked_rationale_losses(teachers)
            one = model.masked_rationale_loss(rationale)
            scores = model.choice_scores(answer)
        total = joint["a"] + 0.5 * joint["b"] + one + torch.nn.functional.cross_entropy(scores, torch.tensor([1, 3]))
        total.backward()
        return total.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    whole, whole_grads = losses(False)
    read, read_grads = losses(True)
    assert read == pytest.approx(whole, rel=1e-5)
    assert_same_grads(whole_grads, read_grads)


def test_encoders_it_cannot_follow_take_the_transformers_forward():
    eager = tiny_scorer("eager").bert
    assert bert_readout.supports(eager.train()) and bert_readout.supports(eager.eval())
    sdpa = tiny_scorer("sdpa").bert
    assert bert_readout.supports(sdpa.eval())  # no attention dropout: the function is the same
    assert not bert_readout.supports(sdpa.train())  # SDPA draws its attention dropout inside the kernel
    assert bert_readout.supports(tiny_scorer("sdpa", dropout=0.0).bert.train())
    checkpointed = tiny_scorer()
    checkpointed.activation_checkpointing_enable()
    assert not bert_readout.supports(checkpointed.bert)
    assert not bert_readout.supports(torch.nn.Linear(2, 2))
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(tiny_scorer(), LoraConfig(target_modules=["query", "value"], r=2))
    assert not bert_readout.supports(lora.base_model)  # what ChoiceModel.encoder is for a LoRA student

    model = ChoiceModel(tiny_scorer("sdpa")).train()  # falls back: still the transformers function
    ids, mask, types, _ = ragged(4, 10)
    batch = {"input_ids": ids.view(2, 2, 10), "attention_mask": mask.view(2, 2, 10),
             "token_type_ids": types.view(2, 2, 10), "choice_mask": torch.ones(2, 2, dtype=torch.bool)}
    torch.manual_seed(0)
    got = model.choice_scores(batch)
    torch.manual_seed(0)
    want = model.scorer(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    torch.testing.assert_close(got, want)


def test_a_left_padded_pair_is_scored_as_transformers_scores_it():
    """The choice head reads each pair's first position; where that is padding, the whole forward runs."""
    model = ChoiceModel(tiny_scorer()).eval()
    ids, mask, types, _ = ragged(4, 10)
    mask, ids = mask.flip(1), ids.flip(1)  # left padding
    batch = {"input_ids": ids.view(2, 2, 10), "attention_mask": mask.view(2, 2, 10),
             "token_type_ids": types.view(2, 2, 10), "choice_mask": torch.ones(2, 2, dtype=torch.bool)}
    want = model.scorer(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    torch.testing.assert_close(model.choice_scores(batch), want)
    assert not bert_readout.supports_choice_head(model.scorer, batch["attention_mask"])
    assert bert_readout.supports_choice_head(model.scorer, batch["attention_mask"].flip(-1))


def test_under_bf16_autocast_the_states_equal_the_transformers_forward():
    """As training runs on a bf16-native CPU or a GPU (`train.mixed_precision: auto`)."""
    encoder = tiny_scorer().bert.train()
    ids, mask, types, wanted = ragged(6, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(7)
        full = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state[wanted]
        torch.manual_seed(7)
        read = bert_readout.hidden_at(encoder, ids, mask, types, wanted)
    assert read.dtype == full.dtype
    torch.testing.assert_close(read, full, rtol=1e-2, atol=1e-2)


def test_a_choice_model_reads_through_the_readout_by_default(monkeypatch):
    """Both heads of a default ChoiceModel (eager BERT, training) take the readout, not the whole forward."""
    calls = []
    real = bert_readout.hidden_at
    monkeypatch.setattr(bert_readout, "hidden_at", lambda *a: calls.append(a[-1].sum().item()) or real(*a))
    model = ChoiceModel(tiny_scorer(), mlm_head=MaskedRationaleHead(32, 120)).train()
    ids, mask, types, wanted = ragged(4, 12)
    model.choice_scores({"input_ids": ids.view(2, 2, 12), "attention_mask": mask.view(2, 2, 12),
                         "token_type_ids": types.view(2, 2, 12), "choice_mask": torch.ones(2, 2, dtype=torch.bool)})
    model.masked_rationale_loss({"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
                                 "mlm_labels": torch.where(wanted, ids, torch.full_like(ids, -100))})
    assert calls == [4, int(wanted.sum())]  # each pair's first token; the masked tokens
