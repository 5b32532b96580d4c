"""Each cell's run config: the quickstart recipe on one dataset, the variant's overrides, scoped ``--set``
items, and the check that a finished cell was made by the same protocol."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from ..config import RunConfig, apply_overrides, config_from_dict, dump_config, effective_precision
from ..errors import ConfigError
from .suites import Cell


def base_config(data_root: Path, dataset: str, *, train_limit: int | None, valid_rows: int, epochs: float,
                output_dir: Path, seed: int, overrides: Sequence[str]) -> dict:
    """The quickstart recipe (MiniLM + choice head, both teachers) pointed at one dataset of the TinyLLM layout,
    at fp32 (the quickstart itself trains at ``auto``: bf16 where the CPU computes it natively)."""
    text = (resources.files("tinydistill") / "configs" / "quickstart.yaml").read_text()
    raw = yaml.safe_load(text.replace("{data_dir}", str(data_root / dataset)))
    raw["data"] = {"train": {"path": str(data_root / dataset), "on_invalid": "skip", "limit": train_limit},
                   "valid_from_train": valid_rows,
                   "test": {"path": str(data_root / dataset), "split": "valid"}}
    raw["train"]["epochs"] = epochs
    raw["train"]["mixed_precision"] = "no"  # fp32: a table's numbers must not depend on the CPU (`--set` changes it)
    raw.update(seed=seed, output_dir=str(output_dir))
    return apply_overrides(raw, list(overrides))


def cell_config(cell: Cell, base: dict, finetuned: Path | None) -> dict:
    raw = json.loads(json.dumps(base))
    raw.update(name=f"seed{cell.seed}", method=cell.variant.method, output_dir=str(cell.run_dir.parent))
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in cell.variant.overrides.items()]
    raw = apply_overrides(raw, items)
    if cell.variant.uses_finetuned_teacher:
        if finetuned is None:
            raise ConfigError(f"{cell.key}: method {cell.variant.method} distils the fine-tuned student of the same "
                              f"seed, which is not trained yet; add finetune to --methods")
        raw.setdefault("whitebox", {})["teacher_model"] = str(finetuned)
        if cell.variant.init_from_teacher:  # DistilBERT style: the cut student starts from the teacher's layers
            raw["student"]["model"] = str(finetuned)
    return raw


def config_for(cell: Cell, base_for: Callable[[str, int], dict]) -> RunConfig:
    """The cell's run config (Standard KD reads the same seed's fine-tuned student, when it exists)."""
    finetuned = cell.run_dir.parents[1] / "finetune" / f"seed{cell.seed}" / "best"
    raw = cell_config(cell, base_for(cell.dataset, cell.seed), finetuned if finetuned.is_dir() else None)
    return config_from_dict(raw, source=f"reproduce:{cell.key}")


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


def _model_in(annotation: Any) -> Any:
    """The pydantic model a field holds, also through ``Model | None`` (``data.test``); else None."""
    if hasattr(annotation, "model_fields"):
        return annotation
    return next((arg for arg in get_args(annotation) if hasattr(arg, "model_fields")), None)


def _settings_added_since(saved: Any, current: Any, model: Any) -> Any:
    """``current`` without the settings ``saved`` lacks that hold their default: settings a later tinydistill
    added (defaults keep the old behaviour), which a cell finished before them ran as if set to the default."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return current
    fields = getattr(model, "model_fields", {})
    out = {}
    for key, value in current.items():
        info = fields.get(key)
        sub = _model_in(getattr(info, "annotation", None)) if info is not None else None
        if key not in saved:
            default = info.get_default(call_default_factory=True) if info is not None else None
            dumped = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
            if info is not None and dumped == value:
                continue
            out[key] = value
            continue
        out[key] = _settings_added_since(saved[key], value, sub)
    return out


#: (section, key, the default before it became ``auto``): a cell that ran with the old default counts as the same
#: when ``auto`` resolves to that value here
_AUTO_DEFAULTS = (("train", "mixed_precision", "bf16"), ("student", "prefix_side", "encoder"))


def _auto_resolves_to(section: str, key: str, current: dict) -> str | None:
    if key == "mixed_precision":
        return effective_precision("auto")
    arch = current.get("student", {}).get("architecture")  # prefix_side: auto is the encoder's unless seq2seq
    return "encoder" if arch in ("multiple_choice", "causal") else None


def _auto_as_saved(before: dict, current: dict) -> None:
    """Where ``current`` says ``auto`` and the finished cell holds the old default that ``auto`` resolves to, take
    the cell's value: the cell ran exactly as ``auto`` runs now."""
    for section, key, old in _AUTO_DEFAULTS:
        b, c = before.get(section), current.get(section)
        if (isinstance(b, dict) and isinstance(c, dict) and c.get(key) == "auto" and b.get(key) == old
                and _auto_resolves_to(section, key, current) == old):
            c[key] = old


def _resolve_data_paths(raw: dict) -> None:
    """``--data-root ../shared/data`` and ``/work/shared/data`` name the same files: compare data folders that exist
    here by their absolute path."""
    for split in (raw.get("data") or {}).values():
        if isinstance(split, dict) and isinstance(split.get("path"), str) and Path(split["path"]).exists():
            split["path"] = str(Path(split["path"]).resolve())


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
        _resolve_data_paths(raw)
    _auto_as_saved(before, current)
    if before != _settings_added_since(before, current, RunConfig):
        raise ConfigError(f"{saved}: this finished cell was made with different settings than this command's; "
                          f"use another --output-dir (or delete {cell.run_dir})")
