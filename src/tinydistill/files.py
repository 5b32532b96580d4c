"""Plain file I/O: atomic JSON writes, forgiving JSON / JSONL reads, decoding a text file's bytes."""

from __future__ import annotations

import codecs
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from .errors import DataError


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; folders that cannot be opened or synced are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():  # e.g. Windows: folders cannot be opened; their renames are durable by other means
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some network filesystems refuse fsync on a folder (EINVAL)
            raise
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file, fsync and one ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a temporary file, fsync and one ``os.replace``: a kill leaves the
    old file or the new one, never a cut one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


#: a progress bar written to a file (not a terminal) prints a line at most this often
FILE_BAR_INTERVAL_S = 30.0


def bar_options(leave: bool = True, stream: TextIO | None = None) -> dict[str, Any]:
    """tqdm options for a bar on ``stream`` (default stderr). A terminal redraws it in place (``leave`` as asked);
    a file (CI, ``nohup``, ``> log 2>&1``) gets a line every :data:`FILE_BAR_INTERVAL_S` seconds and the bar
    always ends with a newline, so the next result line starts a line of its own instead of being glued after a
    ``\r``-cleared bar."""
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return {"leave": leave}
    return {"leave": True, "mininterval": FILE_BAR_INTERVAL_S, "maxinterval": FILE_BAR_INTERVAL_S}


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None if the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped); [] if the file is missing."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _bad_byte(path: Path, data: bytes, e: UnicodeDecodeError, message: str) -> DataError:
    before = data[: e.start]
    line, column = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
    return DataError(path, message.format(byte=f"0x{data[e.start]:02x}"), line=line, column=column)


def check_encoding(encoding: str) -> None:
    """``encoding`` names a text codec Python knows (``cp1252``, ``latin-1``…); else a ValueError saying so.

    ``rot13`` or ``base64`` are codecs too, but not text encodings: ``bytes.decode`` refuses them."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"{encoding!r} is not a text encoding (e.g. utf-8, cp1252, latin-1)")


def decode_text(path: Path, data: bytes, encoding: str | None = None, hint: str = "") -> str:
    """UTF-8, or the encoding a byte-order mark names (UTF-8/16/32, as Excel and Notepad write); the BOM is
    dropped. Anything else is a one-line error naming the line and column of the first bad byte.

    ``encoding`` (e.g. ``cp1252``, ``latin-1``): the file is read in it, as told; nothing is guessed. ``hint``
    ends the message of a file that is not UTF-8 (what else the user may do)."""
    if encoding is not None:
        try:
            check_encoding(encoding)
        except ValueError as e:
            raise DataError(path, str(e)) from None
        try:
            return data.decode(encoding).removeprefix("\ufeff")
        except UnicodeDecodeError as e:
            raise _bad_byte(path, data, e, f"not valid {encoding} (byte {{byte}}), the encoding its data source "
                                           "names") from None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise DataError(path, f"not valid {encoding.upper().removesuffix('-SIG')} after its byte-order "
                                      "mark") from None
    if b"\x00" in data[:4096]:
        raise DataError(path, "looks like UTF-16 without a byte-order mark; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad_byte(path, data, e, "not valid UTF-8 (byte {byte}); save the file as UTF-8 (Excel: 'CSV "
                                       "UTF-8'), it may be Latin-1 or Windows-1252" + hint) from None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this machine (a lease or a temp folder's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
