"""Experiment trackers (``train.report_to``) through accelerate: TensorBoard, Weights & Biases, MLflow, Trackio, ….

The run's resolved config and name are logged once per process start; every record the loop writes to
``metrics.jsonl`` (each loss term, the learning rate, each valid metric) is logged at its step. TensorBoard writes
to ``runs/<name>/tensorboard/``; a resumed run hides the events logged after its checkpoint (``purge_step``), as
it truncates ``metrics.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from accelerate import Accelerator
from accelerate.tracking import TensorBoardTracker, get_available_trackers

from ..errors import ConfigError

#: ``train.report_to`` names (accelerate's trackers); the package each needs, where its name differs
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "aim", "clearml", "dvclive", "swanlab")
PACKAGES = {"tensorboard": "tensorboard"}
PROJECT = "tinydistill"  # the project (W&B, Trackio) or experiment (MLflow) every run is logged under
TENSORBOARD_DIR = "tensorboard"


def check_installed(names: Sequence[str]) -> None:
    """Raise a one-line error naming the first tracker whose package is missing."""
    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            raise ConfigError(f"train.report_to: {name} is not installed (pip install {PACKAGES.get(name, name)})")


def log_with(names: Sequence[str], run_dir: Path) -> list[Any]:
    """accelerate's ``log_with``: TensorBoard built here (its folder inside the run), the others by name."""
    check_installed(names)
    return [TensorBoardTracker(TENSORBOARD_DIR, run_dir) if name == "tensorboard" else name
            for name in dict.fromkeys(names)]


def start(accelerator: Accelerator, trackers: Sequence[Any], run_name: str, config: Mapping[str, Any],
          resume_step: int) -> None:
    """Start ``trackers`` (from :func:`log_with`) with the run's name and its flattened config (dotted keys).
    After a resume from step N, TensorBoard hides the interrupted process's events of steps > N."""
    for tracker in trackers:
        if isinstance(tracker, TensorBoardTracker) and resume_step:
            tracker.init_kwargs["purge_step"] = resume_step + 1  # SummaryWriter's argument, read by start()
    named = {"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}, "trackio": {"name": run_name}}
    accelerator.init_trackers(PROJECT, config={"run_name": run_name, **flatten(config)}, init_kwargs=named)


def run_config(run_dir: Path, fallback: Mapping[str, Any]) -> dict[str, Any]:
    """The run's resolved config (``config.yaml``, written before training), else ``fallback``."""
    path = run_dir / "config.yaml"
    if path.is_file():
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(fallback)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists as JSON text (trackers take scalars)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def values(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one ``metrics.jsonl`` record, named as trackers show them: training records as they are
    (``loss``, ``loss/answer``, ``lr``), valid metrics as ``valid/<metric>``."""
    split = record.get("split")
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if split and key == "epoch":  # the training records carry it
            continue
        out[f"{split}/{key.removeprefix(split + '_')}" if split else key] = value
    return out


def finish(accelerator: Accelerator) -> None:
    """Close the trackers (``accelerator.end_training`` would also end the process group)."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()
