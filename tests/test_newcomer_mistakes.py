"""A corpus of newcomer mistakes, each file written here: every one either works as a user would expect or stops
with one line per problem naming the file, the line or row and the field, exit code 2, never a traceback.

Run through the CLI entry point (``tinydistill.cli.main``); a few also as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tinydistill.cli import main
from tinydistill.config import ColumnsConfig
from tinydistill.data.loaders import load_examples

Q = {"id": "1", "question": "What sticks to a magnet?", "choices": ["wood", "iron", "glass", "paper"], "answer": "iron"}
CSV_HEAD = "id,question,choices,answer\n"


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def numbered(answers: list, n: int = 4) -> str:
    return jsonl(*({"id": str(i), "question": f"Question {i}?", "choices": [f"c{k}" for k in range(n)], "answer": a}
                   for i, a in enumerate(answers)))


def config(train: str = "{path: data.jsonl}", **sections: str) -> str:
    """A run config (YAML text): ``train`` is the train source (line 3); ``sections`` follow from line 5."""
    text = f"name: newcomer\ndata:\n  train: {train}\n  valid: {{path: data.jsonl}}\n"
    return text + "".join(sections.values())


@dataclass
class Error:
    """Exit 2; each fragment in the (one-line) error; ``lines``: how many error lines (one per problem)."""

    fragments: list[str]
    lines: int = 1
    absent: list[str] = field(default_factory=list)
    """text that must not be in the error (a secret)"""


@dataclass
class Works:
    """Exit 0; ``check(tmp)`` sees what the user expects (the rows as meant)."""

    check: Callable[[Path], None] = field(default=lambda tmp: None)


def shorthand_read(tmp: Path) -> None:
    """``train: data.jsonl`` and ``student: minilm`` read as ``{path: …}`` and ``{model: …}``."""
    from tinydistill.config import load_config

    cfg = load_config(tmp / "c.yaml")
    assert cfg.data.train.path == "data.jsonl" and cfg.data.valid.path == "data.jsonl"
    assert cfg.student.model == "minilm" and cfg.method == "finetune"


def answers_are(path: str, expected: list[int], **kw) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert [e.answer for e in load_examples(tmp / path, **kw)] == expected

    return check


# name → (files to write: name → text or bytes, the command, what must happen)
CASES: dict[str, tuple[dict[str, str | bytes], list[str], Error | Works]] = {
    # ------------------------------------------------------------------------------------ encodings
    "latin-1 CSV": ({"quiz.csv": (CSV_HEAD + "1,Café?,oui|non,oui\n").encode("latin-1")}, ["data", "check", "quiz.csv"],
                    Error(["quiz.csv:2:6:", "not valid UTF-8 (byte 0xe9)", "save the file as UTF-8",
                           "encoding: cp1252"])),
    "latin-1 CSV with its encoding named": (
        {"quiz.csv": (CSV_HEAD + "1,Café?,oui|non,oui\n").encode("latin-1")},
        ["data", "check", "quiz.csv", "--encoding", "latin-1"],
        Works(lambda tmp: load_examples(tmp / "quiz.csv", encoding="latin-1")[0].question == "Café?" or _fail())),
    "Windows-1252 CSV named in the config": (
        {"quiz.csv": (CSV_HEAD + "1,“Café”?,oui|non,oui\n").encode("cp1252"),
         "c.yaml": config("{path: quiz.csv, encoding: cp1252}").replace("{path: data.jsonl}",
                                                                        "{path: quiz.csv, encoding: cp1252}")},
        ["data", "check", "c.yaml"], Works()),
    "an encoding flag that is not one": ({"d.jsonl": jsonl(Q)}, ["data", "check", "d.jsonl", "--encoding", "utf9"],
                                         Error(["d.jsonl: unknown encoding 'utf9'"])),
    "a codec that is no text encoding": (
        {"data.jsonl": jsonl(Q), "c.yaml": config("{path: data.jsonl, encoding: rot13}")}, ["train", "c.yaml"],
        Error(["c.yaml:3:", "data.train.encoding", "'rot13' is not a text encoding"])),
    "an encoding that is not one": (
        {"data.jsonl": jsonl(Q), "c.yaml": config("{path: data.jsonl, encoding: utf9}")}, ["train", "c.yaml"],
        Error(["c.yaml:3:", "data.train.encoding", "unknown encoding"])),
    "UTF-16 CSV from Notepad (BOM)": ({"quiz.csv": (CSV_HEAD + "1,Café?,oui|non,oui\n").encode("utf-16")},
                                      ["data", "check", "quiz.csv"], Works(answers_are("quiz.csv", [0]))),
    "UTF-16 without a BOM": ({"quiz.csv": (CSV_HEAD + "1,q?,a|b,a\n").encode("utf-16-le")},
                             ["data", "check", "quiz.csv"], Error(["quiz.csv:", "UTF-16 without a byte-order mark"])),
    "Excel 'CSV UTF-8' (BOM) with question first": (
        {"quiz.csv": ("question,choices,answer\r\nWhat sticks?,wood|iron,iron\r\n").encode("utf-8-sig")},
        ["data", "check", "quiz.csv"], Works(answers_are("quiz.csv", [1]))),
    "BOM in JSON Lines": ({"d.jsonl": jsonl(Q).encode("utf-8-sig")}, ["data", "check", "d.jsonl"],
                          Works(answers_are("d.jsonl", [1]))),
    "BOM in a JSON list": ({"d.json": json.dumps([Q]).encode("utf-8-sig")}, ["data", "check", "d.json"],
                           Works(answers_are("d.json", [1]))),
    "latin-1 config": ({"data.jsonl": jsonl(Q), "c.yaml": config(student="student: {model: café}\n").encode("latin-1")},
                       ["train", "c.yaml"], Error(["c.yaml:5:", "not valid UTF-8"])),
    # --------------------------------------------------------------------------------- line endings
    "CRLF JSON Lines": ({"d.jsonl": jsonl(Q, dict(Q, id="2", answer="wood")).replace("\n", "\r\n")},
                        ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [1, 0]))),
    "CRLF CSV": ({"d.csv": (CSV_HEAD + "1,q?,a|b,b\n2,r?,a|b,a\n").replace("\n", "\r\n")}, ["data", "check", "d.csv"],
                 Works(answers_are("d.csv", [1, 0]))),
    "old Mac CR line endings": ({"d.jsonl": jsonl(Q, dict(Q, id="2")).replace("\n", "\r")},
                                ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [1, 1]))),
    "CR line endings, semicolons, commas in cells": ({"d.csv": "question;choices;answer\rq?;a, b|c;c\r"},
                                                     ["data", "check", "d.csv"], Works(answers_are("d.csv", [1]))),
    # ------------------------------------------------------------------------------------- answers
    "1-based numbers (detected)": ({"d.jsonl": numbered([1, 4, 2])}, ["data", "check", "d.jsonl"],
                                   Works(answers_are("d.jsonl", [0, 3, 1]))),
    "1-based numbers that cannot be told apart": ({"d.jsonl": numbered([1, 2, 3])}, ["data", "check", "d.jsonl"],
                                                  Works(answers_are("d.jsonl", [0, 1, 2], answer_base=1))),
    "0-based number out of range": ({"d.jsonl": numbered([0, 2, 7])}, ["data", "check", "d.jsonl"],
                                    Error(["d.jsonl:3", "field 'answer'", "answer 7 is not among the choices"])),
    "1-based numbers in a CSV": ({"d.csv": CSV_HEAD + "1,q?,a|b|c,3\n2,r?,a|b|c,1\n"}, ["data", "check", "d.csv"],
                                 Works(answers_are("d.csv", [2, 0]))),
    "letter answers": ({"d.jsonl": jsonl(*(dict(Q, id=a, answer=a) for a in ["B", "(b)", "b.", "b)"]))},
                       ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [1, 1, 1, 1]))),
    "letter beyond the choices": ({"d.jsonl": jsonl(dict(Q, answer="E"))}, ["data", "check", "d.jsonl"],
                                  Error(["d.jsonl:1", "field 'answer'", "4 choices: letters a-d"])),
    "answer text with other case and spaces": ({"d.jsonl": jsonl(dict(Q, answer="  Iron "))},
                                               ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [1]))),
    "six choices": ({"d.jsonl": jsonl(dict(Q, choices=["a", "b", "c", "d", "e", "f"], answer="F"))},
                    ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [5]))),
    "empty answer cell": ({"d.csv": CSV_HEAD + "1,q?,a|b,\n"}, ["data", "check", "d.csv"],
                          Error(["d.csv:2", "field 'answer'", "missing value"])),
    # ------------------------------------------------------------------------------------- content
    "Unicode questions and choices": (
        {"d.jsonl": jsonl({"question": "哪个星球最大？🪐", "choices": ["木星", "火星"], "answer": "木星"},
                          {"question": "Ärger über Öl?", "choices": ["ja", "nein"], "answer": "nein"})},
        ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [0, 1]))),
    "duplicate choices": ({"d.jsonl": jsonl(dict(Q, choices=["iron", "iron"]))}, ["data", "check", "d.jsonl"],
                          Error(["d.jsonl:1", "field 'choices'", "duplicate choice 'iron'"])),
    "choices as one sentence": ({"d.jsonl": jsonl(dict(Q, choices="A) wood B) iron"))}, ["data", "check", "d.jsonl"],
                                Error(["d.jsonl:1", "field 'choices'", "at least two choices"])),
    "duplicate ids": ({"d.jsonl": jsonl(Q, Q)}, ["data", "check", "d.jsonl"],
                      Error(["d.jsonl:2 field 'id'", "duplicate id '1' (first at line 1)"])),
    "duplicate ids in a JSON list": ({"d.json": json.dumps([Q, Q], indent=1)}, ["data", "check", "d.json"],
                                     Error(["d.json:13 field 'id'", "duplicate id '1' (first at line 2)"])),
    "a bad row of a JSON list": ({"d.json": json.dumps([Q, dict(Q, id="2", answer="gold")], indent=1)},
                                 ["data", "check", "d.json"], Error(["d.json:13 field 'answer'", "not among"])),
    "a number answer that is also a choice's text": (
        {"d.jsonl": jsonl(dict(Q, choices=["1", "0"], answer=0), dict(Q, id="2", choices=["0", "7"], answer=0.0))},
        ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [1, 0]))),
    "capitalised CSV header": ({"d.csv": "Question,Choices,Answer\nq?,a|b,a\n"}, ["data", "check", "d.csv"],
                               Error(["d.csv:2", "field 'question'", "the file has 'Question'"])),
    "semicolon CSV (European Excel)": ({"d.csv": "question;choices;answer\nq?;a|b;b\n"}, ["data", "check", "d.csv"],
                                       Works(answers_are("d.csv", [1]))),
    "unquoted comma in a CSV cell": ({"d.csv": CSV_HEAD + "1,Iron, or wood?,wood|iron,iron\n"},
                                     ["data", "check", "d.csv"], Error(["d.csv:2:", "5 cells but the header has 4"])),
    "half-written last JSON Lines row": ({"d.jsonl": jsonl(Q) + '{"id": "2", "quest'}, ["data", "check", "d.jsonl"],
                                         Error(["d.jsonl:2:13:", "malformed JSON Lines: Unterminated string"])),
    "trailing comma in a JSON list": ({"d.json": '[\n  {"question": "q?", "choices": ["a", "b"], "answer": "a"},\n]'},
                                      ["data", "check", "d.json"], Error(["d.json:3:1:", "malformed JSON"])),
    "empty file": ({"d.jsonl": ""}, ["data", "check", "d.jsonl"], Error(["d.jsonl:", "file is empty"])),
    "an empty JSON list as the train split (training looped forever)": (
        {"data.jsonl": jsonl(Q), "e.json": "[]", "c.yaml": config("{path: e.json}")}, ["train", "c.yaml"],
        Error(["e.json: no rows"])),
    "a CSV with only its header": ({"d.csv": CSV_HEAD}, ["data", "check", "d.csv"], Error(["d.csv: no rows"])),
    "every row skipped by on_invalid: skip": (
        {"data.jsonl": jsonl(Q), "bad.jsonl": jsonl(dict(Q, choices=["iron"])),
         "c.yaml": config("{path: bad.jsonl, on_invalid: skip}")}, ["data", "check", "c.yaml"],
        Error(["bad.jsonl: all 1 rows are invalid and were skipped"])),
    "a CSV column named twice": ({"d.csv": "question,choices,answer,answer\nq?,a|b,a,b\n"},
                                 ["data", "check", "d.csv"],
                                 Error(["d.csv:1 field 'answer'", "names column 'answer' twice"])),
    "a CSV whose first line is blank": ({"d.csv": "\n" + CSV_HEAD + "1,q?,a|b,a\n"}, ["data", "check", "d.csv"],
                                        Error(["d.csv:1:", "first line is blank"])),
    "a .tsv file": ({"d.tsv": "question\tchoices\tanswer\nq?\ta|b\tb\n"}, ["data", "check", "d.tsv"],
                    Works(answers_are("d.tsv", [1]))),
    "format csv on a .txt file": ({"d.txt": CSV_HEAD + "1,q?,a|b,b\n"}, ["data", "check", "d.txt", "--format", "csv"],
                                  Works(answers_are("d.txt", [1], fmt="csv"))),
    "a spreadsheet": ({"d.xlsx": b"PK\x03\x04 not text"}, ["data", "check", "d.xlsx"],
                      Error(["d.xlsx: a .xlsx file cannot be read", "CSV (UTF-8)"])),
    "one column per choice (an MMLU-style CSV)": ({"d.csv": "question,A,B,C,D,answer\nq?,wood,iron,glass,paper,B\n"},
                                                  ["data", "check", "d.csv"],
                                                  Error(["d.csv:2 field 'choices'", "{choices: [A, B, C, D]}"])),
    "one column per choice, mapped (a blank cell drops that choice)": (
        {"d.csv": "question,A,B,C,D,answer\nq?,wood,iron,glass,paper,B\nq2?,x,y,z,,C\n"},
        ["data", "check", "d.csv", "--columns", "choices=A|B|C|D"],
        Works(answers_are("d.csv", [1, 2], columns=ColumnsConfig(choices=("A", "B", "C", "D"))))),
    "one column per choice holding numbers (JSON Lines)": (
        {"d.jsonl": jsonl({"question": "2 + 2?", "A": 3, "B": 4, "C": "", "answer": "4"})},
        ["data", "check", "d.jsonl", "--columns", "choices=A|B|C"],
        Works(answers_are("d.jsonl", [1], columns=ColumnsConfig(choices=("A", "B", "C"))))),
    "another dataset's field names": ({"d.jsonl": jsonl({"question": "q?", "options": ["a", "b"], "label": 1})},
                                      ["data", "check", "d.jsonl"],
                                      Error(["d.jsonl:1 field 'choices'", "{choices: options}"])),
    "ARC's hub schema saved as JSON Lines": (
        {"d.jsonl": jsonl({"question": "q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"})},
        ["data", "check", "d.jsonl"], Works(answers_are("d.jsonl", [1]))),
    # ------------------------------------------------------------------------------------- config
    "typo in a top-level key": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="studnet: {model: minilm}\n")},
                                ["train", "c.yaml"], Error(["c.yaml:5:", "studnet", "did you mean 'student'?"])),
    "typo in a section name": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="traning:\n  epochs: 2\n")},
                               ["train", "c.yaml"], Error(["c.yaml:5:", "traning", "did you mean 'train'?"])),
    "typo in a nested key": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="train:\n  epochs: 2\n  bacth_size: 4\n")},
                             ["train", "c.yaml"],
                             Error(["c.yaml:7:", "train.bacth_size", "did you mean 'batch_size'?"])),
    "typo in a data option": ({"data.jsonl": jsonl(Q), "c.yaml": config("{path: data.jsonl, on_invalide: skip}")},
                              ["train", "c.yaml"], Error(["c.yaml:3:", "data.train.on_invalide", "'on_invalid'"])),
    "three mistakes at once": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="studnet: {}\ntrain: {lr: x, epoch: 1}\n")},
                               ["train", "c.yaml"], Error(["c.yaml:5:", "c.yaml:6:"], lines=3)),
    "bare 'no' read as a boolean": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="student: {answer_target: no}\n")},
                                    ["train", "c.yaml"], Error(["c.yaml:5:", "student.answer_target", "quote it"])),
    "a negative seed (numpy's traceback)": (
        {"data.jsonl": jsonl(Q), "c.yaml": config(s="seed: -1\n")}, ["train", "c.yaml"],
        Error(["c.yaml:5: seed:", "greater than or equal to 0"])),
    "lr: .inf (trained a collapsed student)": (
        {"data.jsonl": jsonl(Q), "c.yaml": config(s="train: {lr: .inf}\n")}, ["train", "c.yaml"],
        Error(["c.yaml:5: train.lr:", "finite number"])),
    "no eval mode (no accuracy reported)": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="eval: {modes: []}\n")},
                                            ["train", "c.yaml"], Error(["c.yaml:5: eval.modes:", "at least 1"])),
    "a section given twice": ({"data.jsonl": jsonl(Q), "c.yaml": config(a="train: {epochs: 3}\n", b="seed: 1\n",
                                                                        c="train: {lr: 1e-4}\n")},
                              ["train", "c.yaml"], Error(["c.yaml:7: train: given twice (first at line 5"])),
    "a data path given as a plain string": (
        {"data.jsonl": jsonl(Q), "c.yaml": "data:\n  train: data.jsonl\n  valid: data.jsonl\nstudent: minilm\n"
                                           "method: finetune\n"}, ["data", "check", "c.yaml"],
        Works(shorthand_read)),
    "one teacher given as a string": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="teachers: flan_t5\n")},
                                      ["train", "c.yaml"], Error(["c.yaml:5: teachers: a list of teachers"])),
    "a method name misspelt": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="method: tinylm\n")}, ["train", "c.yaml"],
                               Error(["c.yaml:5: method:", "did you mean 'tinyllm'?"])),
    "an eval mode misspelt (one line, not two)": (
        {"data.jsonl": jsonl(Q), "c.yaml": config(s="eval: {modes: [ranking]}\n")}, ["train", "c.yaml"],
        Error(["c.yaml:5: eval.modes.0:", "did you mean 'rank'?"], lines=1)),
    "tab indentation": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="train:\n\tepochs: 2\n")}, ["train", "c.yaml"],
                        Error(["c.yaml:6:", "malformed YAML"])),
    "Hugging Face TrainingArguments names": (
        {"data.jsonl": jsonl(Q), "c.yaml": config(s="train:\n  learning_rate: 1e-4\n  num_train_epochs: 3\n"
                                                 "  per_device_train_batch_size: 8\n  gradient_accumulation_steps: 2\n"
                                                 "  warmup_ratio: 0.1\n  weight_decay: 0.0\n")},
        ["train", "c.yaml"], Error(["c.yaml:6: train.learning_rate: unknown key (Hugging Face's name; here it is 'lr')",
                                    "c.yaml:7: train.num_train_epochs", "here it is 'epochs'",
                                    "c.yaml:8: train.per_device_train_batch_size", "here it is 'batch_size'",
                                    "c.yaml:9: train.gradient_accumulation_steps", "'grad_accum_steps'"],
                                   lines=4)),
    "select on valid_loss": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="train: {select_metric: valid_loss}\n")},
                             ["train", "c.yaml"],
                             Error(["c.yaml:5:", "train.select_metric", "valid_loss is not computed",
                                    "rank_accuracy"])),
    "tinyllm without teachers": ({"data.jsonl": jsonl(Q), "c.yaml": config(s="method: tinyllm\n")}, ["train", "c.yaml"],
                                 Error(["method 'tinyllm' needs at least one rationale teacher", "method: finetune"])),
    "an API key written into api_key_env": (
        {"data.jsonl": jsonl(Q), "c.yaml": config(s="teachers:\n  - {name: gpt, kind: http, base_url: 'http://x/v1', "
                                                 "model: m, api_key_env: sk-proj-Zq81xYSECRETkey}\n")},
        ["teach", "c.yaml"], Error(["c.yaml:6:", "teachers.0.api_key_env", "looks like an API key"],
                                   absent=["sk-proj", "SECRET"])),
    "answer_base out of range": ({"data.jsonl": jsonl(Q), "c.yaml": config("{path: data.jsonl, answer_base: 2}")},
                                 ["train", "c.yaml"], Error(["c.yaml:3:", "data.train.answer_base", "0 or 1"])),
    # ------------------------------------------------------------------------------------- paths
    "data file not found": ({"c.yaml": config("{path: nowhere/train.jsonl}")}, ["train", "c.yaml"],
                            Error(["c.yaml:3: data.train.path: nowhere/train.jsonl: file not found",
                                   "c.yaml:4: data.valid.path: data.jsonl: file not found"], lines=2)),
    "every missing path at once, before any model loads": (
        {"data.jsonl": jsonl(Q), "c.yaml": config(s="student: {model: ./my-model-folder}\n").replace(
            "valid: {path: data.jsonl}", "valid: {path: valid.jsonl}")},
        ["train", "c.yaml"], Error(["c.yaml:4: data.valid.path: valid.jsonl: file not found",
                                    "c.yaml:5: student.model: ./my-model-folder: folder not found"], lines=2)),
    "a relative path written from the config's folder": (
        {"recipes/data.jsonl": jsonl(Q), "recipes/c.yaml": config()}, ["train", "recipes/c.yaml"],
        Error(["data.train.path: data.jsonl: file not found (relative paths are read from the current folder",
               "it exists next to the config"], lines=2)),
    "data check of a config reads it as training does": (
        {"d.jsonl": jsonl(*({"prompt": f"q{i}?", "options": ["a", "b", "c"], "label": i} for i in (3, 1, 2))),
         "c.yaml": "data:\n  train: {path: d.jsonl, answer_base: 1, columns: {question: prompt, choices: options, "
                   "answer: label}}\n  valid_from_train: 1\n"},
        ["data", "check", "c.yaml"], Works()),
    "data check with the columns and answer base as flags": (
        {"d.jsonl": jsonl({"prompt": "q?", "options": ["a", "b", "c"], "label": 1})},
        ["data", "check", "d.jsonl", "--columns", "question=prompt,choices=options,answer=label", "--answer-base",
         "1"], Works()),
    "config file not found": ({}, ["train", "missing.yaml"], Error(["missing.yaml: config file not found"])),
    "a folder without TinyLLM files": ({"empty/.keep": ""}, ["data", "check", "empty"],
                                       Error(["empty: no '<name>_<split>.json' files"])),
    "eval of a folder that is no run": ({"d.jsonl": jsonl(Q), "notarun/x.txt": ""},
                                        ["eval", "notarun", "--data", "d.jsonl", "--out", "ev"],
                                        Error(["notarun: neither a run folder"])),
    "eval --out onto a file": ({"d.jsonl": jsonl(Q), "ev": "notes"}, ["eval", "somerun", "--data", "d.jsonl", "--out",
                                                                 "ev"], Error(["ev: is a file"])),
    "eval --out onto a run folder": ({"d.jsonl": jsonl(Q), "run/config.yaml": "name: run\n"},
                                     ["eval", "run", "--data", "d.jsonl", "--out", "run"],
                                     Error(["run: a run or model folder", "choose another --out"])),
    "reproduce --seeds a,b": ({}, ["reproduce", "--seeds", "a,b"], Error(["--seeds a,b: 'a' is not a whole number"])),
    "reproduce --seeds -1": ({}, ["reproduce", "--seeds", "-1"], Error(["--seeds -1: -1 is out of range"])),
    "a --set on a missing list item": ({"data.jsonl": jsonl(Q), "c.yaml": config()},
                                       ["train", "c.yaml", "--set", "teachers.0.alpha_rationale=1"],
                                       Error(["--set teachers.0.alpha_rationale: no list item '0'"])),
}


def _write(tmp: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))  # exactly these bytes: no newline translation


@pytest.mark.parametrize("case", CASES)
def test_newcomer_mistake(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    files, argv, expect = CASES[case]
    _write(tmp_path, files)
    monkeypatch.chdir(tmp_path)  # paths as a user types them, relative to where they stand
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if isinstance(expect, Works):
        assert code == 0, err
        expect.check(tmp_path)
        return
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == expect.lines and all(ln.startswith("error: ") for ln in lines), err
    for fragment in expect.fragments:
        assert fragment in err, (fragment, err)
    for secret in expect.absent:
        assert secret not in err, (secret, err)


@pytest.mark.parametrize("argv", [["eval", "r", "--data", "d.jsonl", "--out", "e", "--modes", "rnak"],
                                  ["quickstart", "--shrink", "0"]])
def test_a_flag_checked_before_any_work(argv: list[str], capsys) -> None:
    """A mode typo scored nothing; ``--shrink 0`` failed only after the quickstart's minutes of training."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and argv[-2] in capsys.readouterr().err


def test_an_architecture_the_checkpoint_has_no_form_of(tiny_bert_dir: Path) -> None:
    from tinydistill.config import StudentConfig
    from tinydistill.errors import TinyDistillError
    from tinydistill.students import load_student

    with pytest.raises(TinyDistillError, match=r"^student.architecture: seq2seq, but .* is a bert model, which has "
                                               r"no seq2seq form; use auto, or one of: multiple_choice, causal$"):
        load_student(StudentConfig(model=str(tiny_bert_dir), architecture="seq2seq"))


def _fail() -> None:
    raise AssertionError("read with the wrong text")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["three mistakes at once"])
def test_newcomer_mistake_in_a_real_process(case: str, tmp_path: Path) -> None:
    files, argv, expect = CASES[case]
    _write(tmp_path, files)
    proc = subprocess.run([sys.executable, "-m", "tinydistill.cli", *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == expect.lines
    assert all(f in proc.stderr for f in expect.fragments), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("where", ["student", "teacher"])
def test_a_model_name_unavailable_offline(where: str, tmp_path: Path) -> None:
    """A hub name with no network and nothing cached: one line naming the key and the model, exit 2."""
    extra = ("student: {model: no-such-org/no-such-model-xyz}\n" if where == "student" else
             "teachers:\n  - {name: big, kind: hf, model: no-such-org/no-such-model-xyz}\n")
    _write(tmp_path, {"data.jsonl": jsonl(Q, dict(Q, id="2")), "c.yaml": config(s=extra)})
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "tinydistill.cli", "train" if where == "student" else "teach",
                           "c.yaml", "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'no-such-org/no-such-model-xyz'" in lines[0], proc.stderr
    assert ("student.model: cannot load" if where == "student" else "teacher 'big' (kind: hf) model") in lines[0]


def test_keys_given_twice_are_named_and_an_alias_read_twice_is_not() -> None:
    from tinydistill.config.loader import duplicate_keys

    text = ("base: &b {lr: 1.0e-4}\ntrain: {<<: *b, epochs: 2}\neval: *b\nstudent: {model: x, model: y}\n"
            "teachers: [{name: a, name: b}]\n")
    assert duplicate_keys(text) == [(4, "student.model", 4), (5, "teachers.0.name", 5)]
