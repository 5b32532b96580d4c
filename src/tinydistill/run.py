"""One run, end to end: data → teachers → student → train (select on valid) → evaluate → report.

Everything lands in ``runs/<name>/``; running the same config again resumes and redoes nothing finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import torch

from .config import (
    BEST_DIR,
    RunConfig,
    StudentConfig,
    autocast_dtype,
    check_paths,
    dump_config,
    effective_precision,
    load_config,
    stage_configs,
)
from .data import Example, dataset_label, load_examples, load_split, load_train_valid, split_of_file
from .errors import ConfigError
from .evaluation import (
    EvalResult,
    RunOutcome,
    evaluate_open,
    evaluate_student,
    evaluate_teacher,
    write_run_extras,
    write_run_report,
)
from .files import write_json_atomic
from .methods import build_method
from .students import (
    ANSWER_TASK,
    Student,
    is_onnx_export,
    load_lora_student,
    load_onnx_student,
    load_student,
    read_export_meta,
    save_student,
    saved_student_config,
    tokenize_tasks,
)
from .teachers import Teacher, build_teacher
from .training import (
    RATIONALE_STAGE,
    Selection,
    TrackedStage,
    TrackerRun,
    is_main_process,
    main_process_first,
    newest_state,
    run_config,
    share_from_main,
    train,
)

#: A run's rationale-only first stage (its checkpoints and metrics.jsonl) lives in this subfolder.
RATIONALE_STAGE_DIR = RATIONALE_STAGE



def _write_predictions(path: Path, result: EvalResult) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in result.predictions:
            f.write(json.dumps(row) + "\n")


def build_teachers(cfg: RunConfig, icl_pool: Sequence[Example] = ()) -> dict[str, Teacher]:
    """Every configured teacher behind the one Teacher interface; live ones share ``run_dir/cache.sqlite``."""
    cache = cfg.run_dir / "cache.sqlite"
    return {spec.name: build_teacher(spec, cache_path=cache, icl_pool=icl_pool) for spec in cfg.teachers}


def _prepare_run_dir(cfg: RunConfig) -> Path:
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = dump_config(cfg)
    path = run_dir / "config.yaml"
    if path.exists() and path.read_text() != resolved and (run_dir / "checkpoints").exists():
        raise ConfigError(f"{path}: this run folder was made with a different config; "
                          f"choose another name (--set name=...) or delete the folder")
    if not path.exists() or path.read_text() != resolved:  # unchanged: not rewritten (parallel processes read it)
        path.write_text(resolved)
    return run_dir


def _tokenise(cfg: RunConfig, student: Student, examples: Sequence[Example], tasks, log) -> tuple[list, dict]:
    """Tokenise ``tasks`` for ``examples``; log every truncation and every task's skipped rows."""
    rows, trunc = tokenize_tasks(student, examples, tasks, cfg.student.max_input_length, cfg.student.prefix_side,
                                 mask_ratio=cfg.student.rationale_mask_ratio, mask_seed=cfg.seed)
    truncation = trunc.as_dict()
    if trunc.sources:
        log(f"[{cfg.name}] {trunc.sources} of {len(examples)} training inputs exceeded "
            f"max_input_length={cfg.student.max_input_length}: {trunc.source_tokens_dropped} question tokens "
            f"dropped from their start (prefix and choices kept)")
    for task, n in trunc.targets.items():
        log(f"[{cfg.name}] {n} '{task}' targets cut to their max length")
    skipped = {t.name: sum(t.name not in r for r in rows) for t in tasks if t.name != ANSWER_TASK}
    for task, n in skipped.items():
        if n:
            log(f"[{cfg.name}] {task}: {n} rows have no usable rationale and are skipped for that task")
    truncation["rows_without_task"] = skipped
    return rows, truncation


def _student_after_rationale_stage(cfg: RunConfig, student: Student, folder: Path) -> Student:
    """The answer stage's student: the rationale stage's weights, saved by the main process and loaded by every
    process as a plain model (under FSDP only the main process holds a full copy after a stage); the rationale
    head stays behind. Weights still at their initialisation (the choice head) keep their learning-rate scale."""
    fresh = student.new_param_names
    share_from_main(lambda: save_student(student, folder))
    reloaded = load_student(saved_student_config(cfg.student, folder))
    reloaded.new_param_names = frozenset(n for n in fresh if not n.startswith("mlm_head."))
    return reloaded


def evaluate_on(student: Student, cfg: RunConfig, examples: Sequence[Example],
                modes: Sequence[str] | None = None, progress: bool = False) -> EvalResult:
    if cfg.data.task == "open":  # no choices: generate, then exact match / token F1
        return evaluate_open(student, examples, prefix=cfg.answer_prefix,
                             max_input_length=cfg.student.max_input_length, max_new_tokens=cfg.eval.max_new_tokens,
                             batch_size=cfg.eval.batch_size, progress=progress,
                             prefix_side=cfg.student.prefix_side)
    return evaluate_student(
        student, examples, prefix=cfg.answer_prefix, max_input_length=cfg.student.max_input_length,
        answer_style=cfg.student.answer_target, max_answer_length=cfg.student.max_answer_length,
        modes=modes or cfg.eval.modes, batch_size=cfg.eval.batch_size, reduction=cfg.eval.rank_reduction,
        max_new_tokens=cfg.eval.max_new_tokens, autocast_dtype=autocast_dtype(cfg.train.mixed_precision),
        progress=progress,
        rationale_prefix=cfg.teachers[0].student_prefix if cfg.teachers else None,
        prefix_side=cfg.student.prefix_side,
    )


def run(cfg: RunConfig, *, progress: bool = True, stop_after_steps: int | None = None,
        log=print, on_valid: Callable[[int, dict], None] | None = None) -> RunOutcome:
    """Train (unless ``method: inference``), select on valid, then evaluate the best student on valid.

    ``on_valid(step, metrics)`` is called after each in-training valid evaluation (e.g. a search's pruner; it
    may raise to stop the run). Not passed to the stages of a multi-stage config.

    A config with ``stages`` runs each stage in turn (:func:`run_stages`) and returns the last.
    """
    check_paths(cfg)  # every path the config names, before anything is loaded
    if cfg.stages:
        return run_stages(cfg, progress=progress, stop_after_steps=stop_after_steps, log=log)[-1]
    run_dir = _prepare_run_dir(cfg)
    tracker = _open_trackers(cfg, run_dir)  # before the data: a tracker that cannot start stops the run now
    try:
        return _run(cfg, run_dir, tracker, progress=progress, stop_after_steps=stop_after_steps, log=log,
                    on_valid=on_valid)
    finally:
        tracker.finish()


def _open_trackers(cfg: RunConfig, run_dir: Path) -> TrackerRun:
    """The run's trackers (``train.report_to``): one tracker run for all its stages, resumed at the global step
    its checkpoints reach; none for a run that trains nothing or has finished."""
    answer = newest_state(run_dir / "checkpoints")
    if cfg.method == "inference" or not cfg.train.report_to or (answer is not None and answer.completed):
        return TrackerRun([])
    stage = newest_state(run_dir / RATIONALE_STAGE_DIR / "checkpoints")
    resume = (stage.step if stage else 0) + (answer.step if answer else 0)
    return TrackerRun.open(cfg.train.report_to, run_dir, cfg.name, run_config(run_dir, {}), resume)


def _run(cfg: RunConfig, run_dir: Path, tracker: TrackerRun, *, progress: bool, stop_after_steps: int | None,
         log, on_valid: Callable[[int, dict], None] | None) -> RunOutcome:
    log = log if is_main_process() else (lambda *_: None)
    torch.manual_seed(cfg.seed)
    train_rows, valid_rows = load_train_valid(cfg)
    teachers = build_teachers(cfg, icl_pool=train_rows)
    student = load_student(cfg.student, with_rationale_head=cfg.trains_rationales())
    log(f"[{cfg.name}] method={cfg.method} student={cfg.student.model} "
        f"({student.num_parameters() / 1e6:.1f}M params, {student.kind}) train={len(train_rows)} "
        f"valid={len(valid_rows)} teachers={[t.name for t in cfg.active_teachers()]}")

    plan = build_method(cfg, train_rows, teachers, student)
    for note in plan.notes:
        log(f"[{cfg.name}] {note}")
    eval_rows = plan.eval_rows or list  # PINTO: evaluation inputs carry the teacher's rationale too
    valid_rows = eval_rows(valid_rows)
    rows, truncation = _tokenise(cfg, student, plan.rows or train_rows, plan.tasks, log)
    stage_rows = None
    if plan.rationale_stage is not None:  # rationale-only training first (multiple-choice students by default)
        stage_rows, stage_truncation = _tokenise(cfg, student, train_rows, plan.rationale_stage.tasks, log)
        truncation["targets_truncated"].update(stage_truncation["targets_truncated"])
        truncation["rows_without_task"].update(stage_truncation["rows_without_task"])

    best_dir = run_dir / BEST_DIR
    train_seconds = 0.0
    scored: dict[str, tuple[EvalResult, float]] = {}  # "last" / "best" selection evals and their seconds
    if plan.trains:
        valid_sel = valid_rows[: cfg.eval.valid_limit] if cfg.eval.valid_limit else valid_rows
        sel_mode = "generate" if cfg.train.select_metric == "generate_accuracy" else "rank"

        # the selection eval of the best student is the final eval's twin when it scores the same rows in the
        # same modes and best/ reloads as the same plain model: kept, so valid is not scored twice
        twin = (valid_sel is valid_rows and tuple(cfg.eval.modes) == (sel_mode,) and cfg.data.task != "open"
                and plan.save is None and plan.load_best is None)

        def valid_fn(s: Student) -> dict:
            started = time.perf_counter()
            scored["last"] = evaluate_on(s, cfg, valid_sel, modes=(sel_mode,)), time.perf_counter() - started
            return scored["last"][0].metrics

        def on_best(s: Student) -> None:
            (plan.save or save_student)(s, best_dir)
            if twin:
                scored["best"] = scored["last"]

        if plan.prepare is not None:  # e.g. teacher signals computed once and cached
            prepare = plan.prepare
            main_process_first(lambda: prepare(rows))
        if plan.rationale_stage is not None and stage_rows is not None:
            stage = plan.rationale_stage
            stage_cfg = cfg.train.model_copy(update={"epochs": stage.epochs, "max_steps": None, "eval_every": 0,
                                                     "early_stopping_patience": 0,
                                                     "lr": cfg.train.rationale_stage_lr or cfg.train.lr})
            (run_dir / RATIONALE_STAGE_DIR).mkdir(exist_ok=True)
            first = train(student, stage_rows, stage.objective, stage_cfg, seed=cfg.seed,
                          run_dir=run_dir / RATIONALE_STAGE_DIR, stop_after_steps=stop_after_steps, progress=progress,
                          tracked=TrackedStage(tracker, prefix=RATIONALE_STAGE))
            train_seconds += first.seconds
            if not first.state.completed:
                raise KeyboardInterrupt(f"stopped after step {first.state.step} of the rationale stage")
            student = _student_after_rationale_stage(cfg, student, run_dir / RATIONALE_STAGE_DIR / "student")
            log(f"[{cfg.name}] answer stage")
        select = Selection(valid_fn, on_best=on_best, on_eval=on_valid)
        offset = first.state.step if plan.rationale_stage is not None and stage_rows is not None else 0
        result = train(student, rows, plan.objective, cfg.train, seed=cfg.seed, run_dir=run_dir, select=select,
                       stop_after_steps=stop_after_steps, progress=progress,
                       tracked=TrackedStage(tracker, offset=offset))  # its steps continue after the stage's
        train_seconds += result.seconds
        if not result.state.completed:
            raise KeyboardInterrupt(f"stopped after step {result.state.step}")
        if best_dir.exists():
            student = (plan.load_best(best_dir) if plan.load_best
                       else load_student(saved_student_config(cfg.student, best_dir)))
    elif is_main_process():
        save_student(student, best_dir)
    if not is_main_process():  # the main process evaluates and reports; the others receive its outcome
        return cast(RunOutcome, share_from_main(lambda: None))  # the main process's broadcast below

    if "best" in scored:  # this process trained the best student and already scored it on all of valid
        valid, eval_seconds = scored["best"]
    else:
        started = time.perf_counter()
        valid = evaluate_on(student, cfg, valid_rows, progress=progress)
        eval_seconds = time.perf_counter() - started
    teacher_metrics = {name: evaluate_teacher(t, valid_rows) for name, t in teachers.items()}
    _write_predictions(run_dir / "predictions.jsonl", valid)
    test, test_teachers = None, {}
    if cfg.data.test is not None:  # the selected student, scored on test once; nothing was chosen on it
        test_rows = eval_rows(load_split(cfg.data.test, "test", cfg.seed, cfg.data.task))
        test = evaluate_on(student, cfg, test_rows, progress=progress)
        test_teachers = {name: evaluate_teacher(t, test_rows) for name, t in teachers.items()}
        _write_predictions(run_dir / "test_predictions.jsonl", test)
        log(f"[{cfg.name}] test ({test.metrics['n']} rows): " + ", ".join(
            f"{k} {100 * v:.1f}" for k, v in test.metrics.items() if k.endswith("accuracy")))
    outcome = RunOutcome(cfg, valid, teacher_metrics, train_seconds, eval_seconds, truncation,
                         len(train_rows), student.num_parameters(), test, test_teachers)
    write_run_report(run_dir, outcome)
    if plan.notes:  # what the method needs and did (PINTO: a teacher at inference) goes into the report
        with open(run_dir / "report.md", "a", encoding="utf-8") as f:
            f.write("\n## Method notes\n\n" + "".join(f"- {n}\n" for n in plan.notes))
    summary = {"valid": valid.metrics, "teachers": teacher_metrics, "train_seconds": train_seconds,
               "eval_seconds": eval_seconds, "n_train": len(train_rows), "n_params": student.num_parameters(),
               "method_notes": plan.notes, "precision": effective_precision(cfg.train.mixed_precision)}
    if test is not None:
        summary.update(test=test.metrics, test_teachers=test_teachers)
    write_json_atomic(run_dir / "summary.json", summary)
    write_run_extras(run_dir, valid.predictions, valid_rows, teachers, log=log,  # analysis, report.html, card
                     dataset=dataset_label(cfg.data.valid.path if cfg.data.valid else cfg.data.train.path))
    return share_from_main(lambda: outcome)


def _check_eval_out(out: Path) -> None:
    """``eval --out`` is a folder of its own: not a file, and not a run, model or export folder, whose own
    ``predictions.jsonl`` / ``metrics.json`` it would replace. Checked before anything is loaded."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out names a folder (for metrics.json and predictions.jsonl)")
    for marker in ("config.yaml", "config.json"):
        if (out / marker).is_file():
            raise ConfigError(f"{out}: a run or model folder ({marker}); its files would be replaced: choose "
                              "another --out (e.g. eval-test)")


def evaluate_run(run_dir: str | Path, data: str | Path, *, split: str | None = None, fmt: str = "auto",
                 out: str | Path, modes: Sequence[str] | None = None, progress: bool = True) -> EvalResult:
    """Score a run's best student (or a saved student folder) on any supported data; write metrics/predictions.

    ``split`` names what was scored (and picks it in a folder or hub dataset, default ``valid``); for a file it
    defaults to the split its name names (``test.jsonl`` → ``test``)."""
    run_dir = Path(run_dir)
    _check_eval_out(Path(out))
    onnx = is_onnx_export(run_dir)
    if onnx:  # an exported student (tinydistill export), run by ONNX Runtime
        meta = read_export_meta(run_dir)
        cfg = RunConfig.model_validate({"data": {"train": {"path": str(data)}, "valid": {"path": str(data)}},
                                        "answer_prefix": meta.get("answer_prefix", "answer: "),
                                        "student": {"max_input_length": meta.get("max_input_length", 256)},
                                        "eval": {"modes": ["rank"]}})
        model_dir = run_dir
    elif (run_dir / "config.yaml").is_file():
        cfg = load_config(run_dir / "config.yaml")
        model_dir = run_dir / BEST_DIR
        if not model_dir.is_dir():
            raise ConfigError(f"{run_dir}: no '{BEST_DIR}/' student yet; train the run first")
    elif (run_dir / "config.json").is_file():  # a bare saved student
        cfg = RunConfig.model_validate({"data": {"train": {"path": str(data)}, "valid": {"path": str(data)}}})
        model_dir = run_dir
    else:
        raise ConfigError(f"{run_dir}: neither a run folder (config.yaml) nor a saved model (config.json)")
    if split is None:
        split = "valid" if fmt in ("hf", "tinyllm") or Path(data).is_dir() else split_of_file(data)
    examples = load_examples(data, split, fmt=fmt, task=cfg.data.task)
    student: Student
    if onnx:
        student = load_onnx_student(run_dir)
    elif (model_dir / "adapter_config.json").is_file():  # a LoRA run saved as an adapter
        student = load_lora_student(StudentConfig(**cfg.student.model_dump()), model_dir)
    else:
        student = load_student(saved_student_config(StudentConfig(**cfg.student.model_dump()), model_dir))
    result = evaluate_on(student, cfg, examples, modes=modes, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", {"data": str(data), "split": split, "model": str(model_dir),
                                             **result.metrics})
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in result.predictions:
            f.write(json.dumps(row) + "\n")
    m = result.metrics
    parts = [f"{k.replace('_accuracy', '')} accuracy {100 * m[k]:.1f}%" for k in ("rank_accuracy",
                                                                             "generate_accuracy") if k in m]
    print(f"{data} ({split}, {m['n']} rows): " + ", ".join(parts) +
          f"; majority baseline {100 * m['majority_baseline']:.1f}%; wrote {out}/metrics.json, predictions.jsonl")
    return result


def run_stages(cfg: RunConfig, *, progress: bool = True, stop_after_steps: int | None = None,
               log=print) -> list[RunOutcome]:
    """Run every stage in order (each resumes on its own); write ``runs/<name>/stages.json``."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg))
    outcomes, summary = [], []
    for k, stage_cfg in enumerate(stage_configs(cfg), start=1):
        log(f"[{cfg.name}] stage {k}/{len(cfg.stages)}: {stage_cfg.name} (method {stage_cfg.method}, "
            f"from {stage_cfg.student.model})")
        outcome = run(stage_cfg, progress=progress, stop_after_steps=stop_after_steps, log=log)
        outcomes.append(outcome)
        summary.append({"stage": stage_cfg.name, "method": stage_cfg.method, "student": stage_cfg.student.model,
                        "valid": {k2: v for k2, v in outcome.valid.metrics.items() if isinstance(v, int | float)}})
        write_json_atomic(cfg.run_dir / "stages.json", summary)
    return outcomes
