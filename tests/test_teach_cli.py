"""``tinydistill teach``: all rows from all live teachers (local, HTTP) are written; a rerun calls nothing."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.teacher_helpers import (
    HTML_PAGE,
    TRUNCATED,
    gateway_app,
    make_examples,
    minilm_tokenizer,
    one_thread,
    serve_in_thread,
    tiny_gpt2,
)
from tinydistill.cli import main
from tinydistill.config.loader import load_config
from tinydistill.serve import create_app
from tinydistill.teach import teach
from tinydistill.teachers.imported import ImportedTeacher

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def _rows(n: int, prefix: str) -> list[dict]:
    return [
        {"id": e.id, "question": e.question, "choices": list(e.choices), "answer": e.choices[e.answer]}
        for e in make_examples(n, prefix)
    ]


def _config(tmp_path: Path, url: str, model_dir: Path) -> Path:
    for split, n in (("train", 8), ("valid", 4)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(n, split)))
    cfg = {
        "name": "teachrun",
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "train": {"path": str(tmp_path / "train.jsonl")},
            "valid": {"path": str(tmp_path / "valid.jsonl")},
        },
        "teachers": [
            {
                "name": "local",
                "kind": "hf",
                "model": str(model_dir),
                "dtype": "float32",
                "generation": {"max_new_tokens": 4, "batch_size": 4},
                "icl": {"k": 1, "pool_size": 2},
                "quality": {"on_contradict": "drop"},
            },
            {
                "name": "remote",
                "kind": "http",
                "base_url": url,
                "model": "tiny",
                "api": "chat",
                "retry_backoff_s": 0.01,
                "generation": {"max_new_tokens": 4, "template": "cot"},
            },
        ],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_teach_writes_outputs_and_rerun_makes_zero_calls(tmp_path: Path, capsys) -> None:
    model_dir = tmp_path / "teacher"
    tiny_gpt2().save_pretrained(model_dir)
    minilm_tokenizer().save_pretrained(model_dir)
    app = create_app(tiny_gpt2(seed=1), minilm_tokenizer(), model_name="tiny", fault_rate=0.3, slow_s=0.02)
    with serve_in_thread(app) as url:
        cfg_path = _config(tmp_path, url, model_dir)
        assert main(["teach", str(cfg_path), "--splits", "train,valid"]) == 0
        printed = capsys.readouterr().out
        assert "agree" in printed and "calls" in printed
        run_dir = tmp_path / "runs" / "teachrun"
        assert (run_dir / "cache.sqlite").exists()
        for name in ("local", "remote"):
            for split, n in (("train", 8), ("valid", 4)):
                lines = (run_dir / "teachers" / f"{name}.{split}.jsonl").read_text().splitlines()
                recs = [json.loads(x) for x in lines]
                assert [r["id"] for r in recs] == [f"{split}{i}" for i in range(n)]
                assert set(recs[0]) >= {"id", "rationale", "stated_answer", "agrees", "weight"}
        # the files read back as imported teachers (dropped rows → no rationale)
        imported = ImportedTeacher("remote", run_dir / "teachers" / "remote.valid.jsonl")
        assert len(imported.rationales(make_examples(4, "valid"))) == 4

        requests = app.state.stats["requests"]
        rows = teach(load_config(cfg_path), ["train", "valid"])
        assert [r["calls"] for r in rows] == [0, 0, 0, 0] and all(r["hits"] > 0 for r in rows)
        assert app.state.stats["requests"] == requests
        assert (
            main(
                [
                    "teach",
                    str(cfg_path),
                    "--set",
                    "teachers.1.generation.max_new_tokens=3",
                    "--splits",
                    "valid",
                ]
            )
            == 0
        )
        assert app.state.stats["requests"] > requests  # new generation parameters → new cache keys


def _http_config(tmp_path: Path, url: str, **teacher) -> Path:
    for split, n in (("train", 8), ("valid", 4)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(n, split)))
    cfg = {
        "name": "gw",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": {"path": str(tmp_path / "train.jsonl")}, "valid": {"path": str(tmp_path / "valid.jsonl")}},
        "teachers": [{"name": "remote", "kind": "http", "base_url": url, "model": "m", "api": "chat",
                      "retry_backoff_s": 0.01, "max_retries": 2, "generation": {"max_new_tokens": 8}, **teacher}],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_teach_stops_in_one_line_on_a_reply_that_stays_malformed_and_resumes(tmp_path: Path, capsys) -> None:
    """A gateway's HTML page for one row: exit 2, one line naming the row and the endpoint; the rest is cached."""
    app = gateway_app(always_bad={"Question valid2:": HTML_PAGE})
    with serve_in_thread(app) as url:
        cfg_path = _http_config(tmp_path, url)
        assert main(["teach", str(cfg_path), "--splits", "valid", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err, err
        assert err.startswith("error: teacher 'remote', row 'valid2': ")
        assert f"{url}/chat/completions: gave up after 3 attempts" in err and "not a completion" in err
        assert err.endswith("3 of 4 valid rows done and cached; run the same command again to resume")
        app.state.always_bad.clear()
        before = sum(app.state.requests.values())
        assert main(["teach", str(cfg_path), "--splits", "valid", "--no-progress"]) == 0
        assert sum(app.state.requests.values()) == before + 1  # only the failed row is asked again
    out = capsys.readouterr().out
    assert "calls 1  hits 3  retries 0  failed 0" in out


def test_teach_progress_bar_shows_rows_hits_retries_and_failures(tmp_path: Path, capsys) -> None:
    from rich.console import Console

    app = gateway_app({"Question train3:": [TRUNCATED, HTML_PAGE], "Question valid1:": [TRUNCATED]}, delay_s=0.1)
    with serve_in_thread(app) as url:
        cfg = load_config(_http_config(tmp_path, url, concurrency=1))
        screen = io.StringIO()
        rows = teach(cfg, ["train", "valid"], progress=True,
                     console=Console(file=screen, force_terminal=True, width=150, color_system=None))
        frames = screen.getvalue()
        done = {int(m) for m in re.findall(r"remote train\s.*?(\d)/8 hits", frames)}
        assert 8 in done and done & set(range(1, 8)), frames  # the bar moved while the rows came in
        train = re.findall(r"remote train\s.*8/8 hits 0\s+retries (\d)\s+failed 0", frames)
        assert train and set(train) == {"2"}, frames  # the valid split's retry never lands on the train bar
        assert re.search(r"remote valid\s.*4/4 hits 0\s+retries 1\s+failed 0", frames), frames
        assert [(r["split"], r["calls"], r["retries"], r["failures"], r["faults"]) for r in rows] == [
            ("train", 8, 2, 0, {"malformed reply": 2}), ("valid", 4, 1, 0, {"malformed reply": 1})]
        # the CLI: the bar (stderr) and a summary table with the totals (stdout); a rerun is all hits
        assert main(["teach", str(tmp_path / "run.yaml")]) == 0
        captured = capsys.readouterr()
        assert re.search(r"remote train\s.*8/8 hits 8\s+retries 0\s+failed 0", captured.err), captured.err
        assert "retries" in captured.out and "failed" in captured.out
        assert "calls 0  hits 12  retries 0  failed 0" in captured.out


def test_teach_to_a_file_prints_periodic_count_lines(tmp_path: Path, monkeypatch) -> None:
    """Output redirected (CI, nohup): no live bar, which would show only at the end, but plain count lines."""
    from rich.console import Console

    from tinydistill import teach as teach_module

    monkeypatch.setattr(teach_module, "REPORT_EVERY_S", 0.0)  # every output, for the test
    app = gateway_app({"Question train3:": [TRUNCATED]})
    with serve_in_thread(app) as url:
        cfg = load_config(_http_config(tmp_path, url, concurrency=1))
        log = io.StringIO()
        teach(cfg, ["train", "valid"], progress=True, console=Console(file=log, force_terminal=False, width=150))
    lines = log.getvalue().splitlines()
    train = [ln for ln in lines if ln.startswith("teach: remote train ")]
    assert [int(re.search(r" (\d+)/8 ", ln).group(1)) for ln in train][:3] == [1, 2, 3], lines  # as rows land
    assert re.match(r"teach: remote train 8/8 hits 0 retries 1 failed 0 \(\d+ s\)$", train[-1]), train
    assert lines[-1].startswith("teach: remote valid 4/4 hits 0 retries 0 failed 0"), lines
    assert "━" not in log.getvalue()  # no bar drawn into the file
