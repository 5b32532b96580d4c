"""``tinydistill export``: the ONNX graph scores as the PyTorch student does, int8 loads everywhere an export should
(eval, serve, a plain InferenceSession), and bad input or a stopped export is one line / leaves nothing loadable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForMultipleChoice, AutoTokenizer

from tests.conftest import synthetic_rows, write_jsonl
from tests.teacher_helpers import one_thread
from tinydistill.config import StudentConfig
from tinydistill.errors import TinyDistillError
from tinydistill.export import export_student, exporter
from tinydistill.serve.server import load_choice_student
from tinydistill.students import EXPORT_META, ONNX_FILE, load_onnx_student, load_student

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures(one_thread.__name__)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """A finished run folder: config.yaml, best/ (a tiny multiple-choice BERT) and its valid data."""
    root = tmp_path_factory.mktemp("run")
    data = write_jsonl(root / "valid.jsonl", synthetic_rows(24, seed=3))
    torch.manual_seed(2)
    model = AutoModelForMultipleChoice.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        model.bert.pooler.dense.weight.normal_(0, 1.0)  # choices that score apart
        model.classifier.weight.normal_(0, 2.0)
    model.save_pretrained(root / "run" / "best")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(root / "run" / "best")
    cfg = {"name": "run", "data": {"train": {"path": str(data)}, "valid": {"path": str(data)}},
           "student": {"model": str(tiny_bert_dir), "max_input_length": 64}, "answer_prefix": "answer: "}
    (root / "run" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "run"


@pytest.fixture(scope="module")
def fp32_export(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports")
    export_student(run_dir, out / "fp32", log=lambda *a: None)
    return out / "fp32"


@pytest.fixture(scope="module")
def exported(run_dir, fp32_export) -> dict[str, Path]:
    """Both exports, side by side (the int8 one quantises and measures again: the slow tests only)."""
    export_student(run_dir, fp32_export.parent / "int8", quantize="int8", log=lambda *a: None)
    return {"fp32": fp32_export, "int8": fp32_export.parent / "int8"}


def _batch(student, n: int = 3) -> dict[str, torch.Tensor]:
    from tinydistill.data import Example
    from tinydistill.students import encode_choices, pad_choices

    rows = [Example(str(i), f"question {i} about {w}?", ("a cat", "milk in a bowl", "dog", "seed"), 0)
            for i, w in enumerate(["cats", "dogs and their bones", "birds"][:n])]
    return pad_choices([encode_choices(student.tokenizer, ex, "answer: ", 64)[0] for ex in rows],
                       student.pad_token_id)


def test_fp32_onnx_scores_equal_pytorchs(run_dir, fp32_export):
    torch_student = load_student(StudentConfig(model=str(run_dir / "best")))
    torch_student.model.eval()
    onnx_student = load_onnx_student(fp32_export)
    batch = _batch(torch_student)  # three questions of different lengths: padded rows
    with torch.inference_mode():
        want = torch_student.choice_scores(batch)
    got = onnx_student.choice_scores(batch)
    assert want.std() > 1e-3  # the scores differ: equality is not trivial
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    meta = json.loads((fp32_export / EXPORT_META).read_text())
    assert meta["max_abs_score_difference_vs_pytorch"] < 1e-4


@pytest.mark.slow  # a second export, quantised and measured
def test_int8_export_is_smaller_measured_and_close(run_dir, exported):
    meta = json.loads((exported["int8"] / EXPORT_META).read_text())
    assert meta["quantization"] == "int8"
    fp32 = (exported["fp32"] / ONNX_FILE).stat().st_size
    assert meta["exported"]["size_bytes"] == (exported["int8"] / ONNX_FILE).stat().st_size < fp32
    for side in ("pytorch", "exported"):  # the card's figures: size, latency, accuracy on valid
        assert meta[side]["latency_batch1_median_ms"] > 0 and 0 <= meta[side]["valid_accuracy"] <= 1
    card = (exported["int8"] / "README.md").read_text()
    assert "onnxruntime" in card and "accuracy on valid" in card and "size on disk" in card
    assert sorted(p.name for p in exported["int8"].parent.iterdir() if p.name.startswith(".")) == []  # no leftovers


@pytest.mark.slow
def test_the_cards_plain_onnxruntime_snippet_runs(exported):
    card = (exported["int8"] / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0].replace("THIS_FOLDER", str(exported["int8"]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    choice, probs = out.stdout.split(" ", 1)
    assert choice in {"iron", "wood", "glass", "rubber"} and "[" in probs


@pytest.mark.slow
def test_eval_and_serve_load_an_export(run_dir, exported, tmp_path):
    data = run_dir.parent / "valid.jsonl"
    out = subprocess.run([sys.executable, "-m", "tinydistill", "eval", str(exported["int8"]), "--data", str(data),
                          "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    meta = json.loads((exported["int8"] / EXPORT_META).read_text())
    assert metrics["n"] == 24 and metrics["rank_accuracy"] == pytest.approx(meta["exported"]["valid_accuracy"])
    student, prefix, max_length = load_choice_student(str(exported["int8"]))
    assert prefix == "answer: " and max_length == 64 and student.model.device.type == "cpu"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinydistill", *args], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.mark.slow
def test_bad_input_is_one_line_naming_the_path(run_dir, exported, tmp_path, tiny_gpt2_dir):
    no_best = tmp_path / "fresh"
    no_best.mkdir()
    shutil.copy(run_dir / "config.yaml", no_best / "config.yaml")
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(exported["fp32"] / ONNX_FILE, half / ONNX_FILE)  # an export stopped before export.json
    cases = [
        (["export", str(no_best), "--out", str(tmp_path / "o1")], [str(no_best), "best/", "train"]),
        (["export", str(tiny_gpt2_dir), "--out", str(tmp_path / "o2")], [str(tiny_gpt2_dir), "multiple-choice"]),
        (["export", str(run_dir), "--out", str(exported["fp32"])], [str(exported["fp32"]), "--force"]),
        (["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o3")], [str(tmp_path / "nope")]),
        (["eval", str(half), "--data", str(run_dir.parent / "valid.jsonl"), "--out", str(tmp_path / "e")],
         [str(half), "not a complete export", "tinydistill export"]),
    ]
    for args, words in cases:
        out = _cli(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, (args, out.stderr[-1500:])
        assert all(w in lines[0] for w in words), (words, lines[0])
    with pytest.raises(TinyDistillError, match="not a complete export"):
        load_choice_student(str(half))  # serve refuses it too
    for p in ("o1", "o2", "o3"):
        assert not (tmp_path / p).exists()


def test_missing_extra_is_one_line(monkeypatch, run_dir, tmp_path):
    import builtins

    real = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(TinyDistillError, match=r'pip install "tinydistill\[export\]"'):
        export_student(run_dir, tmp_path / "o", log=lambda *a: None)
    assert not (tmp_path / "o").exists()


def test_an_export_stopped_midway_leaves_nothing_that_loads(monkeypatch, run_dir, fp32_export, tmp_path):
    def killed(src, dst):  # stopped while quantising: model.fp32.onnx, tokenizer files not yet written
        raise KeyboardInterrupt

    def copied(scorer, example, path):  # the graph the fixture exported (the exporter is slow)
        shutil.copy(fp32_export / ONNX_FILE, path)

    monkeypatch.setattr(exporter, "export_onnx", copied)
    monkeypatch.setattr(exporter, "quantize_int8", killed)
    with pytest.raises(KeyboardInterrupt):
        export_student(run_dir, tmp_path / "out", quantize="int8", log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []  # neither OUT nor its partial folder

    # a hard kill (no cleanup) leaves only the hidden partial folder, which is removed by the next export
    stale = tmp_path / ".out.partial-999999999"
    stale.mkdir()
    (stale / ONNX_FILE).write_bytes(b"half")
    monkeypatch.undo()
    monkeypatch.setattr(exporter, "export_onnx", copied)
    export_student(run_dir, tmp_path / "out", log=lambda *a: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / EXPORT_META).is_file()
