"""Bad input → one line naming the file, the row or line, and the field; exit code 2; no traceback."""

import json
import subprocess
import sys

import pytest

from tinydistill.cli import main

ROW = {"id": "1", "question": "What sticks to a magnet?", "choices": ["wood", "iron"], "answer": "iron"}


def _write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def rows_json(*rows) -> str:
    return json.dumps(list(rows), indent=1)


CASES = {
    "missing file": (None, ["not found"]),
    "empty file": ("", ["file is empty"]),
    "malformed JSON": ('[\n {"id": "1",\n  "question": oops}\n]', [":3", "malformed JSON"]),
    "malformed JSON Lines": (json.dumps(ROW) + "\n{bad\n", [":2", "malformed JSON Lines"]),
    "row without a field": (rows_json(ROW, {k: v for k, v in ROW.items() if k != "question"}),
                            ["data.json:11 field 'question'", "missing field"]),  # the line its item starts on
    "answer not among choices": (rows_json(dict(ROW, answer="gold")), ["data.json:2 field 'answer'", "not among"]),
    "fewer than two choices": (rows_json(dict(ROW, choices=["iron"])), ["field 'choices'", "at least two"]),
    "duplicate choices": (rows_json(dict(ROW, choices=["iron", "iron"])), ["field 'choices'", "duplicate"]),
    "choices not a list": (rows_json(dict(ROW, choices=7)), ["field 'choices'", "must be a list"]),
    "undecodable bytes": (b'[{"id": "1", "question": "caf\xe9"}]', ["not valid UTF-8", ":1"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_data_gives_one_line_error(case, tmp_path, capsys):
    content, expected = CASES[case]
    path = tmp_path / "data.json"
    if content is not None:
        _write(path, content)
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("error: ") and str(path) in err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_misaligned_rationale_chunks(tmp_path, capsys):
    folder = tmp_path / "mini"
    (folder / "llm").mkdir(parents=True)
    (folder / "mini_train.json").write_text(rows_json(ROW, dict(ROW, id="2")))
    (folder / "llm" / "train_CoT_0.json").write_text(json.dumps(["only one"]))
    assert main(["data", "check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "1 rationales" in err and "do not align with 2 rows" in err


def test_data_check_prints_counts(tmp_path, capsys):
    path = _write(tmp_path / "d.jsonl", json.dumps(ROW) + "\n" + json.dumps(dict(ROW, id="2", answer="wood")))
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "train" in line]  # the table's one split row, cell by cell
    assert [cell.strip() for cell in row.strip("│ \n").split("│")] == ["train", "2", "2: 2", "a:1 b:1", "50.0%",
                                                                       "none"], out
    assert out.rstrip().endswith("OK")


CONFIG = """name: bad
data:
  train: {path: t.jsonl}
  valid: {path: v.jsonl}
train:
  epochs: 1
  lr: {lr}
{extra}
"""


@pytest.mark.parametrize("lr,extra,expected", [
    ("fast", "", [":7", "train.lr", "valid number"]),
    ("1e-4", "studnet: {model: x}", [":8", "studnet", "unknown key"]),
    ("1e-4", "teachers:\n  - {name: a, kind: carrier-pigeon}", [":9", "teachers.0", "kind"]),
])
def test_bad_config_names_file_line_and_key(tmp_path, capsys, lr, extra, expected):
    path = _write(tmp_path / "c.yaml", CONFIG.replace("{lr}", lr).replace("{extra}", extra))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err, err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_bad_override_is_a_one_line_error(tmp_path, capsys):
    path = _write(tmp_path / "c.yaml", CONFIG.replace("{lr}", "1e-4").replace("{extra}", ""))
    assert main(["train", str(path), "--set", "train.batch_size=-3"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size" in err and "greater than or equal to 1" in err


@pytest.mark.slow
def test_real_process_exit_code_and_no_traceback(tmp_path):
    missing = tmp_path / "nope.json"
    proc = subprocess.run([sys.executable, "-m", "tinydistill.cli", "data", "check", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(missing) in proc.stderr


MANY = """name: bad
data:
  train: {path: t.jsonl, answer_base: 2}
  valid: {path: v.jsonl}
studnet: {model: x}
train:
  epochs: 1
  lrr: 1e-4
  batch_size: zero
teachers:
  - {name: a, kind: http, model: m, base_url: "http://x/v1", generaton: {max_new_tokens: 4}}
"""


def test_every_config_error_is_listed_with_file_line_and_key(tmp_path, capsys):
    path = _write(tmp_path / "c.yaml", MANY)
    assert main(["train", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: {path}:3: data.train.answer_base: Input should be 0 or 1",
        f"error: {path}:5: studnet: unknown key (did you mean 'student'?)",
        f"error: {path}:8: train.lrr: unknown key (did you mean 'lr'?)",
        f"error: {path}:9: train.batch_size: Input should be a valid integer, unable to parse string as an integer",
        f"error: {path}:11: teachers.0.generaton: unknown key (did you mean 'generation'?)",
    ], lines


def test_a_long_list_of_config_errors_is_cut_at_ten(tmp_path, capsys):
    extra = "\n".join(f"  typo{i}: 1" for i in range(12))
    path = _write(tmp_path / "c.yaml", CONFIG.replace("{lr}", "1e-4").replace("{extra}", "") + "eval:\n" + extra)
    assert main(["train", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 11 and all(ln.startswith(f"error: {path}:") for ln in lines)
    assert "eval.typo0: unknown key (expected one of: batch_size, max_new_tokens" in lines[0]
    assert lines[-1] == f"error: {path}: … and 2 more problems"


def test_data_alone_lists_its_commands(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr()
    assert "check" in out.out and "required" not in out.err + out.out


@pytest.mark.parametrize("argv,shown", [
    (["serve", "--help"], ["--port PORT", "TCP port to listen on (default: 8000)", "(default: 64)"]),
    (["quickstart", "--help"], ["(default: quickstart)", "--set KEY=VALUE"]),
    (["teach", "--help"], ["(default: train,valid)"]),
    (["data", "check", "--help"], ["--answer-base", "--columns", "--encoding", "(default: auto)"]),
])
def test_help_shows_each_options_default(argv, shown, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    out = " ".join(capsys.readouterr().out.split())
    for text in shown:
        assert text in out, (text, out)
    assert "(default: None)" not in out and "(default: False)" not in out
