"""Rationales produced elsewhere: attached to the examples (TinyLLM layout) or a JSONL ``{id, rationale}``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data import Example, clean_rationale, read_records
from ..errors import DataError


class ImportedTeacher:
    """Serves rationales that already exist; ``None`` for rows without one (never an empty target)."""

    def __init__(self, name: str, path: str | Path | None = None) -> None:
        self.name = name
        self._by_id: dict[str, str] | None = None if path is None else self._read(Path(path))
        self.path = path

    @staticmethod
    def _read(path: Path) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, (line, rec) in enumerate(read_records(path)):
            if not isinstance(rec, dict):
                raise DataError(path, "expected an object with 'id' and 'rationale'", row=i, line=line)
            for fld in ("id", "rationale"):
                if fld not in rec:
                    raise DataError(path, "missing field", row=i, line=line, field=fld)
            if not isinstance(rec["rationale"], str):
                raise DataError(path, "must be a string", row=i, line=line, field="rationale")
            text = clean_rationale(rec["rationale"])
            if text:
                out[str(rec["id"])] = text
        return out

    def rationales(self, examples: Sequence[Example]) -> list[str | None]:
        if self._by_id is not None:
            return [self._by_id.get(ex.id) for ex in examples]
        return [ex.rationales.get(self.name) or None for ex in examples]
