"""Experiment trackers (``train.report_to``) through accelerate: TensorBoard, Weights & Biases, MLflow, Trackio, ….

One training run is one tracker run (:class:`TrackerRun`): started once per process start, before the data is
loaded (a tracker that fails to start is a one-line error), with the run's name and resolved config; every record
the loop writes to ``metrics.jsonl`` (each loss term, the learning rate, each valid metric) is logged at its step.
A TinyLLM run's rationale stage logs into the same run, its names prefixed ``rationale_stage/``, and the answer
stage's steps continue after it. TensorBoard writes to ``runs/<name>/tensorboard/``; a resumed run hides the
events logged after its checkpoint (``purge_step``), as it truncates ``metrics.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from accelerate import PartialState
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, TensorBoardTracker, get_available_trackers

from ..errors import ConfigError

#: ``train.report_to`` names (accelerate's trackers); the package each needs, where its name differs
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "aim", "clearml", "dvclive", "swanlab")
PACKAGES = {"tensorboard": "tensorboard"}
PROJECT = "tinydistill"  # the project (W&B, Trackio) or experiment (MLflow) every run is logged under
TENSORBOARD_DIR = "tensorboard"
#: a stage's records are logged under ``<stage>/<name>`` (``rationale_stage/loss``)
RATIONALE_STAGE = "rationale_stage"


def check_installed(names: Sequence[str]) -> None:
    """Raise a one-line error naming the first tracker whose package is missing."""
    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            raise ConfigError(f"train.report_to: {name} is not installed (pip install {PACKAGES.get(name, name)})")


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


class TrackerRun:
    """The trackers of one training run in this process: built and started by :meth:`open` (main process),
    shared by the run's stages, closed by :meth:`finish`."""

    def __init__(self, trackers: list[GeneralTracker]) -> None:
        self.trackers = trackers

    @classmethod
    def open(cls, names: Sequence[str], run_dir: Path, run_name: str, config: Mapping[str, Any],
             resume_step: int = 0) -> TrackerRun:
        """Start ``names``' trackers for ``run_dir`` (TensorBoard: hiding events past ``resume_step``, the global
        step this process resumes from). A tracker that fails to start (MLflow refusing its store, a folder that
        cannot be written) is a one-line :class:`ConfigError` naming it."""
        check_installed(names)
        if not names or not PartialState().is_main_process:
            return cls([])
        trackers: list[GeneralTracker] = []
        flat = {"run_name": run_name, **flatten(config)}
        for name in dict.fromkeys(names):
            try:
                tracker = _build(name, run_dir, run_name, resume_step)
                tracker.start()
                tracker.store_init_configuration(flat)
            except Exception as e:  # noqa: BLE001 - any tracker's own failure becomes one clear line
                for started in trackers:
                    started.finish()
                first = (str(e).strip().splitlines() or [""])[0][:300]
                raise ConfigError(f"train.report_to: {name} failed to start ({type(e).__name__}: {first}); fix "
                                  f"its setup or remove it from train.report_to") from None
            trackers.append(tracker)
        return cls(trackers)

    def log(self, record: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """One ``metrics.jsonl`` record at global ``step``, its names under ``prefix/`` (a stage)."""
        named = {f"{prefix}/{k}" if prefix else k: v for k, v in values(record).items()}
        for tracker in self.trackers:
            tracker.log(named, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


@dataclass(frozen=True)
class TrackedStage:
    """Where one ``train`` call logs in a run's :class:`TrackerRun`: its names under ``prefix/`` (none for the
    answer stage), its steps after ``offset`` (the steps of the stages before it)."""

    run: TrackerRun
    prefix: str = ""
    offset: int = 0

    def log(self, record: Mapping[str, Any]) -> None:
        self.run.log(record, record["step"] + self.offset, self.prefix)


def _build(name: str, run_dir: Path, run_name: str, resume_step: int) -> GeneralTracker:
    if name == "tensorboard":
        kwargs = {"purge_step": resume_step + 1} if resume_step else {}  # SummaryWriter's argument
        return TensorBoardTracker(TENSORBOARD_DIR, run_dir, **kwargs)
    named = {"wandb": {"name": run_name}, "mlflow": {"run_name": run_name}, "trackio": {"name": run_name}}
    tracker_class = LOGGER_TYPE_TO_CLASS[name]
    if tracker_class.requires_logging_directory:
        return tracker_class(PROJECT, str(run_dir), **named.get(name, {}))
    return tracker_class(PROJECT, **named.get(name, {}))
