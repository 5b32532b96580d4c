"""``tinydistill teach CONFIG.yaml``: rationales for every row of the chosen splits from every live teacher.

Outputs go through ``<run_dir>/cache.sqlite`` (so a second run makes zero calls) and are written to
``<run_dir>/teachers/<name>.<split>.jsonl`` as
``{id, rationale, stated_answer, agrees, weight, flags, text}``;
sample k > 0 goes to ``<name>.sample<k>.<split>.jsonl``. A dropped rationale is written as ``""``, which
``ImportedTeacher`` skips, so these files can be read back as imported teachers.

Sharded (``--shard i/n``, or the rank under ``accelerate launch`` / ``torchrun``): process i generates rows
``i::n``; shard 0 then reads every row from the cache — waiting for rows other live processes hold, generating
any nobody claimed — and alone writes the files.

While it runs, a progress bar per (teacher, split) shows outputs done, cache hits, retries and failures (with
output to a file, not a terminal: a plain count line every 30 s and at the end of each split); at the end a
table sums them up. A request that fails for good stops with one line naming the teacher, the row and the
endpoint; every output received before it is in the cache, so running the command again resumes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .config import RunConfig
from .data import Example
from .data import load_split as load_source
from .errors import ConfigError, TinyDistillError
from .teachers import LiveTeacher, RationaleRecord, build_teacher
from .training import shard


def load_split(cfg: RunConfig, split: str) -> list[Example]:
    """Rows of ``cfg.data.<split>`` exactly as training reads them (same seeded ``limit``)."""
    src = getattr(cfg.data, split, None)
    if src is None:
        raise ConfigError(f"the config has no data.{split}")
    return load_source(src, split, cfg.seed)


def record_json(rec: RationaleRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "rationale": rec.rationale or "",
        "stated_answer": rec.stated_answer,
        "agrees": rec.agrees,
        "weight": rec.weight,
        "flags": list(rec.flags),
        "text": rec.text,
    }


def write_outputs(
    out_dir: Path, name: str, split: str, records: Sequence[Sequence[RationaleRecord]]
) -> list[Path]:
    """One JSONL per sample index; written to a temporary file then renamed (never half-written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    n = len(records[0]) if records else 1
    for k in range(n):
        path = out_dir / (f"{name}.{split}.jsonl" if k == 0 else f"{name}.sample{k}.{split}.jsonl")
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for recs in records:
                f.write(json.dumps(record_json(recs[k]), ensure_ascii=False) + "\n")
        tmp.replace(path)
        paths.append(path)
    return paths


def summarise(records: Sequence[Sequence[RationaleRecord]]) -> dict[str, float]:
    """Agreement with gold and the quality policy's outcome, over sample 0 of each row."""
    first = [r[0] for r in records]
    n = max(len(first), 1)
    return {
        "rows": len(first),
        "stated": sum(r.stated_answer is not None for r in first) / n,
        "agree": sum(r.agrees for r in first) / n,
        "kept": sum(r.weight == 1.0 for r in first),
        "downweighted": sum(0 < r.weight < 1 for r in first),
        "dropped": sum(r.weight == 0 for r in first),
    }


class _Counts(ProgressColumn):
    """Live counts of one (teacher, split): cache hits, retried faults, requests failed for good."""

    def render(self, task: Any) -> Text:
        f = task.fields
        return Text(f"hits {f['hits']}  retries {f['retries']()}  failed {f['failures']()}")


class _Tally:
    """One (teacher, split): outputs done and cache hits (told by the teacher), the backend's retries and
    failures since it started (HF backends have neither), frozen when the split ends (:meth:`close`): the next
    split's retries never show on this split's bar."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.hits = self.done = 0
        self.final: tuple[int, int] | None = None
        self.retries0, self.failures0 = self.retries(absolute=True), self.failures(absolute=True)
        self.faults0 = dict(getattr(backend, "faults", {}))

    def retries(self, absolute: bool = False) -> int:
        if self.final is not None and not absolute:
            return self.final[0]
        return int(getattr(self.backend, "retries", 0)) - (0 if absolute else self.retries0)

    def failures(self, absolute: bool = False) -> int:
        if self.final is not None and not absolute:
            return self.final[1]
        return int(getattr(self.backend, "failures", 0)) - (0 if absolute else self.failures0)

    def close(self) -> None:
        """The split is over: its counts stay as they are now."""
        self.final = (self.retries(), self.failures())

    def faults(self) -> dict[str, int]:
        now = dict(getattr(self.backend, "faults", {}))
        return {k: v - self.faults0.get(k, 0) for k, v in now.items() if v > self.faults0.get(k, 0)}


#: with output to a file (CI, nohup), a plain count line per (teacher, split) at most this often, and at its end
REPORT_EVERY_S = 30.0


class _Lines:
    """Periodic plain count lines for a console that is not a terminal (where a live bar shows nothing until
    the end): ``teach: remote train 120/1000 hits 20 retries 3 failed 0 (41 s)``."""

    def __init__(self, console: Console, label: str, total: int, tally: _Tally) -> None:
        self.console, self.label, self.total, self.tally = console, label, total, tally
        self.started = self.last = time.perf_counter()

    def update(self, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < REPORT_EVERY_S:
            return
        self.last = now
        t = self.tally
        self.console.print(f"teach: {self.label} {t.done}/{self.total} hits {t.hits} retries {t.retries()} "
                           f"failed {t.failures()} ({now - self.started:.0f} s)", markup=False, highlight=False,
                           soft_wrap=True)


def _records(teacher: LiveTeacher, rows: Sequence[Example], tally: _Tally, bar: Progress, label: str,
             lines: Console | None = None) -> list[list[RationaleRecord]]:
    """``teacher.records(rows)`` with a progress bar fed by every output as it lands (``lines``: plain count
    lines on that console instead, every :data:`REPORT_EVERY_S` and at the end)."""
    total = len(rows) * teacher.generation.num_samples
    task = bar.add_task(label, total=total, hits=0, retries=tally.retries, failures=tally.failures)
    plain = _Lines(lines, label, total, tally) if lines is not None else None

    def on_output(hits: int, generated: int) -> None:
        tally.hits += hits
        tally.done += hits + generated
        bar.update(task, advance=hits + generated, hits=tally.hits)
        if plain is not None:
            plain.update()

    out = teacher.records(rows, on_output=on_output)
    if plain is not None:
        plain.update(final=True)
    return out


def teach(cfg: RunConfig, splits: Sequence[str], shard_of: tuple[int, int] = (0, 1), *,
          progress: bool = False, console: Console | None = None) -> list[dict[str, Any]]:
    """Generate (or fetch from the cache) every live teacher's rationales for ``splits``; one summary per
    (teacher, split) with this process's calls, hits, retries, failures and tokens and the agreement with gold.

    ``shard_of=(i, n)``: this process generates rows ``i::n``; shard 0 also collects all rows and writes the
    files (the others summarise their own rows and write nothing). ``progress``: a live bar on ``console``."""
    index, count = shard_of
    live = [t for t in cfg.teachers if t.kind != "imported"]
    if not live:
        return []
    data = {s: load_split(cfg, s) for s in splits}
    needs_pool = any(t.icl.k > 0 for t in live)
    pool = (data.get("train") or load_split(cfg, "train")) if needs_pool else []
    rows: list[dict[str, Any]] = []
    console = console or Console(stderr=True)
    lines = console if progress and not console.is_terminal else None  # a file: count lines, not a bar
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Counts(),
                   TimeElapsedColumn(), console=console, disable=not progress or lines is not None)
    with bar:
        for spec in live:
            teacher = build_teacher(spec, cache_path=cfg.run_dir / "cache.sqlite", icl_pool=pool)
            assert isinstance(teacher, LiveTeacher)
            try:
                for split in splits:
                    before = teacher.stats.as_dict()
                    tally, started = _Tally(teacher.backend), time.perf_counter()
                    mine = shard(data[split], index, count)
                    try:
                        records = _records(teacher, mine, tally, bar, f"{spec.name} {split}", lines)
                        if index == 0:
                            if count > 1:
                                records = _records(teacher, data[split], tally, bar, f"{spec.name} {split} (all)",
                                                   lines)
                            write_outputs(cfg.run_dir / "teachers", spec.name, split, records)
                    except TinyDistillError as e:  # what arrived is in the cache: say so, on the same line
                        n = teacher.generation.num_samples
                        total = len(mine) + (len(data[split]) if index == 0 and count > 1 else 0)
                        raise TinyDistillError(f"{e} — {tally.done // n} of {total} {split} rows done and cached; "
                                               "run the same command again to resume") from None
                    tally.close()
                    delta = {k: v - before[k] for k, v in teacher.stats.as_dict().items()}
                    rows.append({"teacher": spec.name, "split": split, **delta, "retries": tally.retries(),
                                 "failures": tally.failures(), "faults": tally.faults(),
                                 "seconds": time.perf_counter() - started, **summarise(records)})
            finally:
                teacher.close()
    return rows


def print_teach_report(cfg: RunConfig, rows: Sequence[dict[str, Any]], shard_of: tuple[int, int]) -> None:
    """What ``tinydistill teach`` prints after :func:`teach`: a table per teacher and split, then the totals."""
    console = Console(width=None if sys.stdout.isatty() else 120)
    if not rows:
        console.print("no live (hf/http) teachers in the config: nothing to generate")
        return
    table = Table(title=f"teach: {cfg.run_dir}")
    for title in ("teacher", "split", "rows", "calls", "hits", "retries", "failed", "tokens in/out", "agree",
                  "kept/down/drop", "time"):
        table.add_column(title, justify="left" if title in ("teacher", "split") else "right")
    for r in rows:
        table.add_row(
            r["teacher"], r["split"], str(r["rows"]), str(r["calls"]), str(r["hits"]), str(r["retries"]),
            str(r["failures"]), f"{r['prompt_tokens']}/{r['completion_tokens']}", f"{r['agree']:.0%}",
            f"{r['kept']}/{r['downweighted']}/{r['dropped']}", f"{r['seconds']:.1f} s",
        )
    console.print(table)
    keys = ("calls", "hits", "retries", "failures", "prompt_tokens", "completion_tokens")
    total = {k: sum(r[k] for r in rows) for k in keys}
    faults: dict[str, int] = {}
    for r in rows:
        for kind, n in r["faults"].items():
            faults[kind] = faults.get(kind, 0) + n
    why = f" ({', '.join(f'{k} ×{n}' for k, n in sorted(faults.items()))})" if faults else ""
    part = f"shard {shard_of[0]}/{shard_of[1]}: " if shard_of[1] > 1 else ""
    console.print(
        f"{part}calls {total['calls']}  hits {total['hits']}  retries {total['retries']}{why}  "
        f"failed {total['failures']}  tokens {total['prompt_tokens']} prompt + "
        f"{total['completion_tokens']} completion  cache {cfg.run_dir / 'cache.sqlite'}",
        markup=False, highlight=False, soft_wrap=True,
    )
