"""The quickstart end to end on the embedded data and the real offline MiniLM (kept small), then `eval`."""

import json

import pytest

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
