"""The quickstart end to end on the embedded data and the real offline MiniLM (kept small), then `eval`."""

import json
from pathlib import Path

import pytest
import yaml

from tinydistill.cli import main
from tinydistill.quickstart import embedded_data_dir

SMALL = ["--set", "data.train.limit=24", "--set", "data.valid.limit=20", "--set", "train.batch_size=8",
         "--set", "student.max_rationale_length=16"]


@pytest.mark.slow
def test_quickstart_runs_three_methods_then_eval_scores_the_student(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--no-progress", *SMALL]) == 0
    out = capsys.readouterr().out
    for label in ("inference only", "fine-tuning on answers", "TinyLLM", "flan_t5", "llama2", "majority"):
        assert label in out, label
    total = next(line for line in out.splitlines() if line.startswith("total "))
    assert ", fp32;" in total or ", bf16 autocast;" in total, total  # the precision `auto` chose on this machine
    root = tmp_path / "runs" / "quickstart"
    for method in ("inference", "finetune", "tinyllm"):
        for name in ("config.yaml", "report.md", "report.json", "predictions.jsonl", "best/config.json"):
            assert (root / method / name).exists(), (method, name)
    assert not (root / "tinyllm" / "best" / "rationale_decoder").exists()  # the masked-rationale head is not deployed
    stage = root / "tinyllm" / "rationale_stage" / "metrics.jsonl"  # both teachers' rationales, learned first
    metrics = [json.loads(line) for line in stage.read_text().splitlines()]
    assert any("loss/rationale/flan_t5" in m and "loss/rationale/llama2" in m for m in metrics)
    answer = [json.loads(line) for line in (root / "tinyllm" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/answer" in m for m in answer)

    # the trained student scores data in another format (JSONL written here) through `tinydistill eval`
    rows = [json.loads(line) for line in (embedded_data_dir() / "obqa_valid.json").read_text().splitlines()][-30:]
    data = tmp_path / "unseen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval", str(root / "tinyllm"), "--data", str(data), "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    preds = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert m["n"] == 30 and [p["id"] for p in preds] == [r["id"] for r in rows]
    for p, r in zip(preds, rows, strict=True):  # each row: the best-scored choice, right iff it is the gold text
        assert p["prediction"] == max(range(len(r["choices"])), key=p["rank_scores"].__getitem__)
        assert p["prediction_text"] == r["choices"][p["prediction"]]
        assert p["correct"] == (p["prediction_text"] == r["answer"])
    assert m["rank_accuracy"] == pytest.approx(sum(p["correct"] for p in preds) / 30)

    # running the same command again resumes: nothing is retrained
    before = (root / "tinyllm" / "metrics.jsonl").read_text(), stage.read_text()
    assert main(["quickstart", "--no-progress", *SMALL]) == 0
    assert ((root / "tinyllm" / "metrics.jsonl").read_text(), stage.read_text()) == before
    # ... and its table shows each method's training time, not the seconds of finding it finished
    rows = {r["method"]: r for r in json.loads((root / "report.json").read_text())["rows"]}
    trained = json.loads((root / "tinyllm" / "summary.json").read_text())["train_seconds"]
    tinyllm = next(r for m, r in rows.items() if m.startswith("TinyLLM"))
    assert trained > 0 and tinyllm["seconds"] >= trained


def test_the_results_table_drops_empty_columns_and_shows_how_often_a_teacher_states_an_answer():
    from types import SimpleNamespace

    from rich.console import Console

    from tinydistill.evaluation import outcome_rows, results_table, teacher_rows

    valid = SimpleNamespace(metrics={"rank_accuracy": 0.5, "rank_top_share": 0.3, "majority_baseline": 0.27, "n": 500})
    outcome = SimpleNamespace(cfg=SimpleNamespace(method="tinyllm"), valid=valid, train_seconds=60.0,
                              eval_seconds=4.0, teachers={"llama2": {"accuracy": 0.084, "stated": 0.12,
                                                                     "top_share": 0.4}})
    rows = outcome_rows(outcome, "TinyLLM") + teacher_rows(outcome)
    assert rows[1]["stated"] == 0.12 and rows[1]["right_when_stated"] == pytest.approx(0.7)
    out = Console(record=True, width=250)
    out.print(results_table("t", rows))
    text = out.export_text()
    assert "generated answer" not in text  # a choice-head student generates nothing: no column of dashes
    assert "answer stated" in text and "stated answer right" in text
    llama = next(line for line in text.splitlines() if "teacher: llama2" in line)
    assert "12.0" in llama and "70.0" in llama and "8.4" not in llama  # 12 % stated, 70 % of those right
    assert "64 s" in text


@pytest.mark.slow
def test_quickstart_shrink_distils_a_cut_student_and_shows_its_size_and_speed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--no-progress", "--shrink", "2", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "white-box, 2 layers" in out and "batch-1 ms" in out and "speed-up" in out
    root = tmp_path / "runs" / "quickstart"
    assert json.loads((root / "whitebox_L2" / "best" / "config.json").read_text())["num_hidden_layers"] == 2
    # the cut student starts from the fine-tuned teacher's own layers (DistilBERT style), not the pretrained MiniLM's
    cut = yaml.safe_load((root / "whitebox_L2" / "config.yaml").read_text())
    assert Path(cut["student"]["model"]) == Path("runs/quickstart/finetune/best")
    rows = json.loads((root / "shrink_L2.json").read_text())["rows"]
    assert float(rows[1]["params"].rstrip("M")) < float(rows[0]["params"].rstrip("M"))
