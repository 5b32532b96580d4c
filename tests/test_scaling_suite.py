"""``tinydistill reproduce --suite scaling``: the cells it plans, what each trains, and its sizes report."""

from __future__ import annotations

import json

import pytest

from tinydistill.cli import main
from tinydistill.study.configs import base_config, config_for
from tinydistill.study.scaling import across_datasets, smallest_within
from tinydistill.study.suites import Cell, scaling_variants

from .test_reproduce import tinyllm_folder


def _planned(capsys) -> set[str]:
    return {line.split("/")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("todo")}


def test_the_scaling_suite_expands_to_the_teacher_then_each_method_at_each_size(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tinyllm_folder(tmp_path / "data")
    common = ["reproduce", "--suite", "scaling", "--data-root", str(tmp_path / "data"), "--datasets", "toy",
              "--seeds", "0,1", "--valid-rows", "24", "--dry-run"]
    assert main(common) == 0  # the defaults: finetune, kd, whitebox (from MiniLM's and the teacher's layers)
    assert _planned(capsys) == {"finetune", "finetune_L2", "kd_L2", "whitebox_L2", "whitebox_init_L2",
                                "finetune_L3", "kd_L3", "whitebox_L3", "whitebox_init_L3"}
    assert main([*common, "--layers", "1,6", "--methods", "whitebox_init,whitebox_attn"]) == 0
    assert _planned(capsys) == {"finetune", "whitebox_init_L1", "whitebox_attn_L1"}  # 6 layers: the teacher itself
    assert main([*common, "--methods", "finetune,bogus"]) == 2


def test_each_scaling_cell_distils_the_same_seeds_fine_tuned_teacher(tmp_path):
    data = tinyllm_folder(tmp_path / "data")
    root = tmp_path / "runs"

    def base_for(dataset: str, seed: int) -> dict:
        return base_config(data.parent, dataset, train_limit=None, valid_rows=24, epochs=1, output_dir=root,
                           seed=seed, overrides=[])

    variants = {v.name: v for v in scaling_variants([3], ["finetune", "kd", "whitebox", "whitebox_init",
                                                          "whitebox_cls", "whitebox_init_cls"])}
    teacher = root / "toy" / "finetune" / "seed1" / "best"
    teacher.mkdir(parents=True)
    cfg = {name: config_for(Cell("scaling", "toy", v, 1, root / "toy" / name / "seed1"), base_for)
           for name, v in variants.items()}
    assert cfg["finetune"].student.num_layers is None and cfg["finetune"].method == "finetune"
    assert cfg["finetune_L3"].student.num_layers == 3 and cfg["finetune_L3"].student.model == "minilm"
    for name in ("kd_L3", "whitebox_L3", "whitebox_init_L3", "whitebox_cls_L3", "whitebox_init_cls_L3"):
        assert cfg[name].whitebox.teacher_model == str(teacher) and cfg[name].student.num_layers == 3
    assert cfg["whitebox_L3"].student.model == "minilm"  # from the pretrained MiniLM's layers …
    assert cfg["whitebox_init_L3"].student.model == str(teacher)  # … or from the teacher's (DistilBERT)
    assert cfg["whitebox_cls_L3"].whitebox.hidden_positions == "cls"
    both = cfg["whitebox_init_cls_L3"]
    assert both.whitebox.hidden_positions == "cls" and both.student.model == str(teacher)


def test_smallest_student_within_the_teacher_and_the_majority_class_case():
    rows = [{"label": "FT, 2 layers", "mean": 50.0, "params": 15e6}, {"label": "WB, 2 layers", "mean": 52.5,
                                                                       "params": 15e6},
            {"label": "WB, 3 layers", "mean": 53.0, "params": 17e6}]
    lines = smallest_within(rows, 53.4, 30.0)
    assert lines == ["smallest within 1 point of the teacher (≥ 52.4): WB, 2 layers (52.5, 15.0M parameters)",
                     "smallest within 95% of the teacher (≥ 50.7): WB, 2 layers (52.5, 15.0M parameters)"]
    lines = smallest_within(rows, 55.0, 55.0)
    assert lines[0].startswith("the teacher (55.0) is not above the majority class")
    assert lines[1].endswith("none of the students trained")


def test_across_datasets_averages_only_datasets_whose_teacher_learned_and_pairs_per_dataset():
    def row(variant, method, layers, mean, speedup=2.0):
        return {"variant": variant, "method": method, "layers": layers, "mean": mean, "speedup_batch1": speedup}

    per = {
        "a": {"teacher": 50.0, "majority": 30.0, "rows": [row("finetune", "Teacher", 6, 50.0, 1.0),
                                                          row("finetune_L2", "Fine-tuning", 2, 45.0),
                                                          row("whitebox_L2", "White-box", 2, 48.0, 3.0)]},
        "b": {"teacher": 40.0, "majority": 20.0, "rows": [row("finetune_L2", "Fine-tuning", 2, 36.0),
                                                          row("whitebox_L2", "White-box", 2, 35.0, 1.0)]},
        "flat": {"teacher": 55.0, "majority": 55.0, "rows": [row("finetune_L2", "Fine-tuning", 2, 55.0),
                                                             row("whitebox_L2", "White-box", 2, 80.0)]},
    }
    lines, record = across_datasets(per)
    assert record["datasets"] == ["a", "b"] and record["left_out"] == ["flat"] and record["teacher_mean"] == 45.0
    wb = next(r for r in record["rows"] if r["variant"] == "whitebox_L2")
    assert wb["mean"] == 41.5 and wb["vs_finetune"] == 1.0 and wb["ahead_of_finetune"] == 1  # +3 on a, -1 on b
    assert wb["vs_teacher"] == -3.5 and wb["speedup_batch1"] == 2.0
    assert "| White-box | 2 | 2 of 2 | 41.50 | +1.00 (ahead on 1 of 2) | -3.50 (ahead on 0 of 2) | 2.00× |" in lines
    assert any(line.startswith("Left out (the teacher is not above the majority class): flat") for line in lines)


@pytest.mark.slow
def test_a_small_scaling_sweep_reports_sizes_speed_and_a_plot(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tinyllm_folder(tmp_path / "data")
    assert main(["reproduce", "--suite", "scaling", "--data-root", str(tmp_path / "data"), "--datasets", "toy",
                 "--seeds", "0", "--valid-rows", "24", "--layers", "1", "--methods", "finetune,kd,whitebox",
                 "--no-progress", "--set", f"student.model={tiny_bert_dir}", "--set", "student.max_input_length=48",
                 "--set", "train.epochs=2"]) == 0
    root = tmp_path / "runs" / "reproduce" / "scaling"
    report = (root / "report.md").read_text()
    assert "## Sizes: parameters, size on disk, CPU speed" in report
    assert "| White-box, 1 layer | 1 |" in report and "smallest within 1 point" in report
    record = json.loads((root / "scaling.json").read_text())["toy"]
    assert set(record["speed"]) == {"1", "2"}  # the teacher's 2 layers and the cut student's 1
    assert record["speed"]["1"]["params"] < record["speed"]["2"]["params"]
    assert record["speed"]["1"]["batch1_ms"] > 0 and record["speed"]["1"]["batch32_rows_s"] > 0
    assert (root / "plots" / "scaling-toy.png").read_bytes()[:4] == b"\x89PNG"
    wb = json.loads((root / "toy" / "whitebox_L1" / "seed0" / "summary.json").read_text())
    assert wb["n_params"] == record["speed"]["1"]["params"]
