"""Suites as cells: each suite's variants (a method plus overrides) × datasets × seeds, and the sweep's settings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ..data import load_examples
from ..errors import ConfigError
from .paper import DATASETS, METHOD_LABELS, TABLE1_METHODS

SUITES = ("table1", "fast", "ablations", "fractions", "alpha", "sizes", "scaling")


class FastSuite(TypedDict):
    """The fast protocol's datasets, methods and training-row limit."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    train_limit: int


#: ``--suite fast``: Table 1's cells on three datasets and 1,000 training rows each — the protocol for judging a
#: change to a method in one command (its own folder, so it never mixes with a whole-set sweep).
FAST_SUITE: FastSuite = {"datasets": ("obqa", "arc", "riddle"), "methods": ("finetune", "step_by_step", "tinyllm"),
                         "train_limit": 1000}


#: ``--suite scaling`` (Scaling Down): the methods and student sizes unless the command names others; PIQA capped.
class ScalingSuite(TypedDict):
    """The scaling suite's default methods, student layer counts and training-row limits."""

    methods: tuple[str, ...]
    layers: tuple[int, ...]
    train_limit: str


SCALING_SUITE: ScalingSuite = {"methods": ("finetune", "kd", "whitebox", "whitebox_init"), "layers": (2, 3),
                               "train_limit": "piqa=2000"}
#: the scaling suite's student methods: (label, method, overrides, initialised from the teacher's layers)
SCALING_METHODS: dict[str, tuple[str, str, dict[str, Any], bool]] = {
    "finetune": ("Fine-tuning", "finetune", {}, False),
    "kd": ("Soft-label KD", "kd", {}, False),
    "whitebox": ("White-box", "whitebox", {}, False),
    "whitebox_cls": ("White-box, [CLS] MSE", "whitebox", {"whitebox.hidden_positions": "cls"}, False),
    "whitebox_attn": ("White-box + attention KL", "whitebox", {"whitebox.attention_kl_weight": 1.0}, False),
    "whitebox_init": ("White-box, teacher's layers", "whitebox", {}, True),
    "whitebox_init_cls": ("White-box, teacher's layers, [CLS] MSE", "whitebox",
                          {"whitebox.hidden_positions": "cls"}, True),
    "finetune_init": ("Fine-tuning, teacher's layers", "finetune", {}, True),
    "whitebox_rationales": ("Rationales, then white-box", "whitebox", {"whitebox.rationale_stage": True}, False),
}
TEACHER_VARIANT = "finetune"  # the full-size fine-tuned student: the teacher of the suite's cut students


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
    init_from_teacher: bool = False  # the student starts from the teacher's (fine-tuned) layers, DistilBERT style


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


def scaling_variants(layers: Sequence[int], methods: Sequence[str], full: int = 6) -> list[Variant]:
    """The teacher (the full-size student fine-tuned), then each method at each cut size (``student.num_layers``);
    every method but fine-tuning distils the teacher of the same dataset and seed."""
    out = [Variant(TEACHER_VARIANT, "Teacher: fine-tuned, full size", "finetune", coords={"layers": full})]
    for n in layers:
        if n >= full:
            continue
        for m in methods:
            label, method, over, init = SCALING_METHODS[m]
            out.append(Variant(f"{m}_L{n}", f"{label}, {n} layer{'s' if n != 1 else ''}", method,
                               {**over, "student.num_layers": n}, coords={"layers": n},
                               uses_finetuned_teacher=method != "finetune" or init,
                               init_from_teacher=init))
    return out


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


def _train_size(data_root: Path, dataset: str, valid_rows: int, train_limit: int | None) -> int:
    n = len(load_examples(data_root / dataset, "train", on_invalid="skip")) - valid_rows
    return min(n, train_limit) if train_limit else n


def plan_cells(sweep: Sweep) -> list[Cell]:
    """Every cell of the suite, seed-major (all of seed 0 first), so a cut-short sweep has whole seeds."""
    cells = []
    for seed in sweep.seeds:
        for ds in sweep.datasets:
            if sweep.suite in ("table1", "fast"):
                variants = table1_variants(sweep.methods, sweep.weight_grid)
            elif sweep.suite == "ablations":
                variants = ablation_variants()
            elif sweep.suite == "fractions":
                variants = fraction_variants(sweep.fractions, _train_size(sweep.data_root, ds, sweep.valid_rows,
                                                                          limit_for(sweep.train_limit, ds)))
            elif sweep.suite == "alpha":
                variants = alpha_variants(sweep.alphas)
            elif sweep.suite == "scaling":
                variants = scaling_variants(sweep.layers, sweep.methods)
            else:
                variants = size_variants(sweep.layers)
            cells += [Cell(sweep.suite, ds, v, seed, sweep.root / ds / v.name / f"seed{seed}") for v in variants]
    return cells


def cell_done(cell: Cell) -> dict | None:
    path = cell.run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if "test" in summary else None
