"""Build a Teacher from its spec: imported files, a local HF model, or an HTTP endpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import HFTeacherSpec, HTTPTeacherSpec, ImportedTeacherSpec
from ..data import Example
from .base import Teacher
from .cache import TeacherCache
from .hf import HFBackend
from .http import HTTPBackend
from .imported import ImportedTeacher
from .live import LiveTeacher


def _hf_backend(spec: HFTeacherSpec) -> Any:
    return HFBackend.from_spec(spec)


def _http_backend(spec: HTTPTeacherSpec) -> Any:
    return HTTPBackend.from_spec(spec)


#: Live backends by teacher ``kind``.
BACKENDS: dict[str, Callable[[Any], Any]] = {"hf": _hf_backend, "http": _http_backend}


def build_teacher(
    spec: ImportedTeacherSpec | HFTeacherSpec | HTTPTeacherSpec,
    *,
    cache_path: str | Path,
    icl_pool: Sequence[Example] = (),
    backend: Any = None,
) -> Teacher:
    """A ready Teacher. Live ones share the cache at ``cache_path``; ``icl_pool`` (the training rows) feeds
    the in-context example generator when ``spec.icl.k > 0``; ``backend`` overrides the spec's (tests)."""
    if isinstance(spec, ImportedTeacherSpec):
        return ImportedTeacher(spec.name, spec.path)
    return LiveTeacher(
        spec.name,
        backend if backend is not None else BACKENDS[spec.kind](spec),
        TeacherCache(cache_path),
        generation=spec.generation,
        icl=spec.icl,
        quality=spec.quality,
        icl_pool=icl_pool,
    )
