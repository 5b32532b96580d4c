"""``tinydistill reproduce``: the TinyLLM paper's tables and figures as a grid of ordinary runs.

A suite expands to cells (dataset × variant × seed); each cell is one run folder
``<output>/<suite>/<dataset>/<variant>/seed<k>/`` made by :func:`tinydistill.run.run`: selected on a validation
set held out of train (``data.valid_from_train``), then scored once on the evaluation split (``data.test``).
A cell whose ``summary.json`` holds test metrics is done and never re-run, so an interrupted sweep resumes cell by
cell (and a half-trained cell resumes from its checkpoint). Results: mean ± std over seeds, the paper's published
figure and the majority-class baseline beside ours, in ``report.md``, ``report.json``, ``report.html``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .config import MINILM_ALIAS, RunConfig, apply_overrides, config_from_dict, dump_config
from .console import console
from .data import load_examples
from .errors import ConfigError, TinyDistillError
from .files import write_json_atomic
from .html_report import html_page
from .run import run

# matplotlib is imported inside the plotting functions: heavy, and its Agg backend must be chosen before pyplot

DATASETS = ("obqa", "arc", "piqa", "riddle", "pubmedqa", "bioasq")
PAPER_NAMES = {"obqa": "OBQA", "arc": "ARC", "piqa": "PIQA", "riddle": "Riddle", "pubmedqa": "PQA",
               "bioasq": "BioASQ"}
TABLE1_METHODS = ("inference", "pinto", "lora", "finetune", "kd", "step_by_step", "tinyllm")
METHOD_LABELS = {"inference": "Inference", "pinto": "PINTO", "lora": "LoRA", "finetune": "Full fine-tuning",
                 "kd": "Standard KD", "step_by_step": "Distill-step-by-step", "tinyllm": "TinyLLM"}

#: TinyLLM paper, Table 1 (test accuracy, FLAN-T5 students), by student size → method → dataset.
PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "80M": {
        "inference": dict(obqa=16.60, arc=19.31, piqa=20.78, riddle=13.33, pubmedqa=38.00, bioasq=47.97),
        "pinto": dict(obqa=46.40, arc=26.87, piqa=48.10, riddle=25.29, pubmedqa=60.00, bioasq=80.49),
        "lora": dict(obqa=37.80, arc=27.12, piqa=39.93, riddle=39.80, pubmedqa=53.75, bioasq=78.05),
        "finetune": dict(obqa=41.60, arc=27.47, piqa=42.33, riddle=42.75, pubmedqa=56.25, bioasq=78.86),
        "kd": dict(obqa=45.80, arc=29.53, piqa=49.29, riddle=36.27, pubmedqa=58.00, bioasq=81.30),
        "step_by_step": dict(obqa=46.40, arc=30.47, piqa=50.38, riddle=36.67, pubmedqa=59.00, bioasq=81.30),
        "tinyllm": dict(obqa=49.40, arc=33.05, piqa=53.65, riddle=51.18, pubmedqa=62.00, bioasq=85.37),
    },
    "250M": {
        "finetune": dict(obqa=56.60, arc=38.88, piqa=47.55, riddle=52.55, pubmedqa=64.75, bioasq=89.43),
        "step_by_step": dict(obqa=56.80, arc=43.86, piqa=56.37, riddle=45.69, pubmedqa=64.75, bioasq=86.18),
        "tinyllm": dict(obqa=64.20, arc=48.50, piqa=60.17, riddle=60.78, pubmedqa=66.25, bioasq=90.24),
    },
}
PAPER_TEACHERS = {"FLAN-T5 xlarge (3B)": dict(obqa=69.20, arc=68.24, piqa=58.43, riddle=53.73, pubmedqa=71.50,
                                              bioasq=65.85),
                  "LLaMA 2 (7B)": dict(obqa=58.60, arc=45.90, piqa=78.80, riddle=47.65, pubmedqa=54.50,
                                       bioasq=73.75)}

SUITES = ("table1", "ablations", "fractions", "alpha", "sizes")


@dataclass(frozen=True)
class Variant:
    """One row of a suite's table: a method plus dotted config overrides (``after``: cells it depends on)."""

    name: str
    label: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    uses_finetuned_teacher: bool = False
    coords: dict[str, float] = field(default_factory=dict)  # where the cell sits in a figure (fraction, α…)
    select_group: str | None = None  # cells of one group compete on valid, per dataset and seed (weight grid)


@dataclass
class Cell:
    suite: str
    dataset: str
    variant: Variant
    seed: int
    run_dir: Path

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.dataset}/{self.variant.name}/seed{self.seed}"


# ------------------------------------------------------------------------------------------------- suites
#: Methods whose rationale-loss weight the paper explores ({0.01, 0.1, 0.5, 1, 2, 3}) and reports at its best.
WEIGHTED_METHODS = ("step_by_step", "tinyllm")


def weight_overrides(method: str, weight: float) -> dict[str, Any]:
    """Config overrides giving each rationale loss ``weight`` relative to the answer loss: TinyLLM's α_m for
    both teachers; Distill-step-by-step's λ in ``L_label + λ·L_rationale``, i.e. ``alpha_label = 1 / (1 + λ)``."""
    if method == "tinyllm":
        return {"teachers.0.alpha_rationale": weight, "teachers.1.alpha_rationale": weight}
    return {"rationale_method.teacher": "flan_t5", "rationale_method.alpha_label": 1.0 / (1.0 + weight)}


def table1_variants(methods: Sequence[str], weight_grid: Sequence[float] = ()) -> list[Variant]:
    """One variant per method; with ``weight_grid``, Distill-step-by-step and TinyLLM also get one variant per
    rationale-loss weight; the report adds the rows chosen on valid among them (recipe's weight included):
    per seed (``select_on_valid``) and one weight per dataset (``select_per_dataset``)."""
    per_method: dict[str, dict[str, Any]] = {
        "lora": {"train.lr": 1e-3},  # adapters need a larger step than full fine-tuning
        "step_by_step": {"rationale_method.teacher": "flan_t5"},
        "pinto": {"rationale_method.teacher": "flan_t5"},
    }
    marks = {"pinto": "†", "kd": "‡"}  # footnoted under the table: what these cells read that others do not
    out = []
    for m in methods:
        group = m if weight_grid and m in WEIGHTED_METHODS else None
        out.append(Variant(m, METHOD_LABELS[m] + marks.get(m, ""), m, per_method.get(m, {}),
                           uses_finetuned_teacher=m == "kd", select_group=group))
        if group:
            out += [Variant(f"{m}_w{w:g}", f"{METHOD_LABELS[m]}, weight {w:g}", m, weight_overrides(m, w),
                            coords={"rationale_weight": w}, select_group=group) for w in weight_grid]
    return out


def ablation_variants() -> list[Variant]:
    """Table 2's variants that the shipped teacher outputs allow (the rest need a live teacher: see notes)."""
    return [Variant("tinyllm", "TinyLLM", "tinyllm"),
            Variant("wo_llama", "w/o LLaMA", "tinyllm", {"teachers.1.alpha_rationale": 0.0}),
            Variant("wo_t5", "w/o T5", "tinyllm", {"teachers.0.alpha_rationale": 0.0})]


ABLATIONS_NEEDING_TEACHERS = {
    "w/o in-context": "rationales generated without in-context examples (`tinydistill teach` with icl.k: 0)",
    "w/o teacher-forcing": "rationales generated without the gold answer (`template: cot`)",
    "w/o diverse teachers": "several sampled rationales from the stronger teacher (`samples: 2`)",
}


def fraction_variants(fractions: Sequence[float], n_train: int) -> list[Variant]:
    out = []
    for frac in fractions:
        limit = max(8, round(frac * n_train))
        for method in ("finetune", "step_by_step", "tinyllm"):
            extra = {"rationale_method.teacher": "flan_t5"} if method == "step_by_step" else {}
            out.append(Variant(f"{method}_{frac:g}", f"{METHOD_LABELS[method]} @ {frac:.0%}", method,
                               {"data.train.limit": limit, **extra}, coords={"fraction": frac}))
    return out


def alpha_variants(grid: Sequence[float]) -> list[Variant]:
    return [Variant(f"a{a_t5:g}_{a_llama:g}", f"α_T5={a_t5:g}, α_LLaMA={a_llama:g}", "tinyllm",
                    {"teachers.0.alpha_rationale": a_t5, "teachers.1.alpha_rationale": a_llama},
                    coords={"alpha_t5": a_t5, "alpha_llama": a_llama})
            for a_t5 in grid for a_llama in grid]


def size_variants(layers: Sequence[int]) -> list[Variant]:
    return [Variant(f"{method}_L{n}", f"{METHOD_LABELS[method]}, {n} layers", method, {"student.num_layers": n})
            for n in layers for method in ("finetune", "tinyllm")]


# --------------------------------------------------------------------------------------------- configs
def base_config(data_root: Path, dataset: str, *, train_limit: int | None, valid_rows: int, epochs: float,
                output_dir: Path, seed: int, overrides: Sequence[str]) -> dict:
    """The quickstart recipe (MiniLM + choice head, both teachers) pointed at one dataset of the TinyLLM layout."""
    text = (resources.files("tinydistill") / "configs" / "quickstart.yaml").read_text()
    raw = yaml.safe_load(text.replace("{data_dir}", str(data_root / dataset)))
    raw["data"] = {"train": {"path": str(data_root / dataset), "on_invalid": "skip", "limit": train_limit},
                   "valid_from_train": valid_rows,
                   "test": {"path": str(data_root / dataset), "split": "valid"}}
    raw["train"]["epochs"] = epochs
    raw.update(seed=seed, output_dir=str(output_dir))
    return apply_overrides(raw, list(overrides))


def cell_config(cell: Cell, base: dict, finetuned: Path | None) -> dict:
    raw = json.loads(json.dumps(base))
    raw.update(name=f"seed{cell.seed}", method=cell.variant.method, output_dir=str(cell.run_dir.parent))
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in cell.variant.overrides.items()]
    raw = apply_overrides(raw, items)
    if cell.variant.uses_finetuned_teacher:
        if finetuned is None:
            raise ConfigError(f"{cell.key}: method kd distils the fine-tuned student; add finetune to --methods")
        raw.setdefault("whitebox", {})["teacher_model"] = str(finetuned)
    return raw


def describe_student(student: dict, cells: Sequence[Cell]) -> str:
    """The report's note on the student: the recipe's checkpoint and head, and the finished cells' parameter counts.

    ``student`` is the first dataset's; a ``--set`` scoped to other datasets may change theirs (their cells'
    ``config.yaml`` says what each used)."""
    model = student.get("model", MINILM_ALIAS)
    name = "all-MiniLM-L6-v2" if model == MINILM_ALIAS else f"`{model}`"
    if student.get("architecture", "auto") == "multiple_choice":
        shape = "a multiple-choice head (+ a rationale decoder for the rationale methods)"
    else:
        shape = "each choice ranked by the likelihood it gives the choice's text"
    sizes = sorted({done["n_params"] for c in cells if (done := cell_done(c)) and done.get("n_params")})
    counts = "" if not sizes else f" ({' / '.join(f'{n / 1e6:.1f}M' for n in sizes)} parameters)"
    return f"- Student: {name}{counts} with {shape}; the paper's students are FLAN-T5 80M/250M/780M."


def parse_train_limit(text: str | None) -> int | dict[str, int] | None:
    """``--train-limit``: None (whole sets), N (every dataset) or ``name=N,...`` (those datasets; the rest whole)."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()

    def positive(value: str) -> int:
        if int(value) < 1:
            raise ValueError(value)
        return int(value)

    try:
        if "=" not in text:
            return positive(text)
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
            raise ValueError(text)
        return {name.strip(): positive(value) for name, value in pairs}
    except ValueError:
        raise ConfigError(f"--train-limit {text!r}: expected a positive whole number or dataset=N pairs, "
                          f"e.g. 500 or piqa=2000") from None


def limit_for(train_limit: int | dict[str, int] | None, dataset: str) -> int | None:
    """The training-set limit one dataset gets under ``--train-limit``."""
    return train_limit.get(dataset) if isinstance(train_limit, dict) else train_limit


def describe_train_limit(train_limit: int | dict[str, int] | None) -> str:
    """``--train-limit`` in the report's protocol line."""
    if isinstance(train_limit, dict):
        return ", ".join(f"{k} {v}" for k, v in train_limit.items()) + " (the other datasets whole)"
    return str(train_limit or "all")


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _scoped(item: str) -> tuple[list[str] | None, str]:
    """A ``--set`` item → (the datasets it names, or None for every dataset; the ``key=value`` part)."""
    key, eq, value = item.partition("=")
    scope, colon, key = key.rpartition(":")
    return (_split(scope) if colon else None), f"{key}{eq}{value}"


def overrides_for(overrides: Sequence[str], dataset: str) -> list[str]:
    """The ``--set`` items one dataset gets: ``key=value`` applies to every dataset, ``a,b:key=value`` to those."""
    return [setting for scope, setting in map(_scoped, overrides) if scope is None or dataset in scope]


def require_datasets(flag: str, names: Iterable[str], data_root: Path) -> None:
    """A flag naming no dataset under ``data_root`` is a typo that would silently change nothing: one line.

    A dataset that exists but is not in this invocation's ``--datasets`` is fine: one recipe line can then be
    split across processes by dataset, each keeping the recipe's flags.
    """
    unknown = sorted(name for name in set(names) if not (data_root / name).is_dir())
    if unknown:
        there = sorted(p.name for p in data_root.iterdir() if p.is_dir()) if data_root.is_dir() else []
        raise ConfigError(f"{flag}: no dataset {', '.join(unknown)} under --data-root {data_root} "
                          f"(there: {', '.join(there) or 'nothing'})")


def check_override_scopes(overrides: Sequence[str], data_root: Path) -> None:
    """Every ``--set a,b:key=value`` names at least one dataset, each one under ``data_root``."""
    for item in overrides:
        scope, _ = _scoped(item)
        if scope is None:
            continue
        if not scope:
            raise ConfigError(f"--set {item!r}: expected dataset,...:key=value before the '='")
        require_datasets(f"--set {item!r}", scope, data_root)


def describe_overrides(overrides: Sequence[str]) -> str:
    """``--set`` in the report's protocol line ('' when none)."""
    return "; settings " + ", ".join(f"`{o}`" for o in overrides) if overrides else ""


def _train_size(data_root: Path, dataset: str, valid_rows: int, train_limit: int | None) -> int:
    n = len(load_examples(data_root / dataset, "train", on_invalid="skip")) - valid_rows
    return min(n, train_limit) if train_limit else n


@dataclass
class Sweep:
    """One ``reproduce`` sweep: the suite, its grid and its protocol (``tinydistill reproduce``'s flags, parsed)."""

    suite: str = "table1"
    data_root: Path = Path("..") / "shared" / "data" / "tinyllm"
    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    methods: list[str] = field(default_factory=lambda: list(TABLE1_METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train_limit: int | dict[str, int] | None = None
    valid_rows: int = 100
    epochs: float = 1.0
    fractions: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0])
    alphas: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    weight_grid: list[float] = field(default_factory=list)
    layers: list[int] = field(default_factory=lambda: [2, 4, 6])
    output_dir: Path = Path("runs") / "reproduce"
    overrides: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.output_dir / self.suite


def plan_cells(sweep: Sweep) -> list[Cell]:
    """Every cell of the suite, seed-major (all of seed 0 first), so a cut-short sweep has whole seeds."""
    cells = []
    for seed in sweep.seeds:
        for ds in sweep.datasets:
            if sweep.suite == "table1":
                variants = table1_variants(sweep.methods, sweep.weight_grid)
            elif sweep.suite == "ablations":
                variants = ablation_variants()
            elif sweep.suite == "fractions":
                variants = fraction_variants(sweep.fractions, _train_size(sweep.data_root, ds, sweep.valid_rows,
                                                                          limit_for(sweep.train_limit, ds)))
            elif sweep.suite == "alpha":
                variants = alpha_variants(sweep.alphas)
            else:
                variants = size_variants(sweep.layers)
            cells += [Cell(sweep.suite, ds, v, seed, sweep.root / ds / v.name / f"seed{seed}") for v in variants]
    return cells


# ---------------------------------------------------------------------------------------------- running
def cell_done(cell: Cell) -> dict | None:
    path = cell.run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if "test" in summary else None


def config_for(cell: Cell, base_for: Callable[[str, int], dict]) -> RunConfig:
    """The cell's run config (Standard KD reads the same seed's fine-tuned student, when it exists)."""
    finetuned = cell.run_dir.parents[1] / "finetune" / f"seed{cell.seed}" / "best"
    raw = cell_config(cell, base_for(cell.dataset, cell.seed), finetuned if finetuned.is_dir() else None)
    return config_from_dict(raw, source=f"reproduce:{cell.key}")


def _settings_added_since(saved: Any, current: Any, model: Any) -> Any:
    """``current`` without the settings ``saved`` lacks that hold their default: settings a later tinydistill
    added (defaults keep the old behaviour), which a cell finished before them ran as if set to the default."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return current
    fields = getattr(model, "model_fields", {})
    out = {}
    for key, value in current.items():
        info = fields.get(key)
        sub = getattr(info, "annotation", None) if info is not None else None
        if key not in saved:
            default = info.get_default(call_default_factory=True) if info is not None else None
            dumped = default.model_dump(mode="json") if hasattr(default, "model_dump") else default
            if info is not None and dumped == value:
                continue
            out[key] = value
            continue
        out[key] = _settings_added_since(saved[key], value, sub if hasattr(sub, "model_fields") else None)
    return out


def check_same_protocol(cell: Cell, cfg: RunConfig) -> None:
    """A finished cell counts only for the config that made it (not one of another --train-limit, say);
    settings added to tinydistill after the cell ran count as the same when they hold their default, and a
    sweep folder moved or copied elsewhere keeps its cells."""
    saved = cell.run_dir / "config.yaml"
    if not saved.is_file() or saved.read_text() == dump_config(cfg):
        return
    before = yaml.safe_load(saved.read_text())
    current = yaml.safe_load(dump_config(cfg))
    for raw in (before, current):  # where the sweep folder lies says nothing about the cell: moved sweeps count
        raw.pop("output_dir", None)
    if before != _settings_added_since(before, current, RunConfig):
        raise ConfigError(f"{saved}: this finished cell was made with different settings than this command's; "
                          f"use another --output-dir (or delete {cell.run_dir})")


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
    if cell.variant.method != "finetune":
        shutil.rmtree(cell.run_dir / "best", ignore_errors=True)


# ------------------------------------------------------------------------------------------- aggregating
def _metric(summary: dict, split: str) -> float | None:
    m = summary.get(split) or {}
    value = m.get("rank_accuracy", m.get("accuracy"))
    return None if value is None else 100 * float(value)


def _new_entry() -> dict[str, Any]:
    return {"test": [], "valid": [], "majority": None, "seconds": 0.0, "seeds": [], "failed": [], "top_shares": []}


def _add_seed(entry: dict[str, Any], seed: int, summary: dict) -> None:
    """One finished cell's test and valid accuracy, majority baseline and collapse share, into a table entry."""
    entry["test"].append(_metric(summary, "test"))
    entry["valid"].append(_metric(summary, "valid"))
    entry["seeds"].append(seed)
    entry["majority"] = 100 * summary["test"].get("majority_baseline", 0.0)
    entry["top_shares"].append(100 * summary["test"].get("rank_top_share", summary["test"].get("top_share", 0.0)))


def aggregate(cells: Sequence[Cell]) -> dict[str, Any]:
    """Per (variant, dataset): test mean ± std over seeds, valid mean, majority baseline, seconds."""
    table: dict[str, dict[str, dict]] = {}
    for cell in cells:
        summary = cell_done(cell)
        entry = table.setdefault(cell.variant.name, {}).setdefault(cell.dataset, _new_entry())
        if summary is None:
            if (cell.run_dir / "error.txt").is_file():
                entry["failed"].append(cell.seed)
            continue
        _add_seed(entry, cell.seed, summary)
        entry["seconds"] += summary.get("train_seconds", 0.0) + summary.get("eval_seconds", 0.0)
    for per_ds in table.values():
        for entry in per_ds.values():
            _summarise(entry)
    return table


def _weight_groups(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """The cells of each weight grid, by method (only variants that compete on valid)."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.variant.select_group:
            groups.setdefault(cell.variant.select_group, []).append(cell)
    return groups


def select_on_valid(cells: Sequence[Cell], table: dict) -> tuple[list[Variant], dict[str, dict[str, dict]]]:
    """For each weight group: per dataset and seed, the cell with the best valid accuracy (ties: the first
    planned, i.e. the recipe's weight); its test accuracy becomes the seed's value of a new row ``<group>_on_valid``,
    added to ``table``. Returns (the new rows, {group: {dataset: {seed: chosen variant name}}})."""
    rows, choices = [], {}
    for group, members in _weight_groups(cells).items():
        name = f"{group}_on_valid"
        rows.append(Variant(name, f"{METHOD_LABELS[group]}, weight on valid", group))
        chosen: dict[str, dict] = {}
        per_ds = table.setdefault(name, {})
        for dataset in dict.fromkeys(c.dataset for c in members):
            entry = per_ds.setdefault(dataset, _new_entry())
            for seed in dict.fromkeys(c.seed for c in members if c.dataset == dataset):
                runs = [(c, s) for c in members if c.dataset == dataset and c.seed == seed
                        and (s := cell_done(c)) is not None and _metric(s, "valid") is not None]
                entry["seconds"] += sum(s.get("train_seconds", 0.0) + s.get("eval_seconds", 0.0) for _, s in runs)
                if not runs:
                    continue
                best, summary = max(runs, key=lambda cs: _metric(cs[1], "valid"))  # first of equals wins
                chosen.setdefault(dataset, {})[seed] = best.variant.name
                _add_seed(entry, seed, summary)
            _summarise(entry)
        choices[group] = chosen
    return rows, choices


def select_per_dataset(cells: Sequence[Cell], table: dict) -> tuple[list[Variant], dict[str, dict[str, str]]]:
    """For each weight group: per dataset, the one weight whose students have the best *mean* valid accuracy over
    the seeds (ties: the recipe's weight); that weight's test row, mean ± std over the same seeds, becomes the row
    ``<group>_per_dataset``. The usual protocol — one hyperparameter per dataset, then every seed at it — and
    steadier than a choice per seed. A dataset counts once every weight has the same finished seeds.
    Returns (the new rows, {group: {dataset: chosen variant name}})."""
    rows, choices = [], {}
    for group, members in _weight_groups(cells).items():
        name = f"{group}_per_dataset"
        rows.append(Variant(name, f"{METHOD_LABELS[group]}, one weight per dataset on valid", group))
        per_ds, chosen = table.setdefault(name, {}), {}
        for dataset in dict.fromkeys(c.dataset for c in members):
            candidates = list(dict.fromkeys(c.variant.name for c in members if c.dataset == dataset))
            entries = [table.get(v, {}).get(dataset) for v in candidates]
            if (any(e is None or not e["seeds"] or e["valid_mean"] is None for e in entries)
                    or len({tuple(sorted(e["seeds"])) for e in entries}) > 1):
                continue  # a weight still running: no choice yet
            best = max(range(len(candidates)), key=lambda i: entries[i]["valid_mean"])  # first of equals wins
            chosen[dataset] = candidates[best]
            per_ds[dataset] = dict(entries[best], seconds=sum(e["seconds"] for e in entries))
        choices[group] = chosen
    return rows, choices


def _summarise(entry: dict) -> None:
    vals = [v for v in entry["test"] if v is not None]
    entry["mean"] = statistics.fmean(vals) if vals else None
    entry["std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
    valid = [v for v in entry["valid"] if v is not None]
    entry["valid_mean"] = statistics.fmean(valid) if valid else None
    entry["top_share"] = statistics.fmean(entry["top_shares"]) if entry["top_shares"] else None


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "failed" if entry and entry.get("failed") else "—"
    n = len(entry["test"])
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}" + ("" if n >= 3 else f" (n={n})")


def _average(entries: Sequence[dict | None]) -> float | None:
    means = [e["mean"] for e in entries if e and e.get("mean") is not None]
    return statistics.fmean(means) if len(means) == len(entries) and means else None


def _paper_row(label: str, paper: dict[str, float], datasets: Sequence[str]) -> str:
    vals = [paper.get(d) for d in datasets]
    avg = statistics.fmean(vals) if all(v is not None for v in vals) else None  # type: ignore[arg-type]
    return (f"| {label} | " + " | ".join("—" if x is None else f"{x:.2f}" for x in vals) +
            f" | {'—' if avg is None else f'{avg:.2f}'} |")


def markdown_report(suite: str, variants: Sequence[Variant], datasets: Sequence[str], table: dict,
                    meta: dict) -> str:
    heads = [PAPER_NAMES.get(d, d) for d in datasets]
    lines = [f"# reproduce: {suite}", "", meta["protocol"], "",
             "| method | " + " | ".join(heads) + " | avg |", "|---|" + "---|" * (len(heads) + 1)]
    for v in variants:
        entries = [table.get(v.name, {}).get(d) for d in datasets]
        avg = _average(entries)
        lines.append(f"| {v.label} | " + " | ".join(_fmt(e) for e in entries) +
                     f" | {'—' if avg is None else f'{avg:.1f}'} |")
    majority = [next((table[v.name][d]["majority"] for v in variants
                      if table.get(v.name, {}).get(d, {}).get("majority") is not None), None) for d in datasets]
    if any(m is not None for m in majority):
        avg = statistics.fmean(m for m in majority if m is not None)
        lines.append("| majority class | " + " | ".join("—" if m is None else f"{m:.1f}" for m in majority) +
                     f" | {avg:.1f} |")
    lines += ["", "Collapse check — share of test rows given the most frequent answer (%, mean over seeds; a "
              "student that always answers one letter sits at 100):", "",
              "| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for v in variants:
        shares = [(table.get(v.name, {}).get(d) or {}).get("top_share") for d in datasets]
        lines.append(f"| {v.label} | " + " | ".join("—" if x is None else f"{x:.0f}" for x in shares) + " |")
    if suite == "table1":
        lines += ["", "The paper (Table 1, 80M FLAN-T5 student, its test split):", "",
                  "| method | " + " | ".join(heads) + " | avg |", "|---|" + "---|" * (len(heads) + 1)]
        for method in dict.fromkeys(v.method for v in variants):
            paper = PAPER_TABLE1["80M"].get(method)
            if paper:  # the paper's own rows: none of our footnotes apply to them
                lines.append(_paper_row(METHOD_LABELS.get(method, method), paper, datasets))
        lines += [_paper_row(f"teacher {name}", paper, datasets) for name, paper in PAPER_TEACHERS.items()]
    lines += ["", *meta.get("notes", []), "", f"Compute: {meta['seconds'] / 60:.0f} min of train + eval over "
              f"{meta['cells_done']} cells ({meta['cells_total']} planned); command: `{meta['command']}`.", ""]
    return "\n".join(lines)


def _weight_label(variant_name: str) -> str:
    """``tinyllm_w0.01`` → ``0.01``; the recipe's own variant → ``recipe``."""
    return variant_name.rsplit("_w", 1)[1] if "_w" in variant_name else "recipe"


def plot_table(variants: Sequence[Variant], datasets: Sequence[str], table: dict, out: Path) -> Path | None:
    """Grouped bars: test accuracy per dataset and method, with the seed std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets)), 3.6))
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        means = [(table.get(v.name, {}).get(d) or {}).get("mean") or 0.0 for d in datasets]
        stds = [(table.get(v.name, {}).get(d) or {}).get("std") or 0.0 for d in datasets]
        ax.bar([j + i * width for j in range(len(datasets))], means, width, yerr=stds, label=v.label, capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(datasets))], [PAPER_NAMES.get(d, d) for d in datasets])
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _mean_std(table: dict, variant: Variant, dataset: str) -> tuple[float, float] | None:
    entry = table.get(variant.name, {}).get(dataset) or {}
    return None if entry.get("mean") is None else (entry["mean"], entry.get("std") or 0.0)


def plot_fractions(variants: Sequence[Variant], datasets: Sequence[str], table: dict, out: Path) -> Path:
    """Figure 2: test accuracy against the training-set fraction, one line per method, a panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for method in dict.fromkeys(v.method for v in variants):
            points = sorted((v.coords["fraction"], *ms) for v in variants if v.method == method
                            and (ms := _mean_std(table, v, dataset)) is not None)
            if points:
                x, y, err = zip(*points, strict=True)
                ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=METHOD_LABELS.get(method, method))
        ax.set_xscale("log", base=2)
        ax.set_title(PAPER_NAMES.get(dataset, dataset))
        ax.set_xlabel("training-set fraction")
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_alpha(variants: Sequence[Variant], datasets: Sequence[str], table: dict, out: Path) -> Path:
    """Figure 3: test accuracy over the α_T5 × α_LLaMA grid, a heatmap per dataset (blank: not run yet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t5 = sorted({v.coords["alpha_t5"] for v in variants})
    llama = sorted({v.coords["alpha_llama"] for v in variants})
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.4 * len(datasets), 3.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        grid = [[float("nan")] * len(llama) for _ in t5]
        for v in variants:
            ms = _mean_std(table, v, dataset)
            if ms is not None:
                grid[t5.index(v.coords["alpha_t5"])][llama.index(v.coords["alpha_llama"])] = ms[0]
        image = ax.imshow(grid, cmap="viridis", origin="lower")
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if value == value:  # not NaN
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(llama)), [f"{a:g}" for a in llama])
        ax.set_yticks(range(len(t5)), [f"{a:g}" for a in t5])
        ax.set_xlabel("α LLaMA")
        ax.set_ylabel("α T5")
        ax.set_title(PAPER_NAMES.get(dataset, dataset))
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _with_weight_choices(cells: Sequence[Cell], table: dict, variants: Sequence[Variant],
                         meta: dict) -> tuple[list[Variant], dict]:
    """Each weight grid's rows chosen on valid (per seed, then one weight per dataset) after the table's rows,
    with a note naming every choice."""
    variants, meta = list(variants), dict(meta)
    per_seed, seed_choices = select_on_valid(cells, table)
    per_dataset, dataset_choices = select_per_dataset(cells, table)
    explained = [
        (per_seed, "weight_choices", seed_choices, lambda chosen: ",".join(
            _weight_label(v) for _, v in sorted(chosen.items())),
         "Weight on valid: for each dataset and seed, the rationale-loss weight (the recipe's or one of the grid) "
         "whose student scored best on the held-out valid rows; the row reports that student's test accuracy."),
        (per_dataset, "weight_choices_per_dataset", dataset_choices, _weight_label,
         "One weight per dataset on valid: the weight whose students scored best on the held-out rows on average "
         "over the seeds; the row reports every seed's test accuracy at that weight."),
    ]
    for rows, key, choices, label, text in explained:
        if not rows:
            continue
        variants += rows
        meta[key] = choices
        meta["notes"] = [*meta.get("notes", []), f"- {text} Chosen: " + "; ".join(
            f"{METHOD_LABELS[g]} {PAPER_NAMES.get(d, d)} {label(chosen)}"
            for g, per_ds in choices.items() for d, chosen in per_ds.items()) + "."]
    return variants, meta


def write_reports(root: Path, suite: str, variants: Sequence[Variant], datasets: Sequence[str], cells: Sequence[Cell],
                  meta: dict) -> str:
    table = aggregate(cells)
    meta = dict(meta, seconds=sum(e["seconds"] for per in table.values() for e in per.values()),
                cells_done=sum(cell_done(c) is not None for c in cells), cells_total=len(cells))
    variants, meta = _with_weight_choices(cells, table, variants, meta)
    text = markdown_report(suite, variants, datasets, table, meta)
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.md").write_text(text)
    write_json_atomic(root / "report.json", {"suite": suite, "datasets": list(datasets), **meta,
                                             "variants": [v.__dict__ for v in variants], "table": table})
    plot = plot_table(variants, datasets, table, root / "plots" / "accuracy.png")
    figures = []
    if suite == "fractions":
        figures.append(("Accuracy against the training-set fraction (Figure 2)",
                        plot_fractions(variants, datasets, table, root / "plots" / "fractions.png")))
    elif suite == "alpha":
        figures.append(("Accuracy over the α grid (Figure 3)",
                        plot_alpha(variants, datasets, table, root / "plots" / "alpha.png")))
    try:
        sections = [("Results", text), ("Test accuracy by dataset", plot), *figures]
        (root / "report.html").write_text(html_page(f"reproduce: {suite}", sections))
    except (ImportError, TypeError, ValueError) as e:  # the HTML is a convenience; the markdown is the record
        console.print(f"report.html not written: {e}", markup=False)
    return text


# ----------------------------------------------------------------------------------------------- a sweep
def check_sweep(sweep: Sweep) -> None:
    """Names that match nothing are one-line errors; Standard KD is moved after the fine-tuning it distils."""
    require_datasets("--datasets", sweep.datasets, sweep.data_root)
    if isinstance(sweep.train_limit, dict):
        require_datasets("--train-limit", sweep.train_limit, sweep.data_root)
    check_override_scopes(sweep.overrides, sweep.data_root)
    for m in sweep.methods:
        if m not in METHOD_LABELS:
            raise ConfigError(f"--methods: unknown method {m!r} (one of {', '.join(TABLE1_METHODS)})")
    methods = sweep.methods
    if "kd" in methods and "finetune" in methods and methods.index("kd") < methods.index("finetune"):
        methods.remove("kd")
        methods.insert(methods.index("finetune") + 1, "kd")


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
    text = write_reports(root, sweep.suite, variants, sweep.datasets, cells,
                         {"protocol": protocol, "notes": notes, "command": sweep_command(sweep),
                          "wall_seconds_this_invocation": round(time.perf_counter() - started, 1)})
    console.print(text, markup=False, highlight=False)
    console.print(f"reports in {root}/ (report.md, report.json, report.html, plots/)", markup=False)
    return 0
