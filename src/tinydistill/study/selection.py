"""Aggregation over seeds (mean ± std per variant and dataset) and the rows chosen on valid among a weight grid."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from .paper import METHOD_LABELS
from .suites import Cell, Variant, cell_done


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
                best, summary = max(runs, key=lambda cs: _metric(cs[1], "valid") or 0.0)  # first of equals wins
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
