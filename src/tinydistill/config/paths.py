"""Every path a run config names, checked before anything is loaded: one line per missing path, naming the key.

Relative paths are read from the current folder (where the command runs), as the shipped recipes under
``configs/`` assume; when a missing relative path exists next to the config file, the error says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError
from .loader import read_yaml, yaml_key_lines
from .schema import MINILM_ALIAS, DataConfig, RunConfig

__all__ = ["check_paths", "looks_local"]


def looks_local(name: str) -> bool:
    """Whether a model name is meant as a folder: ``./x``, ``../x``, ``/x``, ``~/x``, ``C:\\x``, ``a/b/c``
    (a hub id is ``name`` or ``org/name``)."""
    return (name.startswith((".", "/", "~")) or "\\" in name or re.match(r"^[A-Za-z]:", name) is not None
            or name.count("/") >= 2)


def _data_paths(data: DataConfig, prefix: str) -> Iterator[tuple[str, str, str]]:
    for role in ("train", "valid", "test"):
        src = getattr(data, role)
        if src is not None and src.format != "hf":
            yield f"{prefix}data.{role}.path", src.path, "file" if Path(src.path).suffix else "folder"


def _paths(cfg: RunConfig, data_only: bool) -> Iterator[tuple[str, str, str]]:
    """(dotted key, path, what it should be) for every path the config names."""
    yield from _data_paths(cfg.data, "")
    for k, stage in enumerate(cfg.stages):
        if stage.data is not None:
            yield from _data_paths(stage.data, f"stages.{k}.")
    if data_only:
        return
    if cfg.student.model != MINILM_ALIAS and looks_local(cfg.student.model):
        yield "student.model", cfg.student.model, "folder"
    model = cfg.whitebox.teacher_model
    if cfg.method in ("kd", "whitebox") and model and looks_local(model):
        yield "whitebox.teacher_model", model, "folder"
    for i, teacher in enumerate(cfg.teachers):
        if teacher.kind == "imported" and teacher.path is not None:
            yield f"teachers.{i}.path", teacher.path, "file"
        elif teacher.kind == "hf" and looks_local(teacher.model):
            yield f"teachers.{i}.model", teacher.model, "folder"


def _exists(path: Path, what: str, key: str) -> bool:
    if key.endswith(".path") and key.startswith(("data.", "stages.")):  # a data source: a file or a folder
        return path.exists()
    return path.is_dir() if what == "folder" else path.is_file()


def check_paths(cfg: RunConfig, config_file: str | Path | None = None, *, data_only: bool = False,
                skip: tuple[str, ...] = ()) -> None:
    """Raise one :class:`ConfigError` listing every path of ``cfg`` that is not there
    (``file:line: key: path: … not found``). ``config_file``: the YAML the config came from, for its lines and
    a hint when a relative path exists next to it. ``data_only``: the data sources only (``data check``);
    ``skip``: keys not needed (``teach`` loads no student)."""
    lines: dict[tuple[str, ...], int] = {}
    if config_file is not None:
        lines = yaml_key_lines(read_yaml(config_file)[1])
    problems = []
    for key, value, what in _paths(cfg, data_only):
        if key in skip:
            continue
        path = Path(value).expanduser()
        if _exists(path, what, key):
            continue
        line = lines.get(tuple(key.split(".")))
        where = f"{config_file}:{line}: " if line else f"{config_file}: " if config_file else ""
        message = f"{where}{key}: {value}: {what} not found"
        folder = Path(config_file).parent if config_file is not None else None
        beside = folder / path if folder is not None and not path.is_absolute() else None
        if beside is not None and beside.resolve() != path.resolve() and _exists(beside, what, key):
            message += (f" (relative paths are read from the current folder, {Path.cwd()}; it exists next to the "
                        f"config: write {beside} or run from {folder})")
        elif what == "folder" and key.endswith("model"):
            message += " (a local model folder; a Hugging Face hub name is org/name)"
        problems.append(message)
    if problems:
        raise ConfigError("\n".join(problems))
