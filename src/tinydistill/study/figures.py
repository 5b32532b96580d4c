"""The sweep's figures (matplotlib, headless): grouped bars, Figure 2's fractions, Figure 3's α grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .paper import METHOD_LABELS, PAPER_NAMES
from .suites import Variant

# matplotlib is imported inside each plotting function: heavy, and its Agg backend must be chosen before pyplot


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


def plot_scaling(rows: list[dict], teacher: float | None, title: str, out: Path) -> Path | None:
    """Scaling Down's figure for one dataset: test accuracy against parameters, one line per method, the teacher
    as a horizontal line (None when no cut student has finished)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        if r["method"] != "Teacher" and r["mean"] is not None and r["params"]:
            lines.setdefault(r["method"], []).append((r["params"] / 1e6, r["mean"], r["std"] or 0.0))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for method, points in lines.items():
        x, y, err = zip(*sorted(points), strict=True)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=method)
    if teacher is not None:
        ax.axhline(teacher, color="k", linestyle="--", linewidth=1, label=f"teacher ({teacher:.1f})")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
