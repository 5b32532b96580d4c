"""White-box KD for a multiple-choice student: each loss term by hand, cached = online, a cut student's plain best/,
a resumed run equal to an uninterrupted one, and one-line refusals of a teacher it cannot distil from."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMultipleChoice, AutoTokenizer, BertConfig, BertForMultipleChoice

from tinydistill.config.loader import config_from_dict
from tinydistill.config.schema import LayerPair, StudentConfig, WhiteboxConfig
from tinydistill.errors import TinyDistillError
from tinydistill.losses import attention_kl, choice_cross_entropy, choice_kl, hidden_mse
from tinydistill.methods.choice_whitebox import (
    ChoiceWhiteBoxObjective,
    load_choice_teacher,
    pair_forward,
    positions,
    skip_layer_map,
)
from tinydistill.run import run
from tinydistill.students.choice import ChoiceItem, pad_choices
from tinydistill.students.registry import load_student

from .conftest import run_config

QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture(scope="module")
def choice_teacher(tmp_path_factory, tokenizer_dir):
    """A saved 4-layer multiple-choice model (width 48) with the MiniLM tokenizer: the teacher's format."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    out = tmp_path_factory.mktemp("choice_teacher")
    BertForMultipleChoice(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ------------------------------------------------------------------------------------------ each term by hand
def test_attention_kl_against_a_hand_computed_value():
    p = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])  # (N=1, heads=1, S=2, S=2)
    q = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row1 = 1.0 * math.log(1.0 / 0.5)
    assert attention_kl(q, p, torch.tensor([[1, 1]])).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert attention_kl(q, p, torch.tensor([[1, 0]])).item() == pytest.approx(row0, abs=1e-6)  # padded query: out
    assert attention_kl(p, p, torch.tensor([[1, 1]])).item() == pytest.approx(0.0, abs=1e-6)


def test_cls_positions_give_the_first_token_mse_by_hand():
    s = torch.tensor([[[1.0, 2.0], [5.0, 5.0]], [[0.0, 0.0], [9.0, 9.0]]])  # (N=2, S=2, H=2)
    t = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 3.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1], [0, 0]])  # the second pair is a padded choice: no position counts
    cls = positions(mask, "cls")
    assert cls.tolist() == [[1, 0], [0, 0]]
    assert hidden_mse(s, t, cls).item() == pytest.approx((1 + 4) / 2)
    assert hidden_mse(s, t, positions(mask, "all")).item() == pytest.approx((1 + 4 + 25 + 25) / 4)


def test_skip_layer_map_is_evenly_spaced_and_ends_on_the_last_layer():
    assert [(p.student, p.teacher) for p in skip_layer_map(3, 6)] == [(1, 2), (2, 4), (3, 6)]
    assert [(p.student, p.teacher) for p in skip_layer_map(2, 6)] == [(1, 3), (2, 6)]


def _items(tok):
    items = []
    for row, (q, choices, label) in enumerate([("what goes with a cat?", ["milk", "bone", "hay"], 0),
                                               ("what goes with a dog?", ["milk", "bone"], 1)]):
        enc = tok([q] * len(choices), choices, return_token_type_ids=True)
        items.append(ChoiceItem(enc["input_ids"], enc["token_type_ids"], label, row=row))
    return items


def _batch(tok):
    return pad_choices(_items(tok), tok.pad_token_id)


def _student(tiny_bert_dir):
    torch.manual_seed(0)
    return load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice",
                                      attn_implementation="eager"))


def test_objective_terms_equal_the_loss_functions_on_a_tiny_batch(tiny_bert_dir, choice_teacher, tmp_path):
    student = _student(tiny_bert_dir)
    cfg = WhiteboxConfig(teacher_model=str(choice_teacher), alpha_kd=0.3, kd_temperature=2.0, hidden_mse_weight=2.0,
                         attention_kl_weight=0.5)
    obj = ChoiceWhiteBoxObjective(cfg, student, row_ids=["a", "b"], cache_dir=tmp_path)
    assert [(p.student, p.teacher) for p in obj.pairs] == [(1, 2), (2, 4)]  # 2 of 4 layers, PKD skip
    batch = _batch(student.tokenizer)
    terms = obj.terms(student, {"answer": batch})
    s = pair_forward(student, batch, [1, 2], True)
    t = pair_forward(obj.teacher, batch, [2, 4], True)
    assert s.mask.tolist()[5] == [0] * s.mask.shape[1]  # the dog row's padded third choice reads nothing
    w, v = terms["answer"]
    assert (w, v.item()) == pytest.approx((0.7, choice_cross_entropy(s.scores, batch["labels"]).item()))
    w, v = terms["kd"]
    assert (w, v.item()) == pytest.approx((0.3 * 4, choice_kl(s.scores, t.scores, 2.0).item()))
    for j, name in enumerate(("hidden/1-2", "hidden/2-4")):
        w, v = terms[name]
        want = hidden_mse(obj.projections[j](s.hidden[j]), t.hidden[j], s.mask)
        assert (w, v.item()) == pytest.approx((1.0, want.item()))
    w, v = terms["attention"]
    assert (w, v.item()) == pytest.approx((0.5, attention_kl(s.attention, t.attention, s.mask).item()))
    assert v.item() > 0


def test_cached_signals_equal_online_and_a_changed_layer_map_rewrites_them(tiny_bert_dir, choice_teacher, tmp_path):
    student = _student(tiny_bert_dir)
    batch = _batch(student.tokenizer)
    base = {"teacher_model": str(choice_teacher), "attention_kl_weight": 0.5}
    online = ChoiceWhiteBoxObjective(WhiteboxConfig(**base), student, row_ids=["a", "b"], cache_dir=tmp_path)
    cached = ChoiceWhiteBoxObjective(WhiteboxConfig(**base, signals="cached"), student, row_ids=["a", "b"],
                                     cache_dir=tmp_path)
    cached.projections.load_state_dict(online.projections.state_dict())  # 32 → 48: random, so the same ones
    items = [{"answer": it} for it in _items(student.tokenizer)]
    cached.prepare(items)
    assert cached.teacher is None  # released: training reads only the cache
    a, b = online.terms(student, {"answer": batch}), cached.terms(student, {"answer": batch})
    for name in a:
        assert b[name][1].item() == pytest.approx(a[name][1].item(), rel=1e-5, abs=1e-6), name
    meta = json.loads((tmp_path / "meta.json").read_text())
    other = ChoiceWhiteBoxObjective(WhiteboxConfig(**base, signals="cached",
                                                   layer_map=[LayerPair(side="encoder", student=2, teacher=3)]),
                                    student, row_ids=["a", "b"], cache_dir=tmp_path)
    other.prepare(items)
    assert json.loads((tmp_path / "meta.json").read_text()) != meta  # the new map's signals, not the stale ones
    assert set(load_file(str(tmp_path / "signals.safetensors"))) >= {"a::0::hidden0", "b::1::attention"}
    assert "a::0::hidden1" not in load_file(str(tmp_path / "signals.safetensors"))


# ------------------------------------------------------------------------------------------ refusals
def test_a_teacher_of_another_kind_is_refused_in_one_line_naming_the_key(tiny_bert_dir, tiny_t5_dir):
    student = _student(tiny_bert_dir)
    for teacher in (tiny_t5_dir, tiny_bert_dir):  # a seq2seq model; a bare encoder without a choice head
        with pytest.raises(TinyDistillError) as e:
            load_choice_teacher(WhiteboxConfig(teacher_model=str(teacher)), student)
        assert str(e.value).startswith("whitebox.teacher_model:") and "\n" not in str(e.value)


def test_a_teacher_with_another_tokenizer_is_refused_in_one_line_naming_the_key(tiny_bert_dir, choice_teacher,
                                                                                tmp_path):
    other = tmp_path / "other"
    AutoModelForMultipleChoice.from_pretrained(choice_teacher).save_pretrained(other)
    tok = AutoTokenizer.from_pretrained(choice_teacher)
    tok.add_tokens(["zzyzx-only-here"])
    tok.save_pretrained(other)
    student = _student(tiny_bert_dir)
    with pytest.raises(TinyDistillError) as e:
        load_choice_teacher(WhiteboxConfig(teacher_model=str(other)), student)
    assert str(e.value).startswith("whitebox.teacher_model:") and "tokenizer" in str(e.value)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ end to end
def _wb_config(choice_teacher, data, out, **over):
    wb = {"teacher_model": str(choice_teacher), "signals": "cached", "attention_kl_weight": 0.1}
    base = {"method": "whitebox", "teachers": [], "whitebox": wb, "student.architecture": "multiple_choice",
            "student.model": str(choice_teacher), "student.num_layers": 2, "student.attn_implementation": "eager",
            "train.max_steps": 12, "train.batch_size": 8, "train.checkpoint_every": 4, "train.eval_every": 6,
            "eval.modes": ["rank"], "eval.valid_limit": 16}
    return config_from_dict(run_config(choice_teacher, data, out, **{**base, **over}))


@pytest.mark.slow
def test_a_cut_students_best_loads_as_a_plain_choice_model_without_projections(choice_teacher, synthetic_data,
                                                                              tmp_path):
    cfg = _wb_config(choice_teacher, synthetic_data, tmp_path)
    run(cfg, **QUIET)
    best = cfg.run_dir / "best"
    model = AutoModelForMultipleChoice.from_pretrained(best)
    assert model.config.num_hidden_layers == 2
    saved = load_file(str(best / "model.safetensors"))
    assert set(saved) == set(model.state_dict())
    assert not any("proj" in k for k in saved)
    assert any(k.startswith("classifier") for k in saved)
    log = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in log if "loss/hidden/1-2" in r or any(k.startswith("loss/hidden") for k in r)]
    assert trained, "the hidden-state terms were not logged"


@pytest.mark.slow
def test_a_run_stopped_mid_way_resumes_to_the_same_result(choice_teacher, synthetic_data, tmp_path):
    whole = _wb_config(choice_teacher, synthetic_data, tmp_path / "whole")
    run(whole, **QUIET)
    cut = _wb_config(choice_teacher, synthetic_data, tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        run(cut, stop_after_steps=6, **QUIET)
    run(cut, **QUIET)
    a = load_file(str(whole.run_dir / "best" / "model.safetensors"))
    b = load_file(str(cut.run_dir / "best" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    sa = json.loads((whole.run_dir / "summary.json").read_text())
    sb = json.loads((cut.run_dir / "summary.json").read_text())
    assert sa["valid"] == sb["valid"]


def test_a_teacher_retrained_in_place_is_not_read_from_a_stale_cache(tiny_bert_dir, choice_teacher, tmp_path):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(choice_teacher, teacher)
    student = _student(tiny_bert_dir)
    items = [{"answer": it} for it in _items(student.tokenizer)]
    cfg = WhiteboxConfig(teacher_model=str(teacher), signals="cached")
    ChoiceWhiteBoxObjective(cfg, student, row_ids=["a", "b"], cache_dir=tmp_path / "sig").prepare(items)
    before = load_file(str(tmp_path / "sig" / "signals.safetensors"))["a::scores"]
    model = AutoModelForMultipleChoice.from_pretrained(teacher)
    with torch.no_grad():
        model.classifier.bias.add_(torch.tensor([1.0]))
        model.classifier.weight.mul_(-1.0)
    model.save_pretrained(teacher)  # the same path, other weights
    ChoiceWhiteBoxObjective(cfg, student, row_ids=["a", "b"], cache_dir=tmp_path / "sig").prepare(items)
    after = load_file(str(tmp_path / "sig" / "signals.safetensors"))["a::scores"]
    assert not torch.allclose(before, after)
