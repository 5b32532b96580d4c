"""Running a sweep: check it, run every unfinished cell (a failing one is recorded and skipped), report."""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, TinyDistillError
from ..evaluation import console
from ..files import write_json_atomic
from ..run import RATIONALE_STAGE_DIR, run
from .configs import (
    base_config,
    check_override_scopes,
    check_same_protocol,
    config_for,
    overrides_for,
    require_datasets,
)
from .paper import METHOD_LABELS, TABLE1_METHODS
from .reports import describe_overrides, describe_student, describe_train_limit, write_reports
from .suites import ABLATIONS_NEEDING_TEACHERS, SCALING_METHODS, Cell, Sweep, cell_done, limit_for, plan_cells


def run_cells(cells: Sequence[Cell], base_for: Callable[[str, int], dict], *, progress: bool,
              log: Callable[[str], None], keep_models: bool = False) -> dict[str, dict]:
    """Run every cell not yet done; a failing cell is recorded in ``error.txt`` and the sweep goes on.

    Unless ``keep_models``, a finished cell keeps its reports and predictions but not its checkpoints or model
    (a fine-tuned model stays: Standard KD distils it)."""
    results: dict[str, dict] = {}
    for cell in cells:  # before any training: a finished cell from another protocol must not be mixed in
        if cell_done(cell) is not None:
            check_same_protocol(cell, config_for(cell, base_for))
    for i, cell in enumerate(cells, 1):
        done = cell_done(cell)
        if done is not None:
            results[cell.key] = done
            continue
        console.rule(f"[bold]{i}/{len(cells)} {cell.key}")
        try:
            run(config_for(cell, base_for), progress=progress, log=log)
        except TinyDistillError as e:
            cell.run_dir.mkdir(parents=True, exist_ok=True)
            (cell.run_dir / "error.txt").write_text(f"{e}\n")
            log(f"[{cell.key}] failed: {e}")
            continue
        except Exception as e:  # noqa: BLE001 — one broken cell must not cost the sweep; keep the trace
            cell.run_dir.mkdir(parents=True, exist_ok=True)
            (cell.run_dir / "error.txt").write_text(traceback.format_exc())
            log(f"[{cell.key}] failed: {type(e).__name__}: {e} (trace in {cell.run_dir / 'error.txt'})")
            continue
        results[cell.key] = cell_done(cell) or {}
        if not keep_models:
            prune_cell(cell)
    return results


def prune_cell(cell: Cell) -> None:
    """Free a finished cell's disk: its checkpoints, and its model unless a later cell distils it (finetune)."""
    shutil.rmtree(cell.run_dir / "checkpoints", ignore_errors=True)
    for part in ("checkpoints", "student"):  # a rationale stage's (its metrics.jsonl stays)
        shutil.rmtree(cell.run_dir / RATIONALE_STAGE_DIR / part, ignore_errors=True)
    if cell.variant.method != "finetune":
        shutil.rmtree(cell.run_dir / "best", ignore_errors=True)


def check_sweep(sweep: Sweep) -> None:
    """Names that match nothing are one-line errors; Standard KD is moved after the fine-tuning it distils."""
    require_datasets("--datasets", sweep.datasets, sweep.data_root)
    if isinstance(sweep.train_limit, dict):
        require_datasets("--train-limit", sweep.train_limit, sweep.data_root)
    check_override_scopes(sweep.overrides, sweep.data_root)
    if sweep.suite == "scaling":
        unknown = [m for m in sweep.methods if m not in SCALING_METHODS]
        if unknown:
            raise ConfigError(f"--methods: unknown scaling method {unknown[0]!r} (one of {', '.join(SCALING_METHODS)})")
        if not sweep.layers or any(n < 1 for n in sweep.layers):
            raise ConfigError("--layers: give positive student layer counts, e.g. 2,3")
        return
    for m in sweep.methods:
        if m not in METHOD_LABELS:
            raise ConfigError(f"--methods: unknown method {m!r} (one of {', '.join(TABLE1_METHODS)})")
    methods = sweep.methods
    if "kd" in methods and "finetune" in methods and methods.index("kd") < methods.index("finetune"):
        methods.remove("kd")
        methods.insert(methods.index("finetune") + 1, "kd")


def write_scaling(root: Path, sweep: Sweep, cells: Sequence[Cell], variants: Sequence[Any],
                  base_for: Callable[[str, int], dict]) -> str:
    """The scaling suite's sizes section (speed measured now), appended to ``report.md``; ``scaling.json``."""
    from .figures import plot_scaling
    from .scaling import scaling_section
    from .selection import aggregate

    section, record = scaling_section(cells, variants, sweep.datasets, aggregate(cells), sweep.data_root, base_for,
                                      plot_scaling, root / "plots")
    with (root / "report.md").open("a") as f:
        f.write(section + "\n")
    write_json_atomic(root / "scaling.json", record)
    return section


def sweep_base(sweep: Sweep) -> Callable[[str, int], dict]:
    """``base_for(dataset, seed)``: the raw config every cell of that dataset and seed starts from."""

    def base_for(dataset: str, seed: int) -> dict:
        return base_config(sweep.data_root, dataset, train_limit=limit_for(sweep.train_limit, dataset),
                           valid_rows=sweep.valid_rows, epochs=sweep.epochs, output_dir=sweep.root, seed=seed,
                           overrides=overrides_for(sweep.overrides, dataset))

    return base_for


def sweep_command(sweep: Sweep) -> str:
    """The ``tinydistill reproduce`` command line that makes this sweep (recorded in the report)."""

    def flag_value(v: Any) -> str:
        if isinstance(v, dict):
            return ",".join(f"{k}={n}" for k, n in v.items())
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    command = "tinydistill reproduce " + " ".join(
        f"--{k.replace('_', '-')} {flag_value(v)}"
        for k, v in vars(sweep).items() if k in ("suite", "datasets", "methods", "seeds", "train_limit", "epochs",
                                                "valid_rows", "weight_grid") and v not in (None, []))
    if sweep.suite in ("sizes", "scaling"):
        command += f" --layers {flag_value(sweep.layers)}"
    return command + "".join(f" --set {o}" for o in sweep.overrides)


def reproduce(sweep: Sweep, *, dry_run: bool = False, report_only: bool = False, keep_models: bool = False,
              progress: bool = True) -> int:
    """Run the sweep's unfinished cells (none with ``report_only``; with ``dry_run`` only list them), then write
    ``report.md``, ``report.json``, ``report.html`` and the plots under ``<output_dir>/<suite>/``."""
    check_sweep(sweep)
    cells = plan_cells(sweep)
    root = sweep.root
    variants = list({c.variant.name: c.variant for c in cells}.values())
    if dry_run:
        for c in cells:
            console.print(f"{'done ' if cell_done(c) else 'todo '} {c.key}", markup=False)
        return 0
    base_for = sweep_base(sweep)
    started = time.perf_counter()
    if not report_only:
        run_cells(cells, base_for, progress=progress, keep_models=keep_models,
                  log=lambda m: console.print(m, markup=False, highlight=False))
    notes = [f"- test = each dataset's shipped `valid` split ({', '.join(sweep.datasets)}); the benchmarks' own test "
             f"splits are held back. Selection: {sweep.valid_rows} rows held out of train (one fixed split for all "
             f"methods and seeds); test scored once per cell.",
             describe_student(base_for(sweep.datasets[0], sweep.seeds[0])["student"], cells),
             "- ‡ Standard KD distils the fine-tuned student of the same seed (born-again KD): no larger "
             "multiple-choice teacher ships offline.",
             "- † PINTO reads FLAN-T5's rationale (its answer statement cut) at test time; those rationales were "
             "written with the gold answer in the prompt, so they leak it and PINTO's figure here is an upper "
             "bound, not comparable with the other rows."]
    if sweep.suite == "ablations":
        notes += [f"- not run ({name}): needs {why}" for name, why in ABLATIONS_NEEDING_TEACHERS.items()]
    protocol = (f"Seeds {sweep.seeds}; train limit {describe_train_limit(sweep.train_limit)}; "
                f"{sweep.epochs:g} epoch(s){describe_overrides(sweep.overrides)}; mean ± std of test accuracy (%) "
                f"over seeds.")
    if sweep.suite == "scaling":
        del notes[3]  # PINTO is not in this suite
        notes[2] = ("- Every student but fine-tuning distils the teacher: the full-size student fine-tuned on the same "
                    "dataset and seed (its row above); 'teacher's layers' students start from its layers, cut "
                    "evenly (DistilBERT), the others from the pretrained MiniLM's.")
    text = write_reports(root, sweep.suite, variants, sweep.datasets, cells,
                         {"protocol": protocol, "notes": notes, "command": sweep_command(sweep),
                          "wall_seconds_this_invocation": round(time.perf_counter() - started, 1)})
    if sweep.suite == "scaling":
        text += write_scaling(root, sweep, cells, variants, base_for)
    console.print(text, markup=False, highlight=False)
    console.print(f"reports in {root}/ (report.md, report.json, report.html, plots/)", markup=False)
    return 0
