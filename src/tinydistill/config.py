"""Typed run configuration (pydantic): YAML + dotted ``--set`` overrides, checked when loaded.

Errors name the file, the line and the dotted key, e.g.
``configs/x.yaml:12: train.lr: Input should be a valid number``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .teachers.specs import ImportedTeacherSpec, TeacherSpec

MINILM_ALIAS = "minilm"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnsConfig(_Strict):
    id: str = "id"
    question: str = "question"
    choices: str = "choices"
    answer: str = "answer"
    domain: str | None = "domain"


class DataSourceConfig(_Strict):
    path: str = Field(description="file, TinyLLM folder, or hub name with format: hf")
    format: Literal["auto", "tinyllm", "json", "jsonl", "csv", "hf"] = "auto"
    split: str | None = Field(None, description="split name; default: the role (train/valid/test)")
    subset: str | None = Field(None, description="hub dataset configuration name")
    columns: ColumnsConfig = ColumnsConfig()
    limit: int | None = Field(None, ge=1, description="keep a seeded random subset of this many rows")
    on_invalid: Literal["error", "skip"] = Field("error", description="stop at a bad row, or skip it (logged)")


class DataConfig(_Strict):
    train: DataSourceConfig
    valid: DataSourceConfig
    test: DataSourceConfig | None = Field(None, description="never read during training")


class StudentConfig(_Strict):
    model: str = Field(MINILM_ALIAS, description="HF name or path; 'minilm' = the offline all-MiniLM-L6-v2")
    architecture: Literal["auto", "seq2seq", "causal", "bert2bert"] = "auto"
    max_input_length: int = Field(256, ge=8)
    max_answer_length: int = Field(32, ge=2)
    max_rationale_length: int = Field(64, ge=2)
    answer_target: Literal["letter_text", "text", "letter"] = Field(
        "letter_text", description="answer target: '(b) iron', 'iron' or '(b)'"
    )


class TrainConfig(_Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(8, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(3e-4, gt=0)
    new_params_lr_scale: float = Field(1.0, gt=0, description="lr multiplier for randomly initialised weights")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    eval_every: int = Field(0, ge=0, description="optimizer steps between valid evaluations; 0 = per epoch")
    checkpoint_every: int = Field(0, ge=0, description="optimizer steps between checkpoints; 0 = at evals")
    keep_checkpoints: int = Field(1, ge=1)
    early_stopping_patience: int = Field(0, ge=0, description="evaluations without improvement; 0 = off")
    select_metric: Literal["rank_accuracy", "generate_accuracy", "valid_loss"] = "rank_accuracy"
    num_workers: int = Field(0, ge=0)


class EvalConfig(_Strict):
    modes: tuple[Literal["rank", "generate"], ...] = ("rank", "generate")
    batch_size: int = Field(32, ge=1)
    rank_reduction: Literal["sum", "mean"] = "sum"
    max_new_tokens: int = Field(32, ge=1)
    valid_limit: int | None = Field(None, ge=1, description="rows of valid used for selection evals")


class RunConfig(_Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    output_dir: str = "runs"
    seed: int = 0
    method: Literal["tinyllm", "finetune", "inference"] = "tinyllm"
    answer_prefix: str = "answer: "
    data: DataConfig
    student: StudentConfig = StudentConfig()
    teachers: tuple[TeacherSpec, ...] = ()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        names = [t.name for t in self.teachers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"teacher names must be unique, repeated: {sorted(dup)}")
        prefixes = [self.answer_prefix] + [t.student_prefix for t in self.teachers]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("the answer prefix and every teacher's prefix must differ")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def active_teachers(self) -> tuple[TeacherSpec, ...]:
        """Teachers whose rationale loss is trained (TinyLLM only, α > 0)."""
        if self.method != "tinyllm":
            return ()
        return tuple(t for t in self.teachers if t.alpha_rationale > 0)


# ----------------------------------------------------------------------------------------------- loading
def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML document to its 1-based line (list items use their index)."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*path, str(k.value))
                out[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = (*path, str(i))
                out[key] = v.start_mark.line + 1
                walk(v, key)

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, ())
    return out


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


def _format_validation(e: ValidationError, source: str, lines: dict[tuple[str, ...], int]) -> str:
    err = e.errors()[0]
    loc = [str(x) for x in err["loc"] if not (isinstance(x, str) and x in ("imported", "hf", "http"))]
    # find the deepest location that has a line
    line = None
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in lines:
            line = lines[tuple(loc[:n])]
            break
    where = f"{source}:{line}" if line else source
    key = ".".join(loc) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{where}: {key}: {msg}{more}"


def config_from_dict(raw: dict[str, Any], source: str = "<config>", text: str = "") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source, _line_index(text))) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config, apply dotted overrides and validate. Relative data paths stay as written."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: malformed YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    raw = apply_overrides(raw, overrides or [])
    return config_from_dict(raw, str(path), text)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "RunConfig", "DataConfig", "DataSourceConfig", "StudentConfig", "TrainConfig", "EvalConfig",
    "ImportedTeacherSpec", "load_config", "config_from_dict", "apply_overrides", "dump_config",
]
