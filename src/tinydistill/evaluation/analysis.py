"""Error analysis of a run's predictions: accuracy per class and domain, confusion, collapse, and where the
student beats or loses to each teacher (the answer the teacher's rationale states), with examples.

``tinydistill analyze RUN_DIR`` writes ``analysis.json`` and ``analysis.md`` into the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_config
from ..data import LETTERS, Example, dataset_label, load_examples, load_split, load_train_valid, stated_answer
from ..errors import ConfigError, DataError
from ..files import write_json_atomic
from ..teachers import ImportedTeacher, build_teacher
from .evaluate import collapse_metrics, distribution

NONE_LABEL = "none"  # the confusion-matrix column of rows with no parsed prediction
SNIPPET_CHARS = 240


# ------------------------------------------------------------------------------------------------ joining
def read_predictions(path: str | Path) -> list[dict]:
    """The rows of a ``predictions.jsonl``; a bad line, or no row at all, raises :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "predictions file not found (train or evaluate the run first)")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not JSON: {e.msg}", line=i) from None
        if not isinstance(row, dict) or "id" not in row:
            raise DataError(path, "expected an object with an 'id'", line=i, field="id")
        rows.append(row)
    if not rows:  # an analysis of nothing would replace the run's own analysis.json
        raise DataError(path, "no predictions in this file (empty); give the predictions.jsonl of a run or eval")
    return rows


def join_predictions(predictions: Sequence[dict], examples: Sequence[Example],
                     source: str | Path = "predictions") -> list[Example]:
    """The example of each prediction row, by id; an unknown id or a different gold answer is a
    :class:`DataError` (the predictions were made on other data)."""
    by_id: dict[str, Example] = {}
    for ex in examples:
        by_id.setdefault(str(ex.id), ex)
    out = []
    for i, row in enumerate(predictions, start=1):
        found = by_id.get(str(row["id"]))
        if found is None:
            raise DataError(source, f"id {row['id']!r} is not in the data (wrong --data or --split?)", line=i,
                            field="id")
        gold = row.get("gold")
        if found.choices and isinstance(gold, int) and gold != found.answer:
            raise DataError(source, f"gold {gold} but the data's answer is {found.answer} (wrong --data?)", line=i,
                            field="gold")
        out.append(found)
    return out


# ----------------------------------------------------------------------------------------------- analysis
def _letter(i: int | None) -> str:
    return NONE_LABEL if i is None else LETTERS[i]


def _labeled(ex: Example, choice: int | None) -> str | None:
    return None if choice is None else f"({LETTERS[choice]}) {ex.choices[choice]}"


def _snippet(text: str | None, n: int = SNIPPET_CHARS) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _tally(groups: Mapping[str, list[bool]]) -> dict[str, dict[str, float | int]]:
    return {k: {"n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)} for k, v in sorted(groups.items())}


def _example(ex: Example, student: int | None, teacher: tuple[int | None, str | None] | None = None) -> dict:
    """One listed example; ``teacher``: (its stated answer, its rationale)."""
    row = {"id": ex.id, "question": ex.question, "choices": list(ex.choices), "gold": _labeled(ex, ex.answer),
           "student": _labeled(ex, student)}
    if teacher is not None:
        row.update(teacher=_labeled(ex, teacher[0]), rationale=_snippet(teacher[1]))
    return row


def _mode_summary(preds: Sequence[int | None], examples: Sequence[Example]) -> dict:
    scored = [(p, ex.answer) for p, ex in zip(preds, examples, strict=True) if ex.answer is not None]
    acc = sum(p == a for p, a in scored) / len(scored) if scored else None
    return {"accuracy": acc, **collapse_metrics(preds), "distribution": distribution(preds)}


def _teacher_comparison(name: str, rationales: Sequence[str | None], preds: Sequence[int | None],
                        examples: Sequence[Example], n_examples: int) -> dict:
    stated = [stated_answer(r, ex.choices) if r else None for r, ex in zip(rationales, examples, strict=True)]
    counts = {"both_right": 0, "both_wrong": 0, "student_beats": 0, "student_loses": 0}
    beats: list[dict] = []
    loses: list[dict] = []
    labeled = 0
    for ex, p, t, r in zip(examples, preds, stated, rationales, strict=True):
        if ex.answer is None:
            continue
        labeled += 1
        s_ok, t_ok = p == ex.answer, t == ex.answer
        if s_ok and t_ok:
            counts["both_right"] += 1
        elif not s_ok and not t_ok:
            counts["both_wrong"] += 1
        elif s_ok:
            counts["student_beats"] += 1
            if len(beats) < n_examples:
                beats.append(_example(ex, p, (t, r)))
        else:
            counts["student_loses"] += 1
            if len(loses) < n_examples:
                loses.append(_example(ex, p, (t, r)))
    return {"accuracy": (counts["both_right"] + counts["student_loses"]) / labeled if labeled else None,
            "coverage": sum(r is not None for r in rationales) / max(len(examples), 1),
            "stated": sum(t is not None for t in stated) / max(len(examples), 1),
            **counts, "beats_examples": beats, "loses_examples": loses}


def analyze_predictions(
    predictions: Sequence[dict], examples: Sequence[Example],
    teacher_rationales: Mapping[str, Sequence[str | None]] | None = None, *, n_examples: int = 5,
    default_domain: str | None = None,
) -> dict[str, Any]:
    """The error analysis of prediction rows aligned with ``examples`` (see :func:`join_predictions`).

    ``prediction`` is the student's answer (choice index or ``None``); ``rank_prediction`` /
    ``generate_prediction`` give per-mode summaries. ``teacher_rationales[name][i]`` is teacher ``name``'s
    rationale for ``examples[i]``; the answer it states is compared with the student's. Rows without a
    gold answer count in no accuracy. Open-answer rows (no choices) get accuracy and domains only.
    """
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    domain = [ex.domain or default_domain or "all" for ex in examples]
    if not any(ex.choices for ex in examples):  # open answers: `correct` is exact match
        oks = [bool(row.get("correct")) for row in predictions]
        by_domain: dict[str, list[bool]] = {}
        for d, ok in zip(domain, oks, strict=True):
            by_domain.setdefault(d, []).append(ok)
        return {"n": len(oks), "accuracy": sum(oks) / len(oks) if oks else None, "by_class": {},
                "by_domain": _tally(by_domain), "confusion": None, "collapse": None, "modes": {}, "teachers": {},
                "errors": [{"id": ex.id, "question": ex.question, "gold": list(ex.answers),
                            "student": row.get("prediction_text")}
                           for row, ex, ok in zip(predictions, examples, oks, strict=True) if not ok][:n_examples]}
    preds: list[int | None] = [row.get("prediction") for row in predictions]
    width = max(len(ex.choices) for ex in examples)
    labels = [LETTERS[i] for i in range(width)]
    columns = [*labels, NONE_LABEL]
    matrix = [[0] * len(columns) for _ in labels]
    by_class: dict[str, list[bool]] = {}
    by_dom: dict[str, list[bool]] = {}
    errors: list[dict] = []
    for ex, p, d in zip(examples, preds, domain, strict=True):
        if ex.answer is None:
            continue
        ok = p == ex.answer
        matrix[ex.answer][columns.index(_letter(p))] += 1
        by_class.setdefault(LETTERS[ex.answer], []).append(ok)
        by_dom.setdefault(d, []).append(ok)
        if not ok and len(errors) < n_examples:
            errors.append(_example(ex, p))
    scored = [ok for v in by_class.values() for ok in v]
    modes = {mode: _mode_summary([row.get(f"{mode}_prediction") for row in predictions], examples)
             for mode in ("rank", "generate") if any(f"{mode}_prediction" in row for row in predictions)}
    teachers = {name: _teacher_comparison(name, rats, preds, examples, n_examples)
                for name, rats in (teacher_rationales or {}).items()}
    return {
        "n": len(predictions), "labeled": len(scored), "accuracy": sum(scored) / len(scored) if scored else None,
        "by_class": _tally(by_class), "by_domain": _tally(by_dom),
        "confusion": {"rows": labels, "columns": columns, "matrix": matrix},
        "collapse": {**collapse_metrics(preds), "distribution": distribution(preds)},
        "modes": modes, "teachers": teachers, "errors": errors,
    }


# ------------------------------------------------------------------------------------------------ run dir
def _teacher_rationales(cfg: RunConfig, run_dir: Path, split: str, examples: Sequence[Example],
                        notes: list[str]) -> dict[str, list[str | None]]:
    """Imported teachers as configured; live ones only from ``teachers/<name>.<split>.jsonl`` (never called)."""
    out = {}
    for spec in cfg.teachers:
        if spec.kind == "imported":
            teacher = build_teacher(spec, cache_path=run_dir / "cache.sqlite", icl_pool=())
        else:
            path = run_dir / "teachers" / f"{spec.name}.{split}.jsonl"
            if not path.is_file():
                notes.append(f"teacher {spec.name} ({spec.kind}): no {path.name}; run `tinydistill teach "
                             f"--splits {split}` to include it")
                continue
            teacher = ImportedTeacher(spec.name, path)
        out[spec.name] = teacher.rationales(examples)
    return out


def analyze_run(run_dir: str | Path, *, data: str | Path | None = None, split: str = "valid", fmt: str = "auto",
                predictions: str | Path | None = None, n_examples: int = 5) -> dict[str, Any]:
    """Analyse a run folder's predictions on its valid (or test) split, or on ``data``/``split``.

    ``predictions`` defaults to ``predictions.jsonl`` (``test_predictions.jsonl`` for ``split="test"``).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    pred_path = Path(predictions) if predictions else run_dir / (
        "test_predictions.jsonl" if split == "test" and data is None else "predictions.jsonl")
    rows = read_predictions(pred_path)
    if data is not None:
        examples, source = load_examples(data, split, fmt=fmt, task=cfg.data.task), data
    elif split == "valid":
        examples = load_train_valid(cfg)[1]
        source = cfg.data.valid.path if cfg.data.valid is not None else cfg.data.train.path
    elif split == "test" and cfg.data.test is not None:
        examples = load_split(cfg.data.test, "test", cfg.seed, cfg.data.task)
        source = cfg.data.test.path
    else:
        raise ConfigError(f"{run_dir}: split {split!r} is not configured in the run; give --data PATH")
    joined = join_predictions(rows, examples, pred_path)
    notes: list[str] = []
    rationales = _teacher_rationales(cfg, run_dir, split, joined, notes) if any(ex.choices for ex in joined) else {}
    out = analyze_predictions(rows, joined, rationales, n_examples=n_examples, default_domain=dataset_label(source))
    return {"run": str(run_dir), "split": split, "data": str(source), "predictions": str(pred_path),
            "notes": notes, **out}


# ----------------------------------------------------------------------------------------------- markdown
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _tally_table(title: str, tally: Mapping[str, Mapping]) -> list[str]:
    lines = [f"| {title} | rows | correct | accuracy |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['correct']} | {_pct(v['accuracy'])} |" for k, v in tally.items()]
    return lines


def _example_lines(rows: Sequence[Mapping]) -> list[str]:
    out = []
    for r in rows:
        line = f"- `{r['id']}` {r['question']} — gold {r['gold']}; student {r['student'] or 'no answer'}"
        if "teacher" in r:
            line += f"; teacher {r['teacher'] or 'no answer'}"
            if r.get("rationale"):
                line += f" — “{r['rationale']}”"
        out.append(line.replace("|", "\\|"))
    return out


def analysis_tables_markdown(a: Mapping[str, Any]) -> str:
    """The summary and tables of one analysis (per class, per domain, confusion, student vs. teachers)."""
    lines = [f"Student accuracy {_pct(a['accuracy'])}%."]
    if a.get("collapse"):
        c = a["collapse"]
        lines += [f"Top prediction share {_pct(c['top_share'])}%, prediction entropy {c['entropy_bits']:.2f} bits, "
                  f"distribution `{c['distribution']}`."]
    for mode, m in a.get("modes", {}).items():
        lines += [f"- {mode}: accuracy {_pct(m['accuracy'])}%, top share {_pct(m['top_share'])}%, "
                  f"entropy {m['entropy_bits']:.2f} bits"]
    lines.append("")
    if a.get("by_class"):
        lines += ["## Accuracy per gold answer", "", *_tally_table("gold", a["by_class"]), ""]
    lines += ["## Accuracy per domain", "", *_tally_table("domain", a["by_domain"]), ""]
    if a.get("confusion"):
        c = a["confusion"]
        lines += ["## Confusion matrix (rows: gold, columns: prediction)", "",
                  "| gold \\ pred | " + " | ".join(c["columns"]) + " |", "|---|" + "---:|" * len(c["columns"])]
        lines += [f"| {g} | " + " | ".join(map(str, row)) + " |" for g, row in zip(c["rows"], c["matrix"],
                                                                                   strict=True)]
        lines.append("")
    if a.get("teachers"):
        lines += ["## Student vs. each teacher's stated answer", "",
                  "| teacher | teacher acc | stated | both right | student beats | student loses | both wrong |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {n} | {_pct(t['accuracy'])} | {_pct(t['stated'])} | {t['both_right']} | {t['student_beats']} | "
                  f"{t['student_loses']} | {t['both_wrong']} |" for n, t in a["teachers"].items()]
        lines.append("")
    return "\n".join(lines)


def analysis_markdown(a: Mapping[str, Any]) -> str:
    """``analysis.md``: the tables, then examples of each kind of disagreement and some wrong answers."""
    lines = [f"# Error analysis: `{a.get('run', 'run')}` ({a.get('split', 'valid')}, {a['n']} rows)", "",
             analysis_tables_markdown(a)]
    for n, t in a.get("teachers", {}).items():
        for key, title in (("beats_examples", "student right, teacher not"),
                           ("loses_examples", "teacher right, student not")):
            if t[key]:
                lines += [f"## {n}: {title}", "", *_example_lines(t[key]), ""]
    if a.get("errors"):
        lines += ["## Some wrong answers", "", *_example_lines(a["errors"]), ""]
    if a.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in a["notes"]], ""]
    return "\n".join(lines)


def write_analysis(out_dir: str | Path, analysis: Mapping[str, Any]) -> Path:
    """Write ``analysis.json`` and ``analysis.md`` into ``out_dir``; returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "analysis.json", analysis)
    (out_dir / "analysis.md").write_text(analysis_markdown(analysis), encoding="utf-8")
    return out_dir / "analysis.json"


def summary_line(a: Mapping[str, Any], out: Path) -> str:
    """The one line ``tinydistill analyze`` prints: accuracy, collapse, weakest class, each teacher's tally."""
    worst = min(a["by_class"].items(), key=lambda kv: kv[1]["accuracy"], default=None)
    return (f"{a['split']} ({a['n']} rows): accuracy {_pct(a['accuracy'])}%"
            + (f", top share {_pct(a['collapse']['top_share'])}%" if a.get("collapse") else "")
            + (f", weakest gold class ({worst[0]}) {_pct(worst[1]['accuracy'])}%" if worst else "")
            + "".join(f"; vs {n}: +{t['student_beats']}/-{t['student_loses']}" for n, t in a["teachers"].items())
            + f"; wrote {out}/analysis.json, analysis.md")
