"""Reading run configs: YAML + dotted ``--set`` overrides, checked when loaded, and one config per stage.

Errors name the file, the line and the dotted key, e.g.
``configs/x.yaml:12: train.lr: Input should be a valid number``.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, DataError
from ..files import decode_text
from .schema import RunConfig

__all__ = ["load_config", "config_from_dict", "apply_overrides", "dump_config", "read_yaml", "parse_value",
           "yaml_key_lines", "duplicate_keys"]


# ----------------------------------------------------------------------------------------------- loading
def _yaml_entries(text: str) -> Iterator[tuple[tuple[str, ...], int, yaml.Node | None, int]]:
    """Each mapping key and list item of a YAML document in file order: (its key path, its 1-based line, the key
    node (``None`` for a list item), which visit of a mapping or list holds it: a number of its own each time, so
    an alias read in two places is two visits). Nothing for a document that does not parse."""
    visits = itertools.count()

    def walk(node: yaml.Node, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], int, yaml.Node | None, int]]:
        visit = next(visits)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*path, str(k.value))
                yield key, k.start_mark.line + 1, k, visit
                yield from walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = (*path, str(i))
                yield key, v.start_mark.line + 1, None, visit
                yield from walk(v, key)

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return
    if root is not None:
        yield from walk(root, ())


def yaml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML document to its 1-based line (list items use their index)."""
    return {key: line for key, line, _, _ in _yaml_entries(text)}


def duplicate_keys(text: str) -> list[tuple[int, str, int]]:
    """Keys a YAML mapping gives twice, as (line, dotted key, first line): YAML keeps only the last silently, so a
    second ``train:`` section would drop every setting of the first."""
    first: dict[tuple[int, str], int] = {}
    found: list[tuple[int, str, int]] = []
    for key, line, key_node, visit in _yaml_entries(text):
        if key_node is None or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        where = (visit, key[-1])
        if where in first:
            found.append((line, ".".join(key), first[where]))
        else:
            first[where] = line
    return found


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value the way YAML would (``3e-4`` → float, ``[a, b]`` → list)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``key.sub=value`` overrides applied (list items by index)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = out
        for p in parts[:-1]:
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(f"--set {key}: no list item {p!r}")
                node = node[int(p)]
            else:
                if p.isdigit() and p not in node:  # `teachers.0.x` where the config has no teachers
                    raise ConfigError(f"--set {key}: no list item {p!r} (the config has none there)")
                node = node.setdefault(p, {})
                if not isinstance(node, dict | list):
                    raise ConfigError(f"--set {key}: {p!r} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: no list item {last!r}")
            node[int(last)] = parse_value(value)
        else:
            node[last] = parse_value(value)
    return out


#: at most this many problems are listed, one line each
MAX_LISTED_ERRORS = 10
_TAGS = ("imported", "hf", "http")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation can hold (through Optional, unions, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _models_at(loc: tuple[Any, ...]) -> list[type[BaseModel]]:
    """The models that may sit at a validation location (a teacher's ``kind`` tag picks one member)."""
    models: list[type[BaseModel]] = [RunConfig]
    for part in loc:
        if isinstance(part, int):
            continue
        holders = [m for m in models if part in m.model_fields]
        if holders:
            models = [x for m in holders for x in _models_in(m.model_fields[part].annotation)]
        else:
            models = [m for m in models if m.model_fields.get("kind") and m.model_fields["kind"].default == part]
        if not models:
            return []
    return models


#: Hugging Face ``TrainingArguments`` (and Trainer habit) names → this config's key for the same thing
HF_NAMES = {
    "learning_rate": "train.lr", "num_train_epochs": "train.epochs", "num_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size", "train_batch_size": "train.batch_size",
    "per_device_eval_batch_size": "eval.batch_size", "eval_batch_size": "eval.batch_size",
    "gradient_accumulation_steps": "train.grad_accum_steps", "warmup_steps": "train.warmup_ratio",
    "lr_scheduler_type": "train.schedule", "max_steps": "train.max_steps", "eval_steps": "train.eval_every",
    "evaluation_strategy": "train.eval_every", "eval_strategy": "train.eval_every",
    "save_steps": "train.checkpoint_every", "save_strategy": "train.checkpoint_every",
    "save_total_limit": "train.keep_checkpoints", "metric_for_best_model": "train.select_metric",
    "load_best_model_at_end": "train.select_metric", "fp16": "train.mixed_precision",
    "bf16": "train.mixed_precision", "dataloader_num_workers": "train.num_workers",
    "report_to": "train.report_to", "early_stopping_patience": "train.early_stopping_patience",
    "weight_decay": "train.weight_decay", "warmup_ratio": "train.warmup_ratio",
    "max_grad_norm": "train.max_grad_norm", "group_by_length": "train.group_by_length", "seed": "seed",
    "output_dir": "output_dir", "run_name": "name", "max_seq_length": "student.max_input_length",
    "max_source_length": "student.max_input_length", "max_target_length": "student.max_answer_length",
    "model_name_or_path": "student.model", "generation_max_length": "eval.max_new_tokens",
}
_HF_NOTES = {"train.warmup_ratio": " (a share of the steps, not a count)",
             "train.eval_every": " (optimizer steps between evaluations; 0 = every epoch)",
             "train.checkpoint_every": " (optimizer steps; 0 = at each evaluation)",
             "train.select_metric": " (the best checkpoint is always kept, selected on this metric)",
             "train.mixed_precision": " (auto, no, bf16 or fp16)"}


def _hf_name(loc: tuple[Any, ...]) -> str | None:
    """The suggestion for a Hugging Face ``TrainingArguments`` name typed from habit, else ``None``."""
    ours = HF_NAMES.get(str(loc[-1]))
    if ours is None:
        return None
    where = ".".join(str(x) for x in loc[:-1])
    if ours == f"{where}.{loc[-1]}" if where else ours == str(loc[-1]):  # the same name, elsewhere
        return None
    here = ours.removeprefix(where + ".") if where and ours.startswith(where + ".") else ours
    return f"unknown key (Hugging Face's name; here it is '{here}'{_HF_NOTES.get(ours, '')})"


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """``unknown key``, with our name for a Hugging Face ``TrainingArguments`` name, the closest known key at that
    place (a typo), or the known keys."""
    hf = _hf_name(loc)
    if hf is not None:
        return hf
    known = sorted({f for m in _models_at(loc[:-1]) for f in m.model_fields})
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (expected one of: {', '.join(known)})" if known else "unknown key"


def _format_error(err: Any, source: str, lines: dict[tuple[str, ...], int]) -> tuple[int | None, str]:
    """One pydantic error as (its line, ``file:line: dotted.key: message``)."""
    raw_loc = tuple(err["loc"])
    loc = [str(x) for x in raw_loc if not (isinstance(x, str) and x in _TAGS)]
    line = next((lines[tuple(loc[:n])] for n in range(len(loc), 0, -1) if tuple(loc[:n]) in lines), None)
    where = f"{source}:{line}" if line else source
    key = ".".join(loc) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = _unknown_key(raw_loc)
    elif isinstance(err.get("input"), bool) and err["type"] in ("string_type", "literal_error"):
        msg += " (YAML reads a bare yes/no/on/off/true/false as a boolean: quote it)"
    elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
        allowed = [str(v).strip("'") for v in str(err.get("ctx", {}).get("expected", "")).replace(" or ", ", ")
                   .split(", ")]
        close = difflib.get_close_matches(err["input"], allowed, n=1, cutoff=0.6)
        if close:
            msg += f" (did you mean '{close[0]}'?)"
    return line, f"{where}: {key}: {msg}"


def _format_validation(e: ValidationError, source: str, lines: dict[tuple[str, ...], int]) -> str:
    """Every problem (up to :data:`MAX_LISTED_ERRORS`), one ``file:line: key: message`` line each, in file order."""
    errors = e.errors()
    inner = {tuple(err["loc"][:n]) for err in errors for n in range(1, len(err["loc"]))}
    errors = [err for err in errors if not (err["type"] == "too_short" and tuple(err["loc"]) in inner)]  # its item
    found = sorted({_format_error(err, source, lines) for err in errors},
                   key=lambda x: (x[0] is None, x[0] or 0, x[1]))
    out = [text for _, text in found]
    if len(out) > MAX_LISTED_ERRORS:
        out = [*out[:MAX_LISTED_ERRORS], f"{source}: … and {len(out) - MAX_LISTED_ERRORS} more problems"]
    return "\n".join(out)


def config_from_dict(raw: dict[str, Any], source: str = "<config>", text: str = "") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source, yaml_key_lines(text))) from None


def read_yaml(path: str | Path, what: str = "config") -> tuple[Any, str]:
    """(parsed YAML, its text); a missing file or malformed YAML is a one-line error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = decode_text(path, path.read_bytes())
    except DataError as e:
        raise ConfigError(str(e)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: malformed YAML: {getattr(e, 'problem', e)}") from None
    if twice := duplicate_keys(text):
        raise ConfigError("\n".join(f"{path}:{line}: {key}: given twice (first at line {first}; YAML would keep "
                                     "only this one): merge them" for line, key, first in twice[:MAX_LISTED_ERRORS]))
    return raw, text


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config, apply dotted overrides and validate. Relative data paths stay as written."""
    raw, text = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    raw = apply_overrides(raw, overrides or [])
    return config_from_dict(raw, str(path), text)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
