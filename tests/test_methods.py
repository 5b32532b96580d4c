"""Baseline methods (LoRA, step-by-step, PINTO), student sizes and multi-stage runs on tiny models."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSeq2SeqLM

from tinydistill.config.loader import config_from_dict
from tinydistill.config.schema import StudentConfig
from tinydistill.data.splits import load_split
from tinydistill.errors import ConfigError
from tinydistill.methods.registry import build_method, with_rationales
from tinydistill.run import run
from tinydistill.students.registry import load_student, minilm_path
from tinydistill.students.sizes import evenly_spaced, keep_layers

from .conftest import run_config

QUIET = {"progress": False, "log": lambda *_: None}
FAST = {"train.max_steps": 3, "eval.modes": ["rank"]}


def _first_record(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])


def test_evenly_spaced_layers_follow_distilbert():
    assert evenly_spaced(6, 3) == [0, 2, 4]
    assert evenly_spaced(6, 2) == [0, 3]
    assert evenly_spaced(12, 6) == [0, 2, 4, 6, 8, 10]


def test_layer_subset_of_minilm_has_three_layers_copied_from_the_teacher():
    student = load_student(StudentConfig(num_layers=3))  # bert2bert: both sides cut
    enc, dec = student.model.encoder, student.model.decoder
    assert len(enc.encoder.layer) == 3 and len(dec.bert.encoder.layer) == 3
    assert student.model.config.encoder.num_hidden_layers == 3
    assert student.model.config.decoder.num_hidden_layers == 3
    full = AutoModel.from_pretrained(str(minilm_path()))
    for mine, theirs in zip(enc.encoder.layer, [full.encoder.layer[i] for i in (0, 2, 4)], strict=True):
        torch.testing.assert_close(mine.output.dense.weight, theirs.output.dense.weight)
    assert [m.layer_idx for m in dec.bert.encoder.layer if hasattr(m, "layer_idx")] in ([], [0, 1, 2])


def test_layer_subset_of_t5_both_sides_and_reload(tiny_t5_dir, tmp_path):
    from tinydistill.students.registry import save_student, saved_student_config

    cfg = StudentConfig(model=str(tiny_t5_dir), layers=(0,))
    student = load_student(cfg)
    assert len(student.model.encoder.block) == 1 and len(student.model.decoder.block) == 1
    save_student(student, tmp_path / "s")
    again = load_student(saved_student_config(cfg, tmp_path / "s"))
    assert again.model.config.num_layers == 1 and again.model.config.num_decoder_layers == 1
    with pytest.raises(Exception, match="layer 0"):
        keep_layers(load_student(StudentConfig(model=str(tiny_t5_dir))), layers=[1])


@pytest.mark.slow
def test_lora_trains_only_adapter_weights_and_saves_loadable_folders(tiny_t5_dir, synthetic_data, tmp_path):
    from tinydistill.students.lora import load_lora_student, save_lora_student

    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", method="lora",
                                      lora={"r": 4, "save": "adapter"}, **FAST))
    run(cfg, **QUIET)
    best = cfg.run_dir / "best"
    assert (best / "adapter_config.json").is_file()
    student = load_lora_student(cfg.student, best)
    original = load_file(tiny_t5_dir / "model.safetensors")
    state = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
             for k, v in student.model.state_dict().items()}
    lora_b = [v for k, v in state.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # the adapters trained (B starts at zero)
    for k, v in original.items():
        if k in state:
            torch.testing.assert_close(state[k], v, msg=k)  # every base weight is untouched
    trainable = [n for n, p in student.model.named_parameters() if p.requires_grad]
    assert trainable == [] or all("lora_" in n for n in trainable)
    # merged: plain transformers loads it and computes what the adapter model computes
    save_lora_student(student, tmp_path / "merged", "merged")
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.tensor([[101, 2054, 102]])
    student.model.eval()
    with torch.no_grad():
        a = student.model(input_ids=ids, decoder_input_ids=ids).logits
        b = merged(input_ids=ids, decoder_input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_step_by_step_mixes_label_and_rationale(tiny_t5_dir, synthetic_data, tmp_path):
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", method="step_by_step",
                                      rationale_method={"alpha_label": 0.3}, **FAST))
    run(cfg, **QUIET)
    assert {"loss/answer", "loss/rationale/synth"} <= _first_record(cfg.run_dir).keys()
    student = load_student(StudentConfig(model=str(tiny_t5_dir)))
    from tinydistill.run import build_teachers

    rows = load_split(cfg.data.train, "train", 0)
    plan = build_method(cfg, rows, build_teachers(cfg), student)
    assert plan.objective.task_weights == pytest.approx({"answer": 0.3, "rationale/synth": 0.7})


@pytest.mark.parametrize("stage_epochs", [0, 1])
def test_tinyllm_weights_each_teachers_rationale_loss_by_its_own_alpha(stage_epochs, tiny_t5_dir, synthetic_data,
                                                                      tmp_path):
    """The weights come from the terms one batch produces: 1 on the answer, α_m on teacher m's rationale; with a
    rationale stage, the same α_m in that stage and the answer alone after."""
    from tinydistill.losses import weighted_total
    from tinydistill.run import build_teachers
    from tinydistill.students.collate import MultiTaskCollator, tokenize_tasks

    second = tmp_path / "second.jsonl"
    second.write_text(synthetic_data["rationales"].read_text().replace("so the answer is", "hence"))
    teachers = [{"name": "first", "kind": "imported", "path": str(synthetic_data["rationales"]),
                 "alpha_rationale": 0.2},
                {"name": "second", "kind": "imported", "path": str(second), "alpha_rationale": 0.7}]
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", teachers=teachers,
                                      **{"train.rationale_stage_epochs": stage_epochs}))
    student = load_student(StudentConfig(model=str(tiny_t5_dir)))
    rows = load_split(cfg.data.train, "train", 0)[:6]
    plan = build_method(cfg, rows, build_teachers(cfg), student)

    def terms(tasks, objective):
        tokenised, _ = tokenize_tasks(student, rows, tasks, 64)
        out = objective.terms(student, MultiTaskCollator("seq2seq", student.pad_token_id)(tokenised))
        total = weighted_total(out)
        torch.testing.assert_close(total, sum(w * v for w, v in out.values()))
        assert all(v.item() > 0 for _, v in out.values())
        return {name: w for name, (w, _) in out.items()}

    alphas = {"rationale/first": 0.2, "rationale/second": 0.7}
    if stage_epochs:
        assert terms(plan.rationale_stage.tasks, plan.rationale_stage.objective) == alphas
        assert terms(plan.tasks, plan.objective) == {"answer": 1.0}
        assert plan.rationale_stage.epochs == 1 and plan.notes == [
            "rationale stage: 1 epoch(s) on rationale/first, rationale/second (weights 0.2, 0.7), "
            "then the answer stage"]
    else:
        assert plan.rationale_stage is None
        assert terms(plan.tasks, plan.objective) == {"answer": 1.0, **alphas}
    # unset, the stage's length depends on the student: one epoch for a masked-rationale head, none otherwise
    from types import SimpleNamespace

    from tinydistill.methods.registry import rationale_stage_epochs, staged

    unset = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "u", teachers=teachers))
    masked, plain = SimpleNamespace(model=SimpleNamespace(mlm_head=object())), SimpleNamespace(model=object())
    assert [rationale_stage_epochs(c, s) for c in (unset, cfg) for s in (masked, plain)] == [
        1.0, 0.0, stage_epochs, stage_epochs]
    tasks = plan.rationale_stage.tasks if stage_epochs else plan.tasks[1:]
    assert staged(unset, masked, tasks, alphas, plan).rationale_stage.epochs == 1.0
    assert staged(unset, plain, tasks, alphas, plan) is plan
    # unset, the plan asks the student: this T5 has no masked-rationale head, so the objective is the joint one
    joint = build_method(unset, rows, build_teachers(unset), student)
    assert joint.rationale_stage is None and terms(joint.tasks, joint.objective) == {"answer": 1.0, **alphas}


def test_rationale_tasks_carry_each_teachers_per_row_weights_and_prefix(tiny_t5_dir, synthetic_data, tmp_path):
    """A teacher with per-row rationale weights (the quality policy's 1 / downweight / 0) gives its task those
    weights, row by row; a teacher without them gives none; each task has its teacher's prefix and α."""
    from types import SimpleNamespace

    from tinydistill.methods.registry import gold_target, rationale_tasks

    teachers = [{"name": "first", "kind": "imported", "path": str(synthetic_data["rationales"]),
                 "alpha_rationale": 0.2, "prefix": "why: "},
                {"name": "second", "kind": "imported", "path": str(synthetic_data["rationales"])}]
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", teachers=teachers))
    rows = load_split(cfg.data.train, "train", 0)[:4]
    seen = []
    weighed = SimpleNamespace(rationales=lambda r: [f"first {ex.id}" for ex in r],
                              rationale_weights=lambda r: seen.append(list(r)) or [1.0, 0.25, 0.0, 0.5])
    plain = SimpleNamespace(rationales=lambda r: [f"second {ex.id}" for ex in r])
    tasks, weights = rationale_tasks(cfg, rows, {"first": weighed, "second": plain})
    assert seen == [rows] and weights == {"rationale/first": 0.2, "rationale/second": 1.0}  # α default 1
    assert [t.prefix for t in tasks] == ["why: ", cfg.teachers[1].student_prefix]
    assert [tasks[0].row_weight(i) for i in range(4)] == [1.0, 0.25, 0.0, 0.5] and tasks[1].row_weight is None
    assert [tasks[1].target(i, ex) for i, ex in enumerate(rows)] == [f"second {ex.id}" for ex in rows]
    # the answer target: the gold choice as styled; an open-answer row's first gold answer; none without gold
    assert gold_target(rows[0], "letter") == f"({'abcd'[rows[0].answer]})"
    open_row = SimpleNamespace(choices=(), answers=("Paris", "paris, france"))
    assert gold_target(open_row, "text") == "Paris"
    assert gold_target(SimpleNamespace(choices=(), answers=()), "text") is None
    assert gold_target(SimpleNamespace(choices=()), "text") is None  # a row type without open answers
    assert gold_target(SimpleNamespace(choices=("a", "b"), answer=None), "text") is None  # no gold: skipped


@pytest.mark.slow
def test_pinto_feeds_the_rationale_at_evaluation_and_says_so(tiny_t5_dir, synthetic_data, tmp_path):
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", method="pinto", **FAST))
    run(cfg, **QUIET)
    report = (cfg.run_dir / "report.md").read_text()
    assert "Method notes" in report and "at inference" in report


@pytest.mark.parametrize("stage_epochs", [0, 1])
def test_step_by_step_weighs_label_and_rationale_from_the_chosen_teacher(stage_epochs, tiny_t5_dir, synthetic_data,
                                                                         tmp_path):
    """``α·L_label + (1-α)·L_rationale`` read from the terms one batch produces, the rationale targets taken from
    ``rationale_method.teacher`` (here the second teacher, not the first); with a rationale stage, that teacher's
    rationales alone (weight 1) first and the labels after."""
    from tinydistill.run import build_teachers
    from tinydistill.students.collate import MultiTaskCollator, tokenize_tasks

    second = tmp_path / "second.jsonl"
    second.write_text(synthetic_data["rationales"].read_text().replace("so the answer is", "hence"))
    teachers = [{"name": "first", "kind": "imported", "path": str(synthetic_data["rationales"])},
                {"name": "second", "kind": "imported", "path": str(second), "prefix": "explain: "}]
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", method="step_by_step",
                                      teachers=teachers, rationale_method={"alpha_label": 0.3, "teacher": "second"},
                                      **{"train.rationale_stage_epochs": stage_epochs}))
    student = load_student(StudentConfig(model=str(tiny_t5_dir)))
    rows = load_split(cfg.data.train, "train", 0)[:4]
    plan = build_method(cfg, rows, build_teachers(cfg), student)
    stated = [json.loads(line)["rationale"] for line in second.read_text().splitlines()]
    by_id = {json.loads(line)["id"]: r for line, r in zip(second.read_text().splitlines(), stated, strict=True)}

    def terms(tasks, objective):
        tokenised, _ = tokenize_tasks(student, rows, tasks, 64)
        out = objective.terms(student, MultiTaskCollator("seq2seq", student.pad_token_id)(tokenised))
        assert all(v.item() > 0 for _, v in out.values())
        return {name: w for name, (w, _) in out.items()}

    answer = plan.tasks[0]  # the gold choice in the configured style ("text" here), after the answer prefix
    assert answer.name == "answer" and answer.prefix == cfg.answer_prefix
    assert [answer.target(i, ex) for i, ex in enumerate(rows)] == [ex.choices[ex.answer] for ex in rows]
    rationale = (plan.rationale_stage.tasks if stage_epochs else plan.tasks)[-1]
    assert rationale.name == "rationale/second" and rationale.prefix == "explain: "
    assert [rationale.target(i, ex) for i, ex in enumerate(rows)] == [by_id[ex.id] for ex in rows]
    assert all("hence" in rationale.target(i, ex) for i, ex in enumerate(rows))
    if stage_epochs:
        assert terms(plan.rationale_stage.tasks, plan.rationale_stage.objective) == {"rationale/second": 1.0}
        assert terms(plan.tasks, plan.objective) == {"answer": 1.0}
        assert plan.rationale_stage.epochs == 1
    else:
        assert plan.rationale_stage is None
        assert terms(plan.tasks, plan.objective) == pytest.approx({"answer": 0.3, "rationale/second": 0.7})
    # unset, the plan asks the student: this T5 has no masked-rationale head, so the objective is the joint one
    unset = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "u", method="step_by_step",
                                        teachers=teachers, rationale_method={"alpha_label": 0.3}))
    joint = build_method(unset, rows, build_teachers(unset), student)
    assert joint.rationale_stage is None and [t.name for t in joint.tasks] == ["answer", "rationale/first"]


@pytest.mark.parametrize("strip", [True, False])
def test_pinto_puts_the_teachers_rationale_in_the_input_of_train_and_eval_rows(strip, tiny_t5_dir, synthetic_data,
                                                                                tmp_path):
    """Each row's question gains ``prefix`` + its rationale (cut before the stated answer unless told not to); a
    row without a rationale is left as it is; the same rewrite applies to evaluation rows; only the answer is
    trained."""
    from tinydistill.run import build_teachers

    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", method="pinto",
                                      rationale_method={"rationale_prefix": "why: ", "strip_stated_answer": strip}))
    student = load_student(StudentConfig(model=str(tiny_t5_dir)))
    rows = load_split(cfg.data.train, "train", 0)[:3]
    plan = build_method(cfg, rows, build_teachers(cfg), student)
    for ex, got in zip(rows, plan.rows, strict=True):
        animal = ex.question.split()[-1].rstrip("?")
        gold = ex.choices[ex.answer]
        said = f"a {animal} likes {gold}," + ("" if strip else f" so the answer is {gold}.")
        assert got.question == f"{ex.question}\nwhy: {said}"
        assert got.choices == ex.choices and got.answer == ex.answer
    assert [t.name for t in plan.tasks] == ["answer"] and plan.objective.task_weights == {"answer": 1.0}
    assert [r.question for r in plan.eval_rows(rows)] == [r.question for r in plan.rows]
    assert "teacher `synth`'s rationale" in plan.notes[0]
    out = with_rationales(rows[:2], ["because milk", None], "rationale: ")
    assert out[0].question == f"{rows[0].question}\nrationale: because milk" and out[1] == rows[1]
    with pytest.raises(ValueError):
        with_rationales(rows[:2], ["one"], "rationale: ")


def test_step_by_step_needs_a_teacher(tiny_t5_dir, synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match="rationale teacher"):
        config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", method="step_by_step",
                                    teachers=[]))


@pytest.mark.slow
def test_two_stages_the_second_starting_from_the_firsts_best(tiny_t5_dir, synthetic_data, tmp_path):
    stages = [{"label": "wino", "method": "finetune", "set": {"train.max_steps": 2}},
              {"label": "siqa", "method": "inference"}]
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r", stages=stages,
                                      **{"eval.modes": ["rank"]}))
    run(cfg, **QUIET)
    first, second = cfg.run_dir / "stage-1-wino", cfg.run_dir / "stage-2-siqa"
    assert (first / "best" / "config.json").is_file() and (second / "report.md").is_file()
    assert str(first / "best") in (second / "config.yaml").read_text()
    a, b = load_file(first / "best" / "model.safetensors"), load_file(second / "best" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert len(json.loads((cfg.run_dir / "stages.json").read_text())) == 2


def test_stage_errors_name_the_stage(tiny_t5_dir, synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match=r"stages\.0 \(a\)"):
        config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "r",
                                    stages=[{"label": "a", "set": {"train.lr": -1}}]))
