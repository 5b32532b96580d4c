"""Selection on a held-out slice of train, test scored once, choice-student KD/LoRA, and `tinydistill reproduce`."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pytest
import torch

from tinydistill.cli import main
from tinydistill.cli.reproduce import apply_fast_preset
from tinydistill.config.loader import config_from_dict
from tinydistill.config.schema import StudentConfig
from tinydistill.data.records import Example
from tinydistill.data.splits import HOLDOUT_SEED, load_train_valid
from tinydistill.errors import ConfigError
from tinydistill.losses import choice_kl
from tinydistill.run import run
from tinydistill.students.collate import ANSWER_TASK, MultiTaskCollator, TaskSpec, tokenize_tasks
from tinydistill.students.registry import load_student
from tinydistill.study.paper import DATASETS, TABLE1_METHODS

from .conftest import synthetic_rows


def tinyllm_folder(root: Path, name: str = "toy", n_train: int = 96, n_valid: int = 40) -> Path:
    """A dataset in the TinyLLM layout: JSON splits and llm/<split>_CoT_0.json with both teachers' rationales."""
    folder = root / name
    (folder / "llm").mkdir(parents=True)
    for split, n, seed in (("train", n_train, 11), ("valid", n_valid, 12)):
        rows = synthetic_rows(n, seed)
        (folder / f"{name}_{split}.json").write_text(json.dumps(rows))
        cot = []
        for r in rows:
            letter = "abcd"[r["choices"].index(r["answer"])]
            animal = r["question"].split()[-1].rstrip("?")
            cot.append(f"A {animal} likes {r['answer']}. Thus, the answer is ({letter}) {r['answer']}.\n\nQ: x"
                       f" llama rationale: {r['answer']} suits a {animal}.")
        (folder / "llm" / f"{split}_CoT_0.json").write_text(json.dumps(cot))
    return folder


def choice_config(model: Path, data: Path, out: Path, method: str = "finetune", **extra) -> dict:
    cfg = {
        "name": method, "output_dir": str(out), "seed": 0, "method": method, "answer_prefix": "",
        "data": {"train": {"path": str(data)}, "valid_from_train": 24, "test": {"path": str(data), "split": "valid"}},
        "student": {"model": str(model), "architecture": "multiple_choice", "max_input_length": 48,
                    "max_rationale_length": 12},
        "teachers": [{"name": "flan_t5", "kind": "imported", "alpha_rationale": 0.5, "prefix": "explain flan: "},
                     {"name": "llama2", "kind": "imported", "alpha_rationale": 0.5, "prefix": "explain llama: "}],
        "train": {"epochs": 6, "batch_size": 8, "lr": 1e-2, "mixed_precision": "no", "warmup_ratio": 0.0},
        "eval": {"modes": ["rank"], "batch_size": 64},
    }
    cfg.update(extra)
    return cfg


def test_valid_from_train_is_one_fixed_holdout_disjoint_from_train(tmp_path, tiny_bert_dir):
    data = tinyllm_folder(tmp_path)
    splits = {}
    for seed in (0, 1):
        raw = choice_config(tiny_bert_dir, data, tmp_path / "runs", seed=seed)
        raw["data"]["train"]["limit"] = 40
        splits[seed] = load_train_valid(config_from_dict(raw))
    (train0, valid0), (train1, valid1) = splits[0], splits[1]
    assert [e.id for e in valid0] == [e.id for e in valid1] and len(valid0) == 24  # same for every seed
    assert not {e.id for e in valid0} & {e.id for e in train0} and len(train0) == 40
    assert {e.id for e in train0} != {e.id for e in train1}  # the train subsample is the seed's
    assert HOLDOUT_SEED  # documented constant, not the run seed


def test_valid_and_valid_from_train_are_exclusive(tmp_path, tiny_bert_dir):
    raw = choice_config(tiny_bert_dir, tmp_path, tmp_path / "runs")
    raw["data"]["valid"] = {"path": str(tmp_path)}
    with pytest.raises(Exception, match="exactly one of data.valid or data.valid_from_train"):
        config_from_dict(raw)


def test_choice_student_rationale_batch_reads_only_the_source(tiny_bert_dir):
    """Regression: the rationale decoder's encoder input must not contain the rationale it is asked to write."""
    student = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice",
                                          rationale_head="decoder"), with_rationale_head=True)
    ex = Example("1", "what goes with a cat?", ("milk", "bone"), 0)
    tasks = [TaskSpec(ANSWER_TASK, "", lambda i, e: "milk", 8),
             TaskSpec("rationale/t", "explain: ", lambda i, e: "cats drink milk every day", 16)]
    rows, _ = tokenize_tasks(student, [ex], tasks, 48)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(rows)["rationale/t"]
    target = student.tokenizer("cats drink milk every day", add_special_tokens=False)["input_ids"]
    source = batch["input_ids"][0].tolist()
    assert batch["labels"][0].tolist()[: len(target)] == target
    assert not any(source[i: i + 3] == target[:3] for i in range(len(source)))  # the target is not in the input
    logits, labels = student.target_logits(batch)
    assert logits.shape[:2] == labels.shape  # one decoder position per target token


@pytest.mark.slow
def test_a_long_row_keeps_the_question_asked_and_the_student_learns_from_it(tmp_path, tiny_bert_dir):
    """PubMedQA/BioASQ put a long context first and the question last: a pair too long loses the start of the
    context, never the prefix, the question's end or a choice — so a student can still learn from such rows
    (cutting the end instead left every row at chance)."""
    from tinydistill.students.choice import encode_choices

    context = "the report lists many unrelated findings about soil and weather in several regions . " * 2
    student = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice"))
    ex = Example("1", context + "what goes with a cat?", ("milk", "bone"), 0)
    item, cut = encode_choices(student.tokenizer, ex, "answer: ", 24)
    text = student.tokenizer.decode(item.pair_ids[0])
    assert cut > 0 and all(len(ids) <= 24 for ids in item.pair_ids)
    assert text.startswith("[CLS] answer :") and "what goes with a cat? [SEP] milk [SEP]" in text

    data = tinyllm_folder(tmp_path)
    for split in ("train", "valid"):
        path = data / f"toy_{split}.json"
        rows = json.loads(path.read_text())
        path.write_text(json.dumps([{**r, "question": context + r["question"]} for r in rows]))
    out = tmp_path / "runs"
    raw = choice_config(tiny_bert_dir, data, out)
    raw["student"]["max_input_length"] = 24
    raw["train"]["epochs"] = 20  # the context slows learning; cutting the question's end instead stays at chance
    raw["train"]["lr"] = 2e-3  # at 1e-2 (and 5e-3) an AMD EPYC at fp32 stayed near chance (0.325, 0.275)
    outcome = run(config_from_dict(raw), progress=False, log=lambda m: None)
    summary = json.loads((out / "finetune" / "summary.json").read_text())
    assert summary["test"]["sources_truncated"] == 40  # every row was too long
    assert outcome.test is not None and outcome.test.metrics["rank_accuracy"] > 0.4  # chance is 25%


def test_choice_kl_is_zero_for_equal_scores_and_ignores_absent_choices():
    s = torch.tensor([[1.0, 0.5, float("-inf")], [0.2, 0.1, 0.0]])
    assert choice_kl(s, s.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)
    t = torch.tensor([[3.0, -1.0, float("-inf")], [0.0, 0.0, 2.0]])
    value = choice_kl(s, t, 1.0)
    p = torch.softmax(t[0, :2], -1)
    q = torch.softmax(s[0, :2], -1)
    p2, q2 = torch.softmax(t[1], -1), torch.softmax(s[1], -1)
    expected = ((p * (p / q).log()).sum() + (p2 * (p2 / q2).log()).sum()) / 2
    assert math.isfinite(value.item()) and value.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_run_scores_test_once_then_kd_and_lora_train_a_choice_student(tmp_path, tiny_bert_dir):
    data = tinyllm_folder(tmp_path)
    out = tmp_path / "runs"
    ft = run(config_from_dict(choice_config(tiny_bert_dir, data, out)), progress=False, log=lambda m: None)
    summary = json.loads((out / "finetune" / "summary.json").read_text())
    assert summary["test"]["n"] == 40 and summary["valid"]["n"] == 24 and summary["n_train"] == 72
    assert ft.test is not None and ft.test.metrics["rank_accuracy"] > 0.4  # chance is 25%
    assert len((out / "finetune" / "test_predictions.jsonl").read_text().splitlines()) == 40
    assert "## Test (40 rows)" in (out / "finetune" / "report.md").read_text()

    kd_cfg = choice_config(tiny_bert_dir, data, out, "kd", whitebox={"teacher_model": str(out / "finetune" / "best"),
                                                                       "alpha_kd": 0.5, "kd_temperature": 2.0})
    kd = run(config_from_dict(kd_cfg), progress=False, log=lambda m: None)
    logged = [json.loads(line) for line in (out / "kd" / "metrics.jsonl").read_text().splitlines()]
    assert kd.test is not None and all(math.isfinite(m["loss/kd"]) for m in logged if "loss" in m)

    lora = run(config_from_dict(choice_config(tiny_bert_dir, data, out, "lora", lora={"r": 4, "alpha": 8})),
               progress=False, log=lambda m: None)
    assert lora.test is not None
    reloaded = load_student(StudentConfig(model=str(out / "lora" / "best")))  # merged: a plain choice model
    assert reloaded.kind == "multiple_choice" and not any("lora" in n for n, _ in reloaded.model.named_parameters())


def test_choice_kd_terms_are_the_weighted_answer_ce_and_softened_kl_to_the_frozen_teacher(tiny_bert_dir, tmp_path):
    """``(1-α)·CE(gold)`` and ``α·T²·KL(teacher ‖ student)`` at T over one batch's choices: zero KL against a copy
    of the student, the exact KL (with a gradient to the student only) against another scorer."""
    from tinydistill.config.schema import WhiteboxConfig
    from tinydistill.losses import choice_cross_entropy
    from tinydistill.methods.choice_kd import ChoiceKDObjective
    from tinydistill.students.registry import save_student

    def choice_student(noise: float, folder: Path):
        scorer = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice"))
        torch.manual_seed(1)
        with torch.no_grad():
            for p in scorer.model.parameters():
                p.add_(noise * torch.randn_like(p))
        save_student(scorer, folder)
        return load_student(StudentConfig(model=str(folder)))

    student, _ = choice_student(0.0, tmp_path / "a"), choice_student(0.5, tmp_path / "b")
    exs = [Example("1", "what goes with a cat?", ("milk", "bone", "seed"), 0),
           Example("2", "what goes with a dog?", ("milk", "bone"), 1)]
    rows, _ = tokenize_tasks(student, exs, [TaskSpec(ANSWER_TASK, "", lambda i, e: "x", 8)], 48)
    batch = MultiTaskCollator(student.kind, student.pad_token_id)(rows)
    student.model.eval()
    same = ChoiceKDObjective(WhiteboxConfig(teacher_model=str(tmp_path / "a"), alpha_kd=0.3), student)
    assert same.terms(student, batch)["kd"][1].item() == pytest.approx(0.0, abs=1e-6)
    cfg = WhiteboxConfig(teacher_model=str(tmp_path / "b"), alpha_kd=0.3, kd_temperature=2.0)
    other = ChoiceKDObjective(cfg, student)
    assert not any(p.requires_grad for p in other.teacher.model.parameters()) and not other.teacher.model.training
    terms = other.terms(student, batch)
    scores = student.choice_scores(batch[ANSWER_TASK])
    with torch.no_grad():
        teacher_scores = other.teacher.choice_scores(batch[ANSWER_TASK])
    assert terms.keys() == {ANSWER_TASK, "kd"}
    assert terms[ANSWER_TASK][0] == pytest.approx(0.7) and terms["kd"][0] == pytest.approx(0.3 * 2.0 ** 2)
    torch.testing.assert_close(terms[ANSWER_TASK][1], choice_cross_entropy(scores, batch[ANSWER_TASK]["labels"]))
    torch.testing.assert_close(terms["kd"][1], choice_kl(scores, teacher_scores, 2.0))
    assert terms["kd"][1].item() > 0 and terms["kd"][1].item() != pytest.approx(
        choice_kl(scores, teacher_scores, 1.0).item())
    terms["kd"][1].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.model.parameters())
    assert other.parameters() == []
    # rows weighted (a teacher's per-row quality): the answer term is the weighted cross-entropy
    weights = torch.tensor([0.9, 0.1])
    weighted = {ANSWER_TASK: {**batch[ANSWER_TASK], "row_weights": weights}}
    want = choice_cross_entropy(scores, batch[ANSWER_TASK]["labels"], weights)
    assert want.item() != pytest.approx(terms[ANSWER_TASK][1].item())
    torch.testing.assert_close(other.terms(student, weighted)[ANSWER_TASK][1], want)
    # the teacher follows the batch's device: moved when its weights are elsewhere, left alone when they are not
    moves: list = []
    real = other.teacher.model
    real.to = lambda device: moves.append(device) or real  # noqa: B023 - recorded, not moved
    other.terms(student, batch)
    assert moves == []

    class Elsewhere(torch.nn.Module):  # weights on another device (meta stands in for a GPU here)
        def parameters(self, recurse: bool = True):
            yield torch.empty(0, device="meta")

        def to(self, device):
            moves.append(device)
            return self

    other.teacher.model = Elsewhere()
    other.teacher.choice_scores = lambda tensors: teacher_scores
    other.terms(student, batch)
    assert moves == [batch[ANSWER_TASK]["input_ids"].device]


@pytest.mark.slow
def test_reproduce_runs_cells_reports_mean_std_and_resumes_cell_by_cell(tmp_path, tiny_bert_dir, monkeypatch,
                                                                         capsys):
    monkeypatch.chdir(tmp_path)
    tinyllm_folder(tmp_path / "data")
    args = ["reproduce", "--data-root", str(tmp_path / "data"), "--datasets", "toy", "--methods", "kd,finetune",
            "--seeds", "0,1", "--valid-rows", "24", "--train-limit", "48", "--epochs", "2", "--no-progress",
            "--set", f"student.model={tiny_bert_dir}", "--set", "student.max_input_length=48",
            "--set", "train.lr=1e-2", "--set", "train.mixed_precision=no"]
    assert main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("todo ") == 4
    assert main(args) == 0
    root = tmp_path / "runs" / "reproduce" / "table1"
    report = (root / "report.md").read_text()
    assert "| Full fine-tuning | " in report and "| Standard KD‡ | " in report and " ± " in report
    assert "| majority class |" in report and "The paper (Table 1, 80M" in report
    assert "Collapse check" in report
    table = json.loads((root / "report.json").read_text())["table"]
    assert len(table["finetune"]["toy"]["test"]) == 2 and table["finetune"]["toy"]["std"] is not None
    assert not (root / "toy" / "kd" / "seed0" / "checkpoints").exists()  # pruned once done
    assert (root / "toy" / "finetune" / "seed0" / "best").is_dir()  # kept: KD distils it

    # an interrupted sweep: one cell lost its result; the rerun redoes that cell only
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("toy/*/seed*/summary.json")}
    lost = root / "toy" / "kd" / "seed1" / "summary.json"
    lost.unlink()
    assert main(args) == 0
    assert lost.is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != lost)

    # the same folder under other settings: refused in one line before anything trains, nothing overwritten
    assert main([*args[:-2], "--set", "train.mixed_precision=bf16"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml" in err and "--output-dir" in err and "Traceback" not in err
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != lost)


@pytest.mark.parametrize("suite, extra, expected", [
    ("ablations", [], {"tinyllm", "wo_llama", "wo_t5"}),
    ("fractions", ["--fractions", "0.5,1"], {f"{m}_{f}" for m in ("finetune", "step_by_step", "tinyllm")
                                             for f in ("0.5", "1")}),
    ("alpha", ["--alphas", "0.1,1"], {"a0.1_0.1", "a0.1_1", "a1_0.1", "a1_1"}),
    ("sizes", ["--layers", "1,2"], {"finetune_L1", "tinyllm_L1", "finetune_L2", "tinyllm_L2"}),
    ("table1", ["--methods", "finetune,step_by_step,tinyllm", "--weight-grid", "0.01,2"],
     {"finetune", "step_by_step", "step_by_step_w0.01", "step_by_step_w2", "tinyllm", "tinyllm_w0.01",
      "tinyllm_w2"}),
])
def test_every_suite_plans_its_variants(tmp_path, monkeypatch, capsys, suite, extra, expected):
    monkeypatch.chdir(tmp_path)
    tinyllm_folder(tmp_path / "data")
    assert main(["reproduce", "--suite", suite, "--data-root", str(tmp_path / "data"), "--datasets", "toy",
                 "--seeds", "0", "--valid-rows", "24", *extra, "--dry-run"]) == 0
    planned = {line.split("/")[2] for line in capsys.readouterr().out.splitlines() if line.startswith("todo")}
    assert planned == expected


@pytest.mark.slow
def test_ablation_and_fraction_cells_train_what_they_name(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tinyllm_folder(tmp_path / "data")
    common = ["--data-root", str(tmp_path / "data"), "--datasets", "toy", "--seeds", "0", "--valid-rows", "24",
              "--no-progress", "--set", f"student.model={tiny_bert_dir}", "--set", "student.max_input_length=48",
              "--set", "student.max_rationale_length=8", "--set", "train.mixed_precision=no"]
    assert main(["reproduce", "--suite", "ablations", *common]) == 0
    root = tmp_path / "runs" / "reproduce" / "ablations" / "toy"
    first = {v: json.loads((root / v / "seed0" / "rationale_stage" / "metrics.jsonl").read_text().splitlines()[0])
             for v in ("tinyllm", "wo_llama", "wo_t5")}  # TinyLLM learns the rationales first, then the answers
    assert not (root / "tinyllm" / "seed0" / "rationale_stage" / "checkpoints").exists()  # freed with the cell's
    assert "loss/rationale/llama2" in first["tinyllm"] and "loss/rationale/flan_t5" in first["tinyllm"]
    assert "loss/rationale/llama2" not in first["wo_llama"] and "loss/rationale/flan_t5" in first["wo_llama"]
    assert "loss/rationale/flan_t5" not in first["wo_t5"] and "loss/rationale/llama2" in first["wo_t5"]
    report = (root.parent / "report.md").read_text()
    assert "| w/o LLaMA |" in report and "not run (w/o teacher-forcing)" in report

    assert main(["reproduce", "--suite", "fractions", "--fractions", "0.25", *common]) == 0
    summary = json.loads((root.parents[0].parent / "fractions" / "toy" / "finetune_0.25" / "seed0" /
                          "summary.json").read_text())
    assert summary["n_train"] == 18  # a quarter of the 72 train rows left after the 24 held out
    fractions_root = tmp_path / "runs" / "reproduce" / "fractions"
    assert (fractions_root / "plots" / "fractions.png").read_bytes()[:4] == b"\x89PNG"
    assert "Figure 2" in (fractions_root / "report.html").read_text()


def test_alpha_heatmap_marks_cells_not_run_yet(tmp_path):
    from tinydistill.study.figures import plot_alpha
    from tinydistill.study.suites import alpha_variants

    variants = alpha_variants([0.1, 1.0])
    table = {variants[0].name: {"toy": {"mean": 40.0, "std": 1.0}}, variants[3].name: {"toy": {"mean": 55.0}}}
    out = plot_alpha(variants, ["toy"], table, tmp_path / "alpha.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and {v.coords["alpha_t5"] for v in variants} == {0.1, 1.0}


def test_weight_grid_cells_set_the_rationale_weights_and_valid_picks_the_rows(tmp_path):
    """A grid cell trains with its weight (TinyLLM: α of both teachers; Distill-step-by-step: λ, i.e.
    alpha_label = 1/(1+λ)); the 'weight on valid' row takes, per seed, the test accuracy of the cell best on
    valid — not the best test — and a tie keeps the recipe's weight; 'one weight per dataset' takes the weight best
    on valid averaged over the seeds."""
    from tinydistill.study.configs import base_config, config_for
    from tinydistill.study.selection import aggregate, select_on_valid, select_per_dataset
    from tinydistill.study.suites import Cell, table1_variants

    data = tinyllm_folder(tmp_path / "data")
    variants = {v.name: v for v in table1_variants(["step_by_step", "tinyllm"], [0.01])}
    root = tmp_path / "runs"

    def base_for(dataset: str, seed: int) -> dict:
        return base_config(data.parent, dataset, train_limit=None, valid_rows=24, epochs=1, output_dir=root,
                           seed=seed, overrides=[])

    cells = {(name, seed): Cell("table1", "toy", v, seed, root / "toy" / name / f"seed{seed}")
             for name, v in variants.items() for seed in (0, 1)}
    tiny = config_for(cells[("tinyllm_w0.01", 0)], base_for)
    assert [t.alpha_rationale for t in tiny.teachers] == [0.01, 0.01]
    assert config_for(cells[("step_by_step_w0.01", 0)], base_for).rationale_method.alpha_label == pytest.approx(
        1 / 1.01)
    assert [t.alpha_rationale for t in config_for(cells[("tinyllm", 0)], base_for).teachers] == [0.5, 0.5]

    scores = {("tinyllm", 0): (0.40, 0.60), ("tinyllm_w0.01", 0): (0.50, 0.30),  # valid picks w0.01: test 30
              ("tinyllm", 1): (0.50, 0.45), ("tinyllm_w0.01", 1): (0.50, 0.70)}  # tie: the recipe's, test 45
    for key, (valid, test) in scores.items():
        cells[key].run_dir.mkdir(parents=True)
        (cells[key].run_dir / "summary.json").write_text(json.dumps({
            "valid": {"rank_accuracy": valid}, "test": {"rank_accuracy": test, "majority_baseline": 0.25}}))
    done = [cells[k] for k in scores]
    table = aggregate(done)
    rows, choices = select_on_valid(done, table)
    assert [r.name for r in rows] == ["tinyllm_on_valid"]
    assert choices == {"tinyllm": {"toy": {0: "tinyllm_w0.01", 1: "tinyllm"}}}
    assert table["tinyllm_on_valid"]["toy"]["test"] == pytest.approx([30.0, 45.0])
    assert table["tinyllm_on_valid"]["toy"]["mean"] == pytest.approx(37.5)

    # one weight per dataset: w0.01's mean valid (50) beats the recipe's (45), so both of its seeds' tests count
    rows, choices = select_per_dataset(done, table)
    assert [r.name for r in rows] == ["tinyllm_per_dataset"]
    assert choices == {"tinyllm": {"toy": "tinyllm_w0.01"}}
    assert table["tinyllm_per_dataset"]["toy"]["test"] == pytest.approx([30.0, 70.0])
    # a weight with a seed still running: no choice for that dataset yet
    partial = [c for c in done if c is not cells[("tinyllm_w0.01", 1)]]
    assert select_per_dataset(partial, aggregate(partial))[1] == {"tinyllm": {}}


def test_a_cell_finished_before_a_setting_existed_still_counts_when_that_setting_holds_its_default(tmp_path):
    import yaml

    from tinydistill.config.loader import dump_config
    from tinydistill.study.configs import check_same_protocol
    from tinydistill.study.suites import Cell, table1_variants

    raw = choice_config(tmp_path / "model", tinyllm_folder(tmp_path / "data"), tmp_path / "runs")
    cfg = config_from_dict(raw)
    cell = Cell("table1", "toy", table1_variants(["finetune"])[0], 0, tmp_path / "cell")
    cell.run_dir.mkdir()
    older = yaml.safe_load(dump_config(cfg))
    del older["train"]["shard_optimizer_state"]  # as written by a version without the setting
    del older["data"]["test"]["encoding"]  # … also inside an optional section (`data.test: DataSource | None`)
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    check_same_protocol(cell, cfg)  # the default: the same protocol
    with pytest.raises(ConfigError, match="different settings"):
        check_same_protocol(cell, config_from_dict({**raw, "train": {**raw["train"],
                                                                     "shard_optimizer_state": True}}))
    older["train"]["lr"] = 0.5  # a setting both versions have, changed
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    with pytest.raises(ConfigError, match="different settings"):
        check_same_protocol(cell, cfg)


def test_a_sweep_folder_moved_elsewhere_keeps_its_finished_cells(tmp_path):
    """Only where the cells lie differs: they count; any real setting changed still refuses."""
    import yaml

    from tinydistill.config.loader import dump_config
    from tinydistill.study.configs import check_same_protocol
    from tinydistill.study.suites import Cell, table1_variants

    data = tinyllm_folder(tmp_path / "data")
    raw = choice_config(tmp_path / "model", data, tmp_path / "old-sweep")
    cell = Cell("table1", "toy", table1_variants(["finetune"])[0], 0, tmp_path / "new-sweep" / "cell")
    cell.run_dir.mkdir(parents=True)
    (cell.run_dir / "config.yaml").write_text(dump_config(config_from_dict(raw)))
    moved = config_from_dict({**raw, "output_dir": str(tmp_path / "new-sweep")})
    check_same_protocol(cell, moved)
    (tmp_path / "elsewhere").mkdir()  # the same data folder named from another directory counts as the same data
    relative = {**raw["data"], "train": {**raw["data"]["train"],
                                         "path": os.path.relpath(data, tmp_path / "elsewhere")}}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path / "elsewhere")
        check_same_protocol(cell, config_from_dict({**raw, "data": relative, "output_dir": "new-sweep"}))
    older = yaml.safe_load(dump_config(config_from_dict(raw)))
    older["seed"] = 5
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    with pytest.raises(ConfigError, match="different settings"):
        check_same_protocol(cell, moved)


def test_train_limit_per_dataset_subsamples_only_the_named_dataset(tmp_path, monkeypatch, capsys):
    """`--train-limit piqa=2000` style: the named dataset is subsampled, the others stay whole; a bad value is
    one line naming the flag."""
    from tinydistill.study.configs import base_config
    from tinydistill.study.suites import limit_for, parse_train_limit

    assert parse_train_limit(None) is None and parse_train_limit("500") == 500
    limits = parse_train_limit("toy=30, other=7")
    assert limits == {"toy": 30, "other": 7} and limit_for(limits, "toy") == 30 and limit_for(limits, "x") is None
    data = tmp_path / "data"
    tinyllm_folder(data, "toy")
    tinyllm_folder(data, "whole")
    for name, expected in (("toy", 30), ("whole", None)):
        raw = base_config(data, name, train_limit=limit_for(limits, name), valid_rows=24, epochs=1,
                          output_dir=tmp_path / "runs", seed=0, overrides=[])
        assert raw["data"]["train"]["limit"] == expected
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--suite", "fractions", "--fractions", "0.5", "--data-root", str(data),
                 "--datasets", "toy,whole", "--seeds", "0", "--valid-rows", "24", "--train-limit", "toy=30",
                 "--dry-run"]) == 0
    assert main(["reproduce", "--data-root", str(data), "--datasets", "toy", "--train-limit", "toy=lots",
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--train-limit" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["reproduce", "--data-root", str(data), "--datasets", "toy", "--train-limit", "tyo=30",
                 "--dry-run"]) == 2  # a misspelt dataset would silently train on the whole set
    err = capsys.readouterr().err
    assert "no dataset tyo under --data-root" in err and len(err.strip().splitlines()) == 1
    assert main(["reproduce", "--data-root", str(data), "--datasets", "toy,nope", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--datasets: no dataset nope under --data-root" in err and "there: toy, whole" in err
    # a dataset that exists but is not run this time is accepted: one recipe line split across processes
    assert main(["reproduce", "--data-root", str(data), "--datasets", "toy", "--train-limit", "whole=30",
                 "--set", "whole:train.epochs=3", "--dry-run"]) == 0


@pytest.mark.slow
def test_set_scoped_to_datasets_changes_only_their_cells_and_the_report_records_it(tmp_path, tiny_bert_dir,
                                                                                     monkeypatch, capsys):
    """`--set toy:train.epochs=2` trains toy's cells for two epochs and the other dataset's for the sweep's one;
    the protocol line and the recorded command carry the setting; a scope naming no dataset run is one line."""
    monkeypatch.chdir(tmp_path)
    for name in ("toy", "other"):
        tinyllm_folder(tmp_path / "data", name)
    args = ["reproduce", "--data-root", str(tmp_path / "data"), "--datasets", "toy,other", "--methods", "finetune",
            "--seeds", "0", "--valid-rows", "24", "--train-limit", "48", "--epochs", "1", "--no-progress",
            "--set", f"student.model={tiny_bert_dir}", "--set", "student.max_input_length=48",
            "--set", "train.mixed_precision=no", "--set", "toy:train.epochs=2"]
    assert main(args) == 0
    root = tmp_path / "runs" / "reproduce" / "table1"

    def valid_evals(dataset: str) -> int:
        lines = (root / dataset / "finetune" / "seed0" / "metrics.jsonl").read_text().splitlines()
        return sum(json.loads(line).get("split") == "valid" for line in lines)

    assert (valid_evals("toy"), valid_evals("other")) == (2, 1)
    meta = json.loads((root / "report.json").read_text())
    assert "`toy:train.epochs=2`" in meta["protocol"] and meta["command"].endswith("--set toy:train.epochs=2")
    assert main([*args[:-2], "--set", "tyo:train.epochs=2", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no dataset tyo under --data-root" in err and len(err.strip().splitlines()) == 1
    assert main([*args[:-2], "--set", ":train.epochs=2", "--dry-run"]) == 2
    assert "expected dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_takes_a_seq2seq_student_like_the_papers_and_its_report_names_it(tmp_path, tiny_t5_dir,
                                                                                    monkeypatch):
    """``--set student.model=google/flan-t5-small --set student.architecture=seq2seq``, with a tiny T5 here."""
    monkeypatch.chdir(tmp_path)
    tinyllm_folder(tmp_path / "data")
    assert main(["reproduce", "--data-root", str(tmp_path / "data"), "--datasets", "toy", "--methods",
                 "finetune,tinyllm", "--seeds", "0", "--valid-rows", "24", "--train-limit", "48", "--epochs", "2",
                 "--no-progress", "--set", f"student.model={tiny_t5_dir}", "--set", "student.architecture=seq2seq",
                 "--set", "student.max_input_length=48", "--set", "train.lr=1e-2",
                 "--set", "train.mixed_precision=no"]) == 0
    root = tmp_path / "runs" / "reproduce" / "table1"
    logged = [json.loads(line) for line in (root / "toy" / "tinyllm" / "seed0" / "metrics.jsonl").open()]
    steps = [m for m in logged if "loss/rationale/flan_t5" in m]
    for task in ("loss/answer", "loss/rationale/flan_t5", "loss/rationale/llama2"):
        assert steps[-1][task] < steps[0][task]  # the T5 student learns the answer and both teachers' rationales
    n_params = json.loads((root / "toy" / "finetune" / "seed0" / "summary.json").read_text())["n_params"]
    report = (root / "report.md").read_text()
    student = f"- Student: `{tiny_t5_dir}` ({n_params / 1e6:.1f}M parameters) with each choice ranked by the likelihood"
    assert student in report
    assert "all-MiniLM" not in report


def test_the_fast_suite_is_table1_on_three_datasets_with_1000_rows(tmp_path, monkeypatch, capsys):
    """``--suite fast``: obqa, arc and riddle, 1,000 training rows, FT / Distill-step-by-step / TinyLLM, 3 seeds,
    in its own folder; a flag given on the command line still wins."""
    monkeypatch.chdir(tmp_path)
    for name in ("obqa", "arc", "riddle"):
        tinyllm_folder(tmp_path / "data", name)
    assert main(["reproduce", "--suite", "fast", "--data-root", str(tmp_path / "data"), "--valid-rows", "24",
                 "--dry-run"]) == 0
    todo = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("todo")]
    cells = {tuple(key.split("/")[:4]) for key in todo}
    assert {c[0] for c in cells} == {"fast"} and {c[1] for c in cells} == {"obqa", "arc", "riddle"}
    assert {c[2] for c in cells} == {"finetune", "step_by_step", "tinyllm"} and len(todo) == 27
    args = argparse.Namespace(suite="fast", datasets=",".join(DATASETS), methods=",".join(TABLE1_METHODS),
                              train_limit=None)
    apply_fast_preset(args, {"datasets": ",".join(DATASETS), "methods": ",".join(TABLE1_METHODS)})
    assert (args.datasets, args.train_limit) == ("obqa,arc,riddle", "1000")
    assert main(["reproduce", "--suite", "fast", "--data-root", str(tmp_path / "data"), "--valid-rows", "24",
                 "--datasets", "obqa", "--methods", "finetune", "--seeds", "0", "--dry-run"]) == 0
    todo = [line for line in capsys.readouterr().out.splitlines() if line.startswith("todo")]
    assert len(todo) == 1
