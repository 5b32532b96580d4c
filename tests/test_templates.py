"""Teacher prompts, in-context example generation/selection and the quality policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tests.teacher_helpers import ScriptedBackend, make_examples
from tinydistill.config.teachers import GenerationSpec, HFTeacherSpec, ICLSpec, QualitySpec
from tinydistill.data.records import Example
from tinydistill.teachers import icl
from tinydistill.teachers.backend import LENGTH, Generation
from tinydistill.teachers.cache import TeacherCache
from tinydistill.teachers.live import LiveTeacher, judge
from tinydistill.teachers.templates import (
    COT,
    TEACHER_FORCING,
    Exemplar,
    messages,
    parse_exemplar,
    render,
    resolve_template,
)

EX = Example(id="1", question="Which metal rusts?", choices=("gold", "iron", "silver"), answer=1)


def test_teacher_forcing_puts_question_options_and_gold_in_the_prompt() -> None:
    text = render(EX, TEACHER_FORCING)
    assert "Which metal rusts?" in text and "(a) gold\n(b) iron\n(c) silver" in text
    assert "Correct answer: (b) iron" in text and "Thus, the answer is (b) iron." in text


def test_cot_has_no_gold_answer() -> None:
    text = render(EX, COT)
    assert "(b) iron" in text and "Correct answer" not in text and "Let's think step by step" in text
    with pytest.raises(ValueError, match="gold"):
        render(Example("2", "q?", ("x", "y"), None), TEACHER_FORCING)
    assert render(Example("2", "q?", ("x", "y"), None), COT)  # unlabeled rows work without teacher forcing


def test_custom_template_replaces_only_known_placeholders() -> None:
    custom = '{examples}Q={question} | {choices} | gold={answer} | json {"k": 1} {unknown}'
    assert resolve_template("cot", custom) == custom
    text = render(EX, custom)
    assert text.startswith("Q=Which metal rusts? | (a) gold") and "gold=(b) iron" in text
    assert '{"k": 1} {unknown}' in text
    with pytest.raises(KeyError):
        resolve_template("nope")


def test_examples_block_and_chat_messages() -> None:
    ex = Exemplar("Is ice cold?", ("yes", "no"), 0, "Ice is frozen water. Thus, the answer is (a) yes.")
    text = render(EX, TEACHER_FORCING, [ex])
    assert text.index("Is ice cold?") < text.index("Which metal rusts?")
    assert "Correct answer: (a) yes\nRationale: Ice is frozen water." in text
    assert "Correct answer" not in render(EX, COT, [ex])  # no gold leaks into the CoT ablation
    assert messages("hi", "be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert messages("hi") == [{"role": "user", "content": "hi"}]


def test_parse_exemplar() -> None:
    good = (
        "Question: What melts ice?\nAnswer Choices:\n(a) heat\n(b) cold\nCorrect answer: (a) heat\n"
        "Rationale: Heat raises the temperature above zero. Thus, the answer is (a) heat.\n\nQuestion: more"
    )
    ex = parse_exemplar(good)
    assert ex == Exemplar(
        "What melts ice?",
        ("heat", "cold"),
        0,
        "Heat raises the temperature above zero. Thus, the answer is (a) heat.",
    )
    assert parse_exemplar("random words") is None
    assert parse_exemplar(good.replace("Correct answer: (a)", "Correct answer: (d)")) is None


def test_spec_checks() -> None:
    with pytest.raises(ValidationError, match="num_samples"):
        GenerationSpec(num_samples=2)
    with pytest.raises(ValidationError, match="pool_size"):
        ICLSpec(k=5, pool_size=2)
    spec = HFTeacherSpec(name="t", model="m", generation={"prompt_template": "{question}"}, icl={"k": 2})
    assert spec.generation.prompt_template == "{question}" and spec.icl.k == 2


def test_random_selection_is_stable_and_skips_own_question() -> None:
    rows = make_examples(5)
    pool = [Exemplar(r.question, r.choices, r.answer or 0, f"r{i}") for i, r in enumerate(rows)]
    a = icl.select_random(rows, pool, 2, seed=0)
    assert a == icl.select_random(rows, pool, 2, seed=0)
    assert all(
        len(sel) == 2 and all(e.question != r.question for e in sel) for r, sel in zip(rows, a, strict=True)
    )


def test_nearest_selection_with_fake_embedder() -> None:
    def embed(texts: list[str]) -> np.ndarray:  # 2-d "topic" embedding
        return np.array([[1.0, 0.0] if "metal" in t else [0.0, 1.0] for t in texts])

    pool = [
        Exemplar("a metal question", ("x", "y"), 0, "m"),
        Exemplar("a plant question", ("x", "y"), 0, "p"),
        Exemplar("another metal one", ("x", "y"), 0, "m2"),
    ]
    (sel,) = icl.select_nearest([EX], pool, 2, embed)
    assert {e.rationale for e in sel} == {"m", "m2"}


@pytest.mark.slow
def test_nearest_selection_with_minilm() -> None:
    embed = icl.sentence_embedder("minilm")
    pool = [
        Exemplar("Which gas do plants absorb from the air?", ("a", "b"), 0, "plants"),
        Exemplar("What makes iron objects rust?", ("a", "b"), 0, "rust"),
        Exemplar("How many legs does a spider have?", ("a", "b"), 0, "spider"),
    ]
    (sel,) = icl.select_nearest([EX], pool, 1, embed)
    assert sel[0].rationale == "rust"


def test_generator_writes_pool_once_through_the_cache(tmp_path: Path) -> None:
    train = make_examples(10)
    spec = ICLSpec(k=2, pool_size=4, seed=1)
    backend = ScriptedBackend(reply="Because of the facts.")
    t = LiveTeacher("t", backend, TeacherCache(tmp_path / "c.sqlite"), icl=spec, icl_pool=train)
    prompts = t.prompts(make_examples(3, prefix="v"))
    assert len(t.exemplars()) == 4 and len(backend.calls) == 4  # zero-shot prompts: no exemplar block
    assert all(p.count("Rationale:") == 3 for p in prompts)  # two exemplars + the question
    again = ScriptedBackend(reply="Because of the facts.")
    t2 = LiveTeacher("t", again, TeacherCache(tmp_path / "c.sqlite"), icl=spec, icl_pool=train)
    assert t2.prompts(make_examples(3, prefix="v")) == prompts and again.calls == []
    wrong = LiveTeacher(
        "w",
        ScriptedBackend(reply="Thus, the answer is (a) x."),
        TeacherCache(tmp_path / "c.sqlite"),
        icl=spec,
        icl_pool=train,
    )
    assert all(e.answer == 0 for e in wrong.exemplars())  # exemplars contradicting gold are not used
    with pytest.raises(ValueError, match="icl_pool"):
        LiveTeacher("t", ScriptedBackend(), TeacherCache(tmp_path / "c.sqlite"), icl=spec).exemplars()


def test_synthesize_mode_parses_and_drops_bad_outputs() -> None:
    rows = make_examples(3)
    good = (
        "Question: What melts ice?\nAnswer Choices:\n(a) heat\n(b) cold\nCorrect answer: (a) heat\n"
        "Rationale: Heat melts it."
    )
    out = icl.build_exemplars(rows, [good, "garbage", good], ICLSpec(mode="synthesize"))
    assert len(out) == 2 and out[0].question == "What melts ice?"
    assert "Style example" in icl.generation_prompts(rows[:1], ICLSpec(mode="synthesize"), TEACHER_FORCING)[0]


@pytest.mark.parametrize(
    ("text", "reason", "policy", "weight", "kept", "flags"),
    [
        ("Rust is iron oxide. Thus, the answer is (b) iron.", "stop", {}, 1.0, True, ()),
        ("Gold shines. Thus, the answer is (a) gold.", "stop", {}, 0.5, True, ("contradicts",)),
        (
            "Gold shines. Thus, the answer is (a) gold.",
            "stop",
            {"on_contradict": "drop"},
            0.0,
            False,
            ("contradicts",),
        ),
        (
            "Gold shines. Thus, the answer is (a) gold.",
            "stop",
            {"on_contradict": "keep"},
            1.0,
            True,
            ("contradicts",),
        ),
        ("", "stop", {"on_contradict": "keep"}, 0.0, False, ("empty",)),
        ("Rust forms when iron", LENGTH, {}, 1.0, True, ("truncated",)),
        (
            "Rust forms when iron",
            LENGTH,
            {"on_truncated": "downweight", "downweight": 0.25},
            0.25,
            True,
            ("truncated",),
        ),
        ("Rust forms when iron", LENGTH, {"on_truncated": "drop"}, 0.0, False, ("truncated",)),
    ],
)
def test_quality_policy(text, reason, policy, weight, kept, flags) -> None:
    rec = judge(EX, Generation(text, finish_reason=reason), 0, QualitySpec(**policy))
    assert rec.weight == pytest.approx(weight) and (rec.rationale is not None) == kept and rec.flags == flags
    assert rec.agrees == ("(b) iron" in text)


def test_teacher_exposes_weights_and_samples(tmp_path: Path) -> None:
    rows = make_examples(3)
    backend = ScriptedBackend(reply="It is so. Thus, the answer is (a) x.")  # agrees only where gold is (a)
    t = LiveTeacher(
        "t",
        backend,
        TeacherCache(tmp_path / "c.sqlite"),
        generation=GenerationSpec(gen_temperature=0.7, num_samples=2),
    )
    assert t.rationale_weights(rows) == [1.0, 0.5, 0.5]
    assert [len(s) for s in t.samples(rows)] == [2, 2, 2] and len(backend.calls) == 6
