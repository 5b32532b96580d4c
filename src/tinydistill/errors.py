"""User-facing errors: one line naming the file, the row or line (and column), and the field."""

from __future__ import annotations

from pathlib import Path


class TinyDistillError(Exception):
    """An error caused by the user's input; the CLI prints it on one line and exits with code 2."""


class DataError(TinyDistillError):
    """Bad data: names the file, the line (and column where known) or else the row, and the field.

    ``row`` is the record's 0-based index; it is shown counting from 1, as lines are."""

    def __init__(
        self, path: str | Path, message: str, *, row: int | None = None, line: int | None = None,
        field: str | None = None, column: int | None = None,
    ) -> None:
        where = str(path)
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        elif row is not None:
            where += f" row {row + 1}"
        if field is not None:
            where += f" field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.line, self.field, self.column = str(path), row, line, field, column


class ConfigError(TinyDistillError):
    """Bad configuration: names the file, the line and the dotted key (one line per problem)."""
