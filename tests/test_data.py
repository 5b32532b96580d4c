"""Loaders: the TinyLLM layout (chunks as two teachers), generic files with a column map, cleaning."""

import json
import re

import pytest

from tinydistill.config.schema import ColumnsConfig
from tinydistill.data.loaders import load_examples, majority_baseline
from tinydistill.data.prompts import format_question, parse_answer
from tinydistill.data.rationales import clean_rationale, stated_answer, without_stated_answer
from tinydistill.data.records import resolve_answer
from tinydistill.errors import DataError
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
    assert [(e.id, e.question, e.choices) for e in exs] == [
        (f"q{i}", "What sticks to a magnet?", ("wood", "iron")) for i in range(3)]  # the rows, rationales added
    assert exs[0].rationales["flan_t5"] == "Iron is magnetic. Thus, the answer is (b) iron"
    assert exs[0].rationales["llama2"] == "Let's think step by step. Magnets attract iron. So the answer is (b)."
    # a teacher with no output for a row is absent for that row (PIQA has no LLaMA rationales)
    assert "llama2" not in exs[1].rationales and "llama2" not in exs[2].rationales
    assert ImportedTeacher("llama2").rationales(exs) == [exs[0].rationales["llama2"], None, None]


def test_tinyllm_chunks_must_align(tmp_path):
    folder = make_tinyllm(tmp_path / "mini", ROWS, [FLAN, FLAN])
    with pytest.raises(DataError, match=f"^{re.escape(str(folder / 'llm'))}: 2 rationales in train_CoT_\\*.json do not "
                                        f"align with 3 rows of mini_train.json$"):
        load_examples(folder, "train")
    from tinydistill.data.loaders import load_tinyllm

    assert [e.rationales for e in load_tinyllm(folder, "train", with_rationales=False)] == [{}, {}, {}]
    (folder / "llm" / "train_CoT_0.json").write_text(json.dumps(["ok", 1]))
    with pytest.raises(DataError, match=r"train_CoT_0\.json:1 field 'rationale': expected a string, got int$"):
        load_tinyllm(folder, "train")
    # the files' encoding reaches the data file and the chunks
    latin = make_tinyllm(tmp_path / "latin", [ROWS[0]], ["x"])
    for path, item in ((latin / "latin_train.json", dict(ROWS[0], question="Où est le café ?")),
                       (latin / "llm" / "train_CoT_0.json", "Café. So (b).")):
        path.write_bytes(json.dumps([item], ensure_ascii=False).encode("cp1252"))  # é is one byte, not UTF-8
    (ex,) = load_tinyllm(latin, "train", encoding="cp1252")
    assert ex.question == "Où est le café ?" and ex.rationales["flan_t5"] == "Café. So (b)."

    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'none'))}: folder not found$"):
        load_tinyllm(tmp_path / "none", "train")
    with pytest.raises(DataError, match=f"^{re.escape(str(folder))}: no '\\*_test.json' file in this folder$"):
        load_tinyllm(folder, "test")
    # a bad row stops the load by default, naming the data file; numbered answers follow answer_base
    bad = make_tinyllm(tmp_path / "bad", [ROWS[0], dict(ROWS[0], id="q1", choices=["x", "x"])], [FLAN, FLAN])
    with pytest.raises(DataError, match=r"bad_train\.json:\d+ field 'choices': duplicate choice 'x'$"):
        load_tinyllm(bad, "train")
    numbered = make_tinyllm(tmp_path / "num", [dict(ROWS[0], answer=1, domain="physics")], [FLAN])
    assert [(e.answer, e.domain) for e in load_tinyllm(numbered, "train", answer_base=1)] == [(0, "physics")]
    assert [e.answer for e in load_tinyllm(numbered, "train", answer_base=0)] == [1]


def test_chunks_are_read_in_numeric_order(tmp_path):
    rows = [dict(ROWS[0], id=f"r{i}") for i in range(12)]
    rats = [f"reason {i}. Thus, the answer is (b) iron" for i in range(12)]
    folder = make_tinyllm(tmp_path / "mini", rows, rats, chunk=1)  # _CoT_10 must come after _CoT_9
    exs = load_examples(folder, "train")
    assert [e.rationales["flan_t5"].split(".")[0] for e in exs] == [f"reason {i}" for i in range(12)]


def test_a_chunk_without_a_number_is_an_error_not_skipped(tmp_path):
    folder = make_tinyllm(tmp_path / "mini", ROWS, [FLAN, FLAN, FLAN], chunk=3)
    (folder / "llm" / "train_CoT_extra.json").write_text(json.dumps([FLAN]))
    with pytest.raises(DataError, match=r"train_CoT_extra\.json.*expected train_CoT_<number>\.json"):
        load_examples(folder, "train")


def test_csv_with_column_map_and_letter_answers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('qid,q,opts,label\n1,"2+2?","[""3"", ""4""]",B\n2,"1+1?","2|5",a\n')
    exs = load_examples(path, columns=ColumnsConfig(id="qid", question="q", choices="opts", answer="label"))
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
    from tinydistill.data.records import Example

    ex = Example("1", "Pick one", ("iron", "wood"), 0)
    assert format_question(ex) == "Pick one\nAnswer Choices:\n(a) iron\n(b) wood"
    assert parse_answer("(b) wood", ex.choices) == 1
    assert parse_answer("( b ) wood", ex.choices) == 1  # uncased WordPiece decoding
    assert parse_answer("iron", ex.choices) == 0
    assert parse_answer("B.", ex.choices) == 1
    assert parse_answer("something else", ex.choices) is None


ARC_PLAN = ("Put the objects in groups.", "Change the height of the ramp.", "Choose different objects to roll.",
            "Record the details of the investigation.")
ARC_LAB = ("tasting chemical samples", "using heat-resistant gloves if glassware is hot", "tying back long hair",
           "washing a chemical splash with lots of water")
ARC_FIRE = ("Pine species would reproduce more rapidly.", "Broadleaf species would replace pine species.",
            "Burning areas would be more easily contained.", "Trees would spread into previously unforested areas.")


# Rationale endings as the shipped teacher files have them (dataset, row id, teacher), with the choice a reader
# takes from each: the last stated answer counts, a choice named in words counts when exactly one choice starts it.
@pytest.mark.parametrize("ending,choices,expected", [
    # arc Mercury_SC_407695, FLAN-T5
    ("sha should record the details of the investigation so that they can repeat their investigation. Thus, the "
     "answer is (d) Record the details of the investigation.", ARC_PLAN, 3),
    # obqa 959 (shipped with the package), FLAN-T5
    ("If a person walks in the opposite direction of a compass arrow they are walking south. Thus, the answer is "
     "(d) south", ("west", "north", "east", "south"), 3),
    # arc Mercury_7017990, LLaMA-2
    ("\nThe fourth action is a safety procedure.\nWhich action does not represent a safety procedure in the lab?"
     "\nThe answer is (a), because it's not a safety procedure.", ARC_LAB, 0),
    # arc Mercury_7179358, LLaMA-2: the option called correct, not the ones called incorrect
    ("as will not be more easily contained.\nOption (d) is incorrect because trees would not spread into previously "
     "unforested areas.\nSo, option (b) is correct.\nExplan", ARC_FIRE, 1),
    # obqa 125, LLaMA-2: two options called correct; the last one stated counts
    ("Option (a) is wrong.\nOption (b) is wrong.\nOption (c) is correct.\nOption (d) is correct.",
     ("underwater", "closer together", "in lines", "farther apart"), 3),
    # riddle cxzvpoiuzckf-9382, LLaMA-2
    ('"spring" means "spring" and "ceiling" means "ceiling".\nAnswer:\n(e) spring\nComment: This is a pretty '
     "terrible answer.", ("manual", "caps", "drink", "ceiling", "spring"), 4),
    # arc Mercury_7011270, LLaMA-2: the choice's text, exactly
    ("If it is a week, it means 7 days.\nSo, if it is a week, it means 7 days.\nSo, the answer is 30 days.",
     ("7 days", "30 days", "90 days", "365 days"), 1),
    # arc Mercury_7215198, LLaMA-2: the choice's text, then more words
    ("Nuclear energy is a nonrenewable resource.\nSolar energy is a renewable resource.\nThe correct answer is "
     "solar energy.", ("petroleum", "geothermal", "nuclear", "solar"), 3),
    # bioasq 5c73ad0b7c78d69471000093, LLaMA-2
    ("chnoid hemorrhage. The answer is no, according to the text. The text states that randomized controlled "
     "trials have shown", ("yes", "no"), 1),
    # arc Mercury_SC_407695, LLaMA-2: a bare letter is no statement
    ("Let's think step by step.\n(a)", ARC_PLAN, None),
    ("Step 1: think about magnets", ("wood", "iron"), None),
    # edge cases of the same rules (written here): a letter past the last choice, a capital "Answer", a choice
    # text ending in a period stated without it
    ("Thus, the answer is (c).", ("yes", "no"), None),
    ("Answer is solar energy.", ("petroleum", "geothermal", "nuclear", "solar"), 3),
    ("So the answer is record the details of the investigation", ARC_PLAN, 3),
])
def test_stated_answer_reads_the_shipped_teachers_endings(ending, choices, expected):
    assert stated_answer(ending, choices) == expected


def test_without_stated_answer_cuts_the_answer_statement():  # (moved from test_reproduce: rationale parsing)
    assert without_stated_answer("Iron is a metal. Thus, the answer is (b) iron.") == "Iron is a metal."
    assert without_stated_answer("So the answer is (a).") == ""
    assert without_stated_answer("Metals conduct.  Hence the correct answer is iron") == "Metals conduct."
    assert without_stated_answer("no statement here") == "no statement here"


def test_clean_rationale_cuts_markers_and_collapses_whitespace():
    assert clean_rationale("  a   b \n\n\nc\n# 3.\nQuestion: x") == "a b\nc"


def test_majority_baseline():
    from tinydistill.data.records import Example

    exs = [Example(str(i), "q", ("a", "b"), a) for i, a in enumerate([0, 0, 1, 0])]
    assert majority_baseline(exs) == 0.75
    assert majority_baseline([*exs, Example("x", "q", ("a", "b"), None)]) == 0.75  # unlabelled rows do not count
    assert majority_baseline([]) == 0.0


def test_a_missing_file_a_folder_and_a_malformed_csv_are_named_with_their_line(tmp_path):
    """The loader's own errors, as one line each: the path, then what is wrong (and where, for a CSV)."""
    from tinydistill.data.loaders import read_records

    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(DataError) as e:
        read_records(missing)
    assert str(e.value) == f"{missing}: file not found"
    with pytest.raises(DataError) as e:
        read_records(tmp_path)
    assert str(e.value) == f"{tmp_path}: is a folder, expected a file"
    bad = tmp_path / "bad.csv"
    bad.write_text('question,a,b,answer\n"fine",x,y,0\n' + "q" * 140_000 + ",x,y,0\n")  # past csv's field limit
    with pytest.raises(DataError) as e:
        read_records(bad)
    assert str(e.value) == f"{bad}:3: malformed CSV: field larger than field limit (131072)", str(e.value)[:200]
    # a blank line in JSON Lines is passed over, not the end of the file
    jl = tmp_path / "gap.jsonl"
    jl.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_records(jl) == [(1, {"a": 1}), (3, {"a": 2})]


def test_a_row_without_an_answer_is_an_error_unless_told_otherwise(tmp_path):
    from tinydistill.data.loaders import load_records_file

    from .conftest import write_jsonl

    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "choices": ["a", "b"]}])
    with pytest.raises(DataError, match="answer"):
        load_records_file(path)
    assert load_records_file(path, require_answer=False)[0].answer is None


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


# ---------------------------------------------------------------------- encodings, BOM, broken lines
CSV_ROWS = 'question,choices,answer\r\nWhat sticks to a magnet?,wood|iron,iron\r\n"Café, or thé?",café|thé,thé\r\n'


@pytest.mark.parametrize("bom,encoding", [(b"", "utf-8-sig"), (b"", "utf-16"), (b"\xfe\xff", "utf-16-be"),
                                          (b"", "utf-32")])
def test_byte_order_marks_are_read_and_dropped(tmp_path, bom, encoding):
    """Excel's 'CSV UTF-8' starts with a BOM; Notepad's 'Unicode' is UTF-16 with one: the first column is
    `question`, not '\\ufeffquestion'."""
    path = tmp_path / "excel.csv"
    path.write_bytes(bom + CSV_ROWS.encode(encoding))
    assert path.read_bytes()[:2] in (b"\xef\xbb", b"\xff\xfe", b"\xfe\xff")
    exs = load_examples(path)
    assert [(e.question, e.choices, e.answer) for e in exs] == [
        ("What sticks to a magnet?", ("wood", "iron"), 1), ("Café, or thé?", ("café", "thé"), 1)]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_bom_in_json_and_json_lines(tmp_path, suffix):
    text = json.dumps(ROWS) if suffix == ".json" else "".join(json.dumps(r) + "\r\n" for r in ROWS)
    path = tmp_path / f"d{suffix}"
    path.write_bytes(text.encode("utf-8-sig"))
    assert [e.id for e in load_examples(path)] == ["q0", "q1", "q2"]


def test_latin1_file_names_line_and_column_of_the_bad_byte(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("question,choices,answer\nx?,a|b,a\nCaf\xe9?,a|b,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv:3:4: not valid UTF-8 \(byte 0xe9\).*save the file as UTF-8"):
        load_examples(path)


def test_utf16_without_bom_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(CSV_ROWS.encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16 without a byte-order mark"):
        load_examples(path)


def test_semicolon_csv_and_extra_cells(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("question;choices;answer\nWhat sticks?;wood|iron;iron\n")
    assert load_examples(path)[0].answer == 1
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("question\tchoices\tanswer\nWhat sticks, really?\twood|iron\tiron\n")
    assert load_examples(tabs)[0].question == "What sticks, really?"
    mixed = tmp_path / "mixed.csv"  # a comma anywhere in the header: comma-separated, whatever else it holds
    mixed.write_text("question,choices;x;y;z,answer\nWhat sticks?,wood|iron,iron\n")
    assert load_examples(mixed, columns=ColumnsConfig(choices="choices;x;y;z"))[0].answer == 1
    listed = tmp_path / "listed.json"  # a whole-file list after a blank line: lines counted from the file's first
    listed.write_text('\n[\n  {"question": "q", "choices": ["a", "a"], "answer": "a"}\n]\n')
    with pytest.raises(DataError, match=r"listed\.json:3 field 'choices': duplicate choice 'a'$"):
        load_examples(listed)
    bad = tmp_path / "bad.csv"
    bad.write_text("question,choices,answer\nWhat sticks, really?,wood|iron,iron\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: 4 cells but the header has 3 columns \(quote a cell"):
        load_examples(bad)


def test_csv_line_numbers_count_quoted_newlines(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('question,choices,answer\n"two\nlines?",a|b,a\nthird?,a|a,a\n')
    with pytest.raises(DataError, match=r"multi\.csv:4 field 'choices': duplicate"):
        load_examples(path)


def test_missing_column_names_what_the_file_has(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text("Question,Choices,Answer\nx?,a|b,a\n")
    with pytest.raises(DataError, match=r"caps\.csv:2 field 'question': missing field \(the file has 'Question'"):
        load_examples(path)
    # no near match: the row's own columns, the first eight, then an ellipsis
    from tinydistill.data.records import build_example

    for n, shown in ((8, "c0, c1, c2, c3, c4, c5, c6, c7"), (9, "c0, c1, c2, c3, c4, c5, c6, c7, …")):
        with pytest.raises(DataError, match=re.escape(f"d.jsonl:4 field 'question': missing field (the row has: "
                                                      f"{shown}; map your names under data.*.columns)") + "$"):
            build_example({f"c{i}": 1 for i in range(n)}, path="d.jsonl", row=3, line=4)
    with pytest.raises(DataError, match="^d.jsonl:4 field 'question': missing field$"):
        build_example({}, path="d.jsonl", row=3, line=4)
    # an answer that names no choice: what was wrong with it, in words that fit it
    for answer, says in (("z", "(3 choices: letters a-c)"), ("(Z)", "(3 choices: letters a-c)"),
                         ("banana", "(give the choice text, a letter like 'B', or a number)"),
                         (7, "(3 choices numbered from 0)"),
                         (3, "(3 choices numbered from 0; if answers count from 1, set answer_base: 1)")):
        with pytest.raises(DataError, match=re.escape(f"field 'answer': answer {answer!r} is not among the choices "
                                                      f"{says}") + "$"):
            build_example({"question": "q", "choices": ["a", "b", "c"], "answer": answer}, path="d.jsonl", row=3)


def test_skip_policy_skips_a_half_written_json_lines_row(tmp_path, caplog):
    lines = [json.dumps(r) for r in ROWS]
    lines[1] = lines[1][:25]  # a row cut off mid-write
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:2:26: malformed JSON Lines"):
        load_examples(path)
    with caplog.at_level("WARNING", logger="tinydistill.data.loaders"):
        exs = load_examples(path, on_invalid="skip")
    assert [e.id for e in exs] == ["q0", "q2"]
    assert f"{path}:2:26: malformed JSON Lines" in caplog.text
    whole = tmp_path / "d.json"  # a whole-file JSON list that does not parse stays an error, with its column
    whole.write_text('[\n {"id": "1",\n  "question": oops}\n]')
    with pytest.raises(DataError, match=r"d\.json:3:15: malformed JSON"):
        load_examples(whole, on_invalid="skip")


def test_skipped_broken_line_keeps_tinyllm_rationales_aligned(tmp_path):
    folder = make_tinyllm(tmp_path / "mini", [dict(ROWS[0], id=f"r{i}") for i in range(3)],
                          ["r0 ok", "r1 ok", "r2 ok"], jsonl=True)
    data = folder / "mini_train.json"
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0], lines[1][:10], lines[2]]) + "\n")
    exs = load_examples(folder, "train", on_invalid="skip")
    assert [(e.id, e.rationales["flan_t5"]) for e in exs] == [("r0", "r0 ok"), ("r2", "r2 ok")]


# ---------------------------------------------------------------------------------------- answer_base
def _numbered(path, answers, n_choices=4):
    rows = [{"id": str(i), "question": f"q{i}?", "choices": [f"c{k}" for k in range(n_choices)], "answer": a}
            for i, a in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_based_answers_are_detected_with_a_warning(tmp_path, caplog):
    path = _numbered(tmp_path / "quiz.jsonl", [1, 4, 2, 3])
    with caplog.at_level("WARNING", logger="tinydistill.data.loaders"):
        exs = load_examples(path)
    assert [e.answer for e in exs] == [0, 3, 1, 2]
    assert "counting from 1" in caplog.text and "line 2 has answer 4 of 4 choices" in caplog.text
    assert "answer_base: 1" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tinydistill.data.loaders"):  # said explicitly: no warning
        assert [e.answer for e in load_examples(path, answer_base=1)] == [0, 3, 1, 2]
    assert caplog.text == ""


def test_zero_based_answers_stay_and_answer_base_is_enforced(tmp_path, caplog):
    path = _numbered(tmp_path / "z.jsonl", [0, 3, 2])
    with caplog.at_level("WARNING", logger="tinydistill.data.loaders"):
        assert [e.answer for e in load_examples(path)] == [0, 3, 2]
    assert caplog.text == ""
    with pytest.raises(DataError, match=r"z\.jsonl:1 field 'answer': answer 0 is not among the choices "
                                        r"\(4 choices numbered from 1\)"):
        load_examples(path, answer_base=1)
    mixed = _numbered(tmp_path / "m.jsonl", [0, 4])
    with pytest.raises(DataError, match=r"m\.jsonl:2 .*answer 4 .*numbered from 0; if answers count from 1, "
                                        r"set answer_base: 1"):
        load_examples(mixed)
    # CSV digits: 1-based too; digits that are a choice's text are that choice
    csv_path = tmp_path / "n.csv"
    csv_path.write_text("question,choices,answer\nq?,a|b|c,3\nr?,1|2|3,3\n")
    assert [e.answer for e in load_examples(csv_path, answer_base=1)] == [2, 2]


def test_six_choices_letters_and_unicode(tmp_path):
    path = tmp_path / "six.jsonl"
    rows = [{"question": "Quelle planète ? 🪐", "choices": ["Mercure", "Vénus", "Terre", "Mars", "Jupiter", "Saturne"],
             "answer": a} for a in ("F", "(e)", "b.", "Vénus", 5)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [e.answer for e in load_examples(path)] == [5, 4, 1, 1, 5]
    path.write_text(json.dumps({"question": "q?", "choices": ["a", "b", "c"], "answer": "D"}))
    with pytest.raises(DataError, match=r"answer 'D' is not among the choices \(3 choices: letters a-c\)"):
        load_examples(path)


def test_answer_base_from_the_config(tmp_path):
    from tinydistill.config.loader import config_from_dict
    from tinydistill.data.splits import load_split

    path = _numbered(tmp_path / "t.jsonl", [1, 2, 3])  # no 0 and no 4: nothing to detect, the config says it
    cfg = config_from_dict({"data": {"train": {"path": str(path), "answer_base": 1}, "valid": {"path": str(path)}}})
    assert [e.answer for e in load_split(cfg.data.train, "train", 0)] == [0, 1, 2]
    assert [e.answer for e in load_split(cfg.data.valid, "valid", 0)] == [1, 2, 3]


def test_rows_without_lines_are_counted_from_one_like_lines():
    """A hub dataset's rows have no line: the error names the row counting from 1, as every line is."""
    from tinydistill.data.loaders import build_examples

    good = {"id": "a", "question": "q?", "choices": ["x", "y"], "answer": "x"}
    with pytest.raises(DataError, match=r"hub:train row 2 field 'answer'"):
        build_examples([(None, good), (None, dict(good, id="b", answer="z"))], "hub:train")
    with pytest.raises(DataError, match=r"hub:train row 2 field 'id': duplicate id 'a' \(first at row 1\)"):
        build_examples([(None, good), (None, good)], "hub:train")
