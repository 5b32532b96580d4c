"""Loaders: the TinyLLM layout (chunks as two teachers), generic files with a column map, cleaning."""

import json

import pytest

from tinydistill.data import ColumnMap, load_examples, majority_baseline, resolve_answer
from tinydistill.errors import DataError
from tinydistill.prompts import format_question, parse_answer
from tinydistill.rationales import clean_rationale, stated_answer
from tinydistill.teachers.imported import ImportedTeacher

FLAN = ("Iron is magnetic. Thus, the answer is (b) iron\n\nQ: What sticks to a magnet?\nAnswer Choices:\n"
        "(a) wood\n(b) iron")
LLAMA = "Let's think step by step. Magnets attract iron. So the answer is (b).\n# 17.\nQuestion: Next one?"


def make_tinyllm(folder, rows, rationales, split="train", chunk=2, jsonl=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "llm").mkdir(exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) if jsonl else json.dumps(rows)
    (folder / f"{folder.name}_{split}.json").write_text(text)
    for k in range(0, len(rationales), chunk):
        (folder / "llm" / f"{split}_CoT_{k // chunk}.json").write_text(json.dumps(rationales[k: k + chunk]))
    return folder


ROWS = [{"id": f"q{i}", "question": "What sticks to a magnet?", "choices": ["wood", "iron"], "answer": "iron"}
        for i in range(3)]


@pytest.mark.parametrize("jsonl", [False, True])
def test_tinyllm_layout_reads_two_teachers_and_cleans(tmp_path, jsonl):
    rats = [FLAN + " llama rationale: " + LLAMA, FLAN, FLAN + " llama rationale: "]
    folder = make_tinyllm(tmp_path / "mini", ROWS, rats, jsonl=jsonl)
    exs = load_examples(folder, "train")
    assert [e.answer for e in exs] == [1, 1, 1]
    assert exs[0].rationales["flan_t5"] == "Iron is magnetic. Thus, the answer is (b) iron"
    assert exs[0].rationales["llama2"] == "Let's think step by step. Magnets attract iron. So the answer is (b)."
    # a teacher with no output for a row is absent for that row (PIQA has no LLaMA rationales)
    assert "llama2" not in exs[1].rationales and "llama2" not in exs[2].rationales
    assert ImportedTeacher("llama2").rationales(exs) == [exs[0].rationales["llama2"], None, None]


def test_tinyllm_chunks_must_align(tmp_path):
    folder = make_tinyllm(tmp_path / "mini", ROWS, [FLAN, FLAN])
    with pytest.raises(DataError, match="2 rationales .* do not align with 3 rows"):
        load_examples(folder, "train")


def test_chunks_are_read_in_numeric_order(tmp_path):
    rows = [dict(ROWS[0], id=f"r{i}") for i in range(12)]
    rats = [f"reason {i}. Thus, the answer is (b) iron" for i in range(12)]
    folder = make_tinyllm(tmp_path / "mini", rows, rats, chunk=1)  # _CoT_10 must come after _CoT_9
    exs = load_examples(folder, "train")
    assert [e.rationales["flan_t5"].split(".")[0] for e in exs] == [f"reason {i}" for i in range(12)]


def test_csv_with_column_map_and_letter_answers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('qid,q,opts,label\n1,"2+2?","[""3"", ""4""]",B\n2,"1+1?","2|5",a\n')
    exs = load_examples(path, columns=ColumnMap(id="qid", question="q", choices="opts", answer="label"))
    assert [(e.id, e.choices, e.answer) for e in exs] == [("1", ("3", "4"), 1), ("2", ("2", "5"), 0)]


def test_skip_policy_drops_bad_rows_and_keeps_rationale_alignment(tmp_path):
    rows = [ROWS[0], {"id": "bad", "question": "q", "choices": ["x", "x"], "answer": "x"}, dict(ROWS[0], id="z")]
    folder = make_tinyllm(tmp_path / "mini", rows, ["r0. Thus, the answer is (b) iron", "r1", "r2 ok"])
    with pytest.raises(DataError, match="duplicate choice"):
        load_examples(folder, "train")
    exs = load_examples(folder, "train", on_invalid="skip")
    assert [e.id for e in exs] == ["q0", "z"] and exs[1].rationales["flan_t5"] == "r2 ok"


def test_resolve_answer_forms():
    choices = ["red", "Green", "blue"]
    assert [resolve_answer(v, choices) for v in ("Green", "green", "(c)", "A", 1, "2", "purple", 7)] == [
        1, 1, 2, 0, 1, 2, None, None]


def test_question_format_and_answer_parsing():
    from tinydistill.data import Example

    ex = Example("1", "Pick one", ("iron", "wood"), 0)
    assert format_question(ex) == "Pick one\nAnswer Choices:\n(a) iron\n(b) wood"
    assert parse_answer("(b) wood", ex.choices) == 1
    assert parse_answer("( b ) wood", ex.choices) == 1  # uncased WordPiece decoding
    assert parse_answer("iron", ex.choices) == 0
    assert parse_answer("B.", ex.choices) == 1
    assert parse_answer("something else", ex.choices) is None


def test_stated_answer_and_cleaning():
    assert stated_answer("Thus, the answer is (b) iron", ["wood", "iron"]) == 1
    assert stated_answer("so the answer is iron.", ["wood", "iron"]) == 1
    assert stated_answer("Step 1: think about magnets", ["wood", "iron"]) is None
    assert clean_rationale("  a   b \n\n\nc\n# 3.\nQuestion: x") == "a b\nc"


def test_majority_baseline():
    from tinydistill.data import Example

    exs = [Example(str(i), "q", ("a", "b"), a) for i, a in enumerate([0, 0, 1, 0])]
    assert majority_baseline(exs) == 0.75


def test_real_shipped_data_loads_when_present(shared_data):
    exs = load_examples(shared_data / "arc", "valid")
    assert len(exs) == 295
    assert sum("flan_t5" in e.rationales for e in exs) == 295
    assert sum("llama2" in e.rationales for e in exs) > 250
    piqa = load_examples(shared_data / "piqa", "valid")
    assert not any("llama2" in e.rationales for e in piqa)


def test_hf_datasets_loader_adapts_hub_schemas(tmp_path):
    """`format: hf` goes through datasets.load_dataset; a local folder stands in for a hub name here."""
    arc_style = [{"id": "m1", "question": "Which is a metal?",
                  "choices": {"text": ["wood", "iron", "glass"], "label": ["A", "B", "C"]}, "answerKey": "B"}]
    obqa_style = [{"id": "o1", "question_stem": "Sun is a", "choices": {"text": ["star", "moon"], "label": ["A", "B"]},
                   "answerKey": "A"}]
    wino_style = [{"sentence": "The trophy didn't fit in the case because _ was too big.", "option1": "trophy",
                   "option2": "case", "answer": "1"}]
    for name, rows in (("arc", arc_style), ("obqa", obqa_style), ("wino", wino_style)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        ex = load_examples(folder, "train", fmt="hf")[0]
        assert ex.answer_text == {"arc": "iron", "obqa": "star", "wino": "trophy"}[name]
    with pytest.raises(DataError, match="could not load dataset"):
        load_examples(tmp_path / "missing-dataset", "train", fmt="hf")
