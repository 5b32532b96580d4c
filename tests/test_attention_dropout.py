"""``student.attention_dropout`` reaches every attention layer the student loads, or fails with a clear line."""

from __future__ import annotations

import pytest
import torch

from tinydistill.config.schema import StudentConfig
from tinydistill.errors import TinyDistillError
from tinydistill.students.registry import load_student, save_student


def _two_passes_in_train_mode(student) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000, 2000, (2, 3, 24))
    student.model.train()
    torch.manual_seed(0)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "choice_mask": torch.ones(2, 3)}
    first = student.model.choice_scores(batch)
    torch.manual_seed(1)
    return first, student.model.choice_scores(batch)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_attention_dropout_is_applied_in_training(tiny_bert_dir, attn):
    """The checkpoint has no dropout (passes repeat exactly); 0.5 on attention alone makes them differ."""
    kept = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice",
                                      attn_implementation=attn, rationale_head="decoder"),
                        with_rationale_head=True)
    a, b = _two_passes_in_train_mode(kept)
    assert torch.equal(a, b)
    dropped = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice",
                                         attn_implementation=attn, attention_dropout=0.5,
                                         rationale_head="decoder"), with_rationale_head=True)
    a, b = _two_passes_in_train_mode(dropped)
    assert not torch.allclose(a, b)
    assert dropped.model.scorer.config.attention_probs_dropout_prob == 0.5
    assert dropped.model.decoder.config.attention_probs_dropout_prob == 0.5


def test_attention_dropout_reaches_both_sides_of_bert2bert(tiny_bert_dir):
    student = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="bert2bert", attention_dropout=0.2))
    assert student.model.config.encoder.attention_probs_dropout_prob == 0.2
    assert student.model.config.decoder.attention_probs_dropout_prob == 0.2


def test_attention_dropout_reaches_a_saved_bert2bert_when_reloaded(tiny_bert_dir, tmp_path):
    save_student(load_student(StudentConfig(model=str(tiny_bert_dir), architecture="bert2bert")), tmp_path)
    again = load_student(StudentConfig(model=str(tmp_path), attention_dropout=0.3))
    assert again.kind == "seq2seq"
    assert again.model.config.encoder.attention_probs_dropout_prob == 0.3
    assert again.model.config.decoder.attention_probs_dropout_prob == 0.3
    assert {m.p for m in again.model.modules() if isinstance(m, torch.nn.Dropout)} >= {0.3}


def test_a_narrow_random_student_takes_the_attention_dropout(tiny_bert_dir):
    narrow = load_student(StudentConfig(model=str(tiny_bert_dir), config_overrides={"intermediate_size": 32},
                                        attention_dropout=0.4))
    assert narrow.model.config.encoder.attention_probs_dropout_prob == 0.4


def test_a_model_without_attention_dropout_field_is_a_clear_error(tiny_t5_dir):
    with pytest.raises(TinyDistillError, match=r"student.attention_dropout: T5Config has no attention-dropout"):
        load_student(StudentConfig(model=str(tiny_t5_dir), attention_dropout=0.0))


def test_a_random_narrow_choice_student_is_a_clear_error(tiny_bert_dir):
    with pytest.raises(TinyDistillError, match=r"config_overrides.*multiple_choice"):
        load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice",
                                   config_overrides={"hidden_size": 16}))
