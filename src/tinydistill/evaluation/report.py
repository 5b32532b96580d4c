"""Reports: markdown and JSON tables, and a loss-curve PNG (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..files import read_jsonl, write_json_atomic
from .outcome import RunOutcome

# matplotlib is imported inside plot_loss: heavy, and its Agg backend must be chosen before pyplot


def pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.1f}"


def plot_loss(metrics: list[dict], out: Path) -> Path | None:
    """Training loss per term and valid accuracy against optimizer steps."""
    train = [m for m in metrics if "loss" in m and m.get("split") is None]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    keys = sorted({k for m in train for k in m if k.startswith("loss")})
    for k in keys:
        pts = [(m["step"], m[k]) for m in train if k in m]
        ax.plot(*zip(*pts, strict=True), label=k, linewidth=2 if k == "loss" else 1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.legend(loc="upper right", fontsize=8)
    valid = [m for m in metrics if m.get("split") == "valid"]
    acc_key = next((k for k in ("rank_accuracy", "generate_accuracy") if valid and k in valid[0]), None)
    if acc_key:
        ax2 = ax.twinx()
        ax2.plot([m["step"] for m in valid], [100 * m[acc_key] for m in valid], "k--o", label=f"valid {acc_key}")
        ax2.set_ylabel("valid accuracy (%)")
        ax2.legend(loc="lower left", fontsize=8)
    ax.set_title("training loss terms and valid accuracy")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_row(label: str, metrics: dict) -> dict:
    return {
        "method": label,
        "rank_accuracy": metrics.get("rank_accuracy"),
        "generate_accuracy": metrics.get("generate_accuracy"),
        "top_share": metrics.get("rank_top_share", metrics.get("top_share")),
        "majority_baseline": metrics.get("majority_baseline"),
    }


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for r in rows:
        cells = []
        for key, _ in columns:
            v = r.get(key)
            cells.append(pct(v) if isinstance(v, float) else ("–" if v is None else str(v)))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def write_run_report(run_dir: Path, outcome: RunOutcome) -> None:
    """``report.md``, ``report.json`` and ``plots/loss.png`` for one run."""
    cfg, m = outcome.cfg, outcome.valid.metrics
    plot = plot_loss(read_jsonl(run_dir / "metrics.jsonl"), run_dir / "plots" / "loss.png")
    report = {
        "name": cfg.name, "method": cfg.method, "student": cfg.student.model, "parameters": outcome.n_params,
        "train_rows": outcome.n_train, "valid": m, "teachers": outcome.teachers,
        "train_seconds": round(outcome.train_seconds, 1), "eval_seconds": round(outcome.eval_seconds, 1),
        "truncation": outcome.truncation, "plot": str(plot.relative_to(run_dir)) if plot else None,
    }
    if outcome.test is not None:
        report.update(test=outcome.test.metrics, test_teachers=outcome.test_teachers)
    write_json_atomic(run_dir / "report.json", report)
    rows = [summary_row(f"student ({cfg.method})", m)]
    rows += [{"method": f"teacher {n}", "rank_accuracy": t["accuracy"], "top_share": t["top_share"],
              "majority_baseline": m.get("majority_baseline")} for n, t in outcome.teachers.items()]
    cols = [("method", "model"), ("rank_accuracy", "valid acc (rank)"), ("generate_accuracy", "valid acc (gen)"),
            ("top_share", "top prediction share"), ("majority_baseline", "majority baseline")]
    lines = [
        f"# Run `{cfg.name}`", "",
        f"Student `{cfg.student.model}` ({outcome.n_params / 1e6:.1f}M parameters), method `{cfg.method}`, "
        f"{outcome.n_train} training rows, {m['n']} valid rows; trained {outcome.train_seconds:.0f} s, "
        f"evaluated {outcome.eval_seconds:.0f} s.", "",
        markdown_table(rows, cols), "",
        "Teacher accuracy is the answer each teacher's rationale states on valid (rationales written with the "
        "gold answer in the prompt state it by construction).", "",
        f"Valid prediction distribution (rank): `{m.get('rank_distribution')}`; "
        f"(generate): `{m.get('generate_distribution')}`.", "",
    ]
    if outcome.test is not None:
        t = outcome.test.metrics
        test_rows = [summary_row(f"student ({cfg.method})", t)]
        test_rows += [{"method": f"teacher {n}", "rank_accuracy": r["accuracy"], "top_share": r["top_share"],
                       "majority_baseline": t.get("majority_baseline")} for n, r in outcome.test_teachers.items()]
        lines += [f"## Test ({t['n']} rows), scored once with the student selected on valid", "",
                  markdown_table(test_rows, [(k, h.replace("valid", "test")) for k, h in cols]), ""]
    if plot:
        lines += ["![loss](plots/loss.png)", ""]
    (run_dir / "report.md").write_text("\n".join(lines))
