"""The local transformers backend on tiny random models: batched == one-by-one, seq2seq, sampling, cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.teacher_helpers import (
    make_examples,
    minilm_tokenizer,
    one_thread,
    tiny_bert2bert,
    tiny_gpt2,
    tiny_t5,
)
from tinydistill.config.teachers import GenerationSpec, HFTeacherSpec, ImportedTeacherSpec
from tinydistill.teachers.backend import LENGTH
from tinydistill.teachers.cache import TeacherCache
from tinydistill.teachers.factory import build_teacher
from tinydistill.teachers.hf import HFBackend
from tinydistill.teachers.live import LiveTeacher

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

PROMPTS = ["short one", "a rather longer prompt about iron and rust in water", "mid length prompt here", "x"]


def _loop(model, tok, prompt: str, max_new: int, causal: bool) -> str:
    enc = tok(prompt, return_tensors="pt", return_token_type_ids=False)
    out = model.generate(**enc, max_new_tokens=max_new, do_sample=False)
    new = out[0, enc["input_ids"].shape[1] :] if causal else out[0]
    return tok.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize(
    ("factory", "causal"), [(tiny_gpt2, True), (tiny_t5, False), (tiny_bert2bert, False)]
)
def test_batched_matches_per_example_generate(factory, causal) -> None:
    model, tok = factory(), minilm_tokenizer()
    b = HFBackend(model, tok, name="tiny", generation=GenerationSpec(max_new_tokens=6, batch_size=3))
    got = dict(b.generate(PROMPTS, [0] * len(PROMPTS)))
    assert sorted(got) == [0, 1, 2, 3]
    for i, p in enumerate(PROMPTS):
        assert got[i].text == _loop(model, tok, p, 6, causal), p  # new text only, no prompt echo
        assert got[i].prompt_tokens == len(tok(p)["input_ids"])
        assert got[i].finish_reason in ("stop", LENGTH) and 0 < got[i].completion_tokens <= 6


def test_length_finish_reason_and_left_truncation() -> None:
    b = HFBackend(
        tiny_gpt2(),
        minilm_tokenizer(),
        name="tiny",
        max_input_tokens=8,
        generation=GenerationSpec(max_new_tokens=3),
    )
    ((_, gen),) = b.generate([" ".join(["word"] * 50)], [0])
    assert gen.prompt_tokens == 8
    # a random model rarely emits EOS: a full-length output is flagged as cut off
    assert gen.finish_reason == (LENGTH if gen.completion_tokens == 3 else "stop")


def test_sampling_samples_differ_and_reproduce() -> None:
    gen = GenerationSpec(max_new_tokens=8, gen_temperature=1.0, num_samples=2, seed=3)
    b = HFBackend(tiny_t5(), minilm_tokenizer(), name="tiny", generation=gen)
    first = dict(b.generate(["same prompt", "same prompt"], [0, 1]))
    again = dict(b.generate(["same prompt", "same prompt"], [0, 1]))
    assert first[0].text != first[1].text
    assert [first[i].text for i in (0, 1)] == [again[i].text for i in (0, 1)]


def test_chat_template_used_when_present() -> None:
    tok = minilm_tokenizer()
    tok_chat = type(tok).from_pretrained(tok.name_or_path)
    tok_chat.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]
    b = HFBackend(tiny_gpt2(), tok_chat, name="tiny")
    assert b.uses_chat_template and b.render(msgs) == "<system>sys\n<user>hello\n<assistant>"
    assert HFBackend(tiny_gpt2(), tok_chat, name="tiny", chat_template=False).render(msgs) == "sys\n\nhello"
    assert not HFBackend(tiny_gpt2(), tok, name="tiny").uses_chat_template


def test_live_hf_teacher_through_cache(tmp_path: Path) -> None:
    rows = make_examples(5)
    gen = GenerationSpec(max_new_tokens=4, batch_size=4)
    t = LiveTeacher(
        "gpt",
        HFBackend(tiny_gpt2(), minilm_tokenizer(), name="tiny", generation=gen),
        TeacherCache(tmp_path / "c.sqlite"),
        generation=gen,
    )
    records = t.records(rows)
    assert t.stats.calls == 5 and all(len(r) == 1 for r in records)
    t2 = LiveTeacher(
        "gpt",
        HFBackend(tiny_gpt2(), minilm_tokenizer(), name="tiny", generation=gen),
        TeacherCache(tmp_path / "c.sqlite"),
        generation=gen,
    )
    assert t2.rationales(rows) == t.rationales(rows) and t2.stats.calls == 0 and t2.stats.hits == 5


def test_build_teacher_from_saved_folder(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-gpt2"
    tiny_gpt2().save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    spec = HFTeacherSpec(
        name="gpt", model=str(folder), dtype="float32", generation={"max_new_tokens": 3, "template": "cot"}
    )
    t = build_teacher(spec, cache_path=tmp_path / "c.sqlite")
    assert isinstance(t, LiveTeacher) and t.backend.device.type == "cpu"
    assert len(t.rationales(make_examples(2))) == 2 and t.stats.calls == 2
    imported = build_teacher(ImportedTeacherSpec(name="imp"), cache_path=tmp_path / "c.sqlite")
    assert imported.rationales(make_examples(1)) == [None]
