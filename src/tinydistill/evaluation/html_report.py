"""Self-contained HTML reports: one file, plots embedded as base64 PNG, no external assets.

:func:`html_page` assembles any report from ``(heading, content)`` sections; :func:`write_html_report` is the
page of one run folder (config, metrics, loss curve, per-class accuracy, confusion matrix, error examples).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..files import read_json, read_jsonl
from .analysis import analysis_tables_markdown
from .report import plot_loss

# matplotlib is imported where a figure is drawn: a heavy import (and its Agg backend must be chosen before
# pyplot), paid only by the reports that plot


class Html(str):
    """A raw HTML fragment (a plain ``str`` section is read as markdown)."""


#: A section's content: markdown (str), raw HTML (:class:`Html`), a PNG file (Path), PNG bytes, a matplotlib
#: figure, or ``None`` (the section is left out).
Content = Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f4f4f4}
code,pre{background:#f6f6f6;border-radius:3px;padding:0 .2em}pre{padding:.6em;overflow-x:auto}
img{max-width:100%}.muted{color:#777}.ex{margin:.3em 0 .8em}details{margin:.5em 0}
"""


# ------------------------------------------------------------------------------------------------ images
def png_data_uri(png: bytes | str | Path) -> str:
    """``data:image/png;base64,…`` of PNG bytes or a PNG file."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def img_tag(png: bytes | str | Path, alt: str = "") -> Html:
    return Html(f'<img alt="{html.escape(alt)}" src="{png_data_uri(png)}">')


# ---------------------------------------------------------------------------------------------- markdown
def _inline(text: str, base_dir: Path | None) -> str:
    """Escape, then render `code`, **bold**, images (embedded if local) and links."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)

        def image(m: re.Match) -> str:
            alt, src = m.group(1), m.group(2)
            path = (base_dir / src) if base_dir is not None else Path(src)
            if path.is_file() and path.suffix.lower() == ".png":
                return img_tag(path, alt)
            return f'<span class="muted">[image {html.escape(alt)}: {html.escape(src)}]</span>'

        s = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", image, s)
        s = re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', s)
        out.append(s)
    return "".join(out)


def _table(lines: Sequence[str], base_dir: Path | None) -> str:
    def cells(line: str) -> list[str]:
        line = line.strip().strip("|")
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]

    head, body = cells(lines[0]), [cells(x) for x in lines[2:]]
    thead = "".join(f"<th>{_inline(c, base_dir)}</th>" for c in head)
    rows = "".join("<tr>" + "".join(f"<td>{_inline(c, base_dir)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{thead}</tr></thead><tbody>{rows}</tbody></table>"


def markdown_to_html(text: str, base_dir: Path | None = None) -> str:
    """The markdown the reports write: headings, pipe tables, bullet lists, fenced code, paragraphs, inline
    code/bold/links, and images (local PNGs, relative to ``base_dir``, are embedded)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre>{html.escape(chr(10).join(lines[i + 1: j]))}</pre>")
            i = j + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = min(len(m.group(1)) + 2, 6)  # below the page's <h1> and the section's <h2>
            out.append(f"<h{level}>{_inline(m.group(2), base_dir)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|?[\s:|-]+\|?\s*$",
                                                                              lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j], base_dir))
            i = j
        elif re.match(r"\s*[-*]\s+", line):
            items = []
            while i < len(lines) and (m := re.match(r"\s*[-*]\s+", lines[i])):
                items.append(f"<li>{_inline(lines[i][m.end():], base_dir)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#{1,6}\s|```|\s*\||\s*[-*]\s)", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para), base_dir)}</p>")
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------- page
def render_content(content: Content, base_dir: Path | None = None, alt: str = "") -> str:
    """One section's HTML; see :data:`Content` (``alt``: the text of an image)."""
    if content is None:
        return ""
    if isinstance(content, Html):
        return str(content)
    if isinstance(content, str):
        return markdown_to_html(content, base_dir)
    if isinstance(content, bytes | Path):
        return img_tag(content, alt)
    if hasattr(content, "savefig"):
        return img_tag(figure_png(content), alt)
    raise TypeError(f"cannot render a section of type {type(content).__name__}")


def html_page(title: str, sections: Sequence[tuple[str, Content]], *, base_dir: str | Path | None = None) -> str:
    """A complete, self-contained HTML page: ``<h1>title</h1>`` then each ``(heading, content)`` section
    (markdown str, :class:`Html`, PNG path/bytes, matplotlib figure; ``None`` content is skipped).
    Markdown images are embedded from ``base_dir``."""
    base = Path(base_dir) if base_dir is not None else None
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, content in sections:
        if content is None:
            continue
        body.append(f"<section><h2>{html.escape(heading)}</h2>\n{render_content(content, base, heading)}</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


# ----------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_accuracy_figure(by_class: Mapping[str, Mapping], majority: float | None = None) -> Any:
    """Bars: accuracy per gold answer letter, with each class's row count."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(3.5, 0.7 * len(by_class) + 2), 3))
    keys = list(by_class)
    accs = [100 * by_class[k]["accuracy"] for k in keys]
    bars = ax.bar(keys, accs, color="#4c72b0")
    for b, k in zip(bars, keys, strict=True):
        ax.annotate(f"n={by_class[k]['n']}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=8)
    if majority is not None:
        ax.axhline(100 * majority, color="k", linestyle="--", linewidth=1, label="majority baseline")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylim(0, 105)
    ax.set_xlabel("gold answer")
    ax.set_ylabel("accuracy (%)")
    return fig


def confusion_figure(confusion: Mapping[str, Sequence]) -> Any:
    """Heatmap of the gold × predicted counts."""
    plt = _plt()
    rows, cols, matrix = confusion["rows"], confusion["columns"], confusion["matrix"]
    fig, ax = plt.subplots(figsize=(0.6 * len(cols) + 2, 0.6 * len(rows) + 1.5))
    im = ax.imshow(matrix, cmap="Blues")
    top = max((v for r in matrix for v in r), default=0)
    for i, r in enumerate(matrix):
        for j, v in enumerate(r):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("prediction")
    ax.set_ylabel("gold")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


# ----------------------------------------------------------------------------------------------- run page
def _config_section(run_dir: Path) -> Html | None:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    tr, st = raw.get("train", {}), raw.get("student", {})
    teachers = ", ".join(f"{t.get('name')} ({t.get('kind')}, α={t.get('alpha_rationale')})"
                         for t in raw.get("teachers", [])) or "none"
    data = raw.get("data", {})
    items = [("method", raw.get("method")), ("student", f"{st.get('model')} ({st.get('architecture')})"),
             ("teachers", teachers), ("train data", (data.get("train") or {}).get("path")),
             ("valid data", (data.get("valid") or {}).get("path") or f"{data.get('valid_from_train')} train rows"),
             ("test data", (data.get("test") or {}).get("path")),
             ("training", f"epochs {tr.get('epochs')}, max_steps {tr.get('max_steps')}, batch {tr.get('batch_size')}"
                          f" × accum {tr.get('grad_accum_steps')}, lr {tr.get('lr')} ({tr.get('schedule')}), "
                          f"select on {tr.get('select_metric')}"),
             ("seed", raw.get("seed"))]
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items if v is not None)
    return Html(f"<table>{rows}</table><details><summary>full config.yaml</summary><pre>{html.escape(text)}</pre>"
                "</details>")


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}" if isinstance(x, int | float) and x == x else "–"


def _metrics_section(summary: Mapping) -> Html:
    head = ["split", "model", "acc (rank)", "acc (gen)", "top share", "entropy (bits)", "majority", "rows"]
    rows = []
    for split in ("valid", "test"):
        m = summary.get(split)
        if not m:
            continue
        rows.append([split, "student", _pct(m.get("rank_accuracy", m.get("exact_match"))),
                     _pct(m.get("generate_accuracy")), _pct(m.get("rank_top_share", m.get("generate_top_share"))),
                     f"{m.get('rank_entropy_bits', m.get('generate_entropy_bits', float('nan'))):.2f}",
                     _pct(m.get("majority_baseline")), str(m.get("n", "–"))])
        for name, t in (summary.get("teachers" if split == "valid" else "test_teachers") or {}).items():
            rows.append([split, f"teacher {name} (stated answer)", "–", _pct(t.get("accuracy")),
                         _pct(t.get("top_share")), f"{t.get('entropy_bits', float('nan')):.2f}", "–", "–"])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    secs = (f"<p class=\"muted\">trained {summary.get('train_seconds', 0):.0f} s, evaluated "
            f"{summary.get('eval_seconds', 0):.0f} s; {summary.get('n_train', '–')} training rows, "
            f"{summary.get('n_params', 0) / 1e6:.1f}M parameters.</p>")
    return Html("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>{body}"
                "</tbody></table>" + secs)


def _examples_html(rows: Sequence[Mapping]) -> str:
    out = []
    for r in rows:
        choices = " ".join(f"({chr(97 + i)}) {html.escape(c)}" for i, c in enumerate(r.get("choices", [])))
        parts = [f"<b>{html.escape(r['question'])}</b><br><span class=\"muted\">{choices}</span><br>",
                 f"gold {html.escape(str(r['gold']))} · student {html.escape(str(r['student'] or 'no answer'))}"]
        if "teacher" in r:
            parts.append(f" · teacher {html.escape(str(r['teacher'] or 'no answer'))}")
            if r.get("rationale"):
                parts.append(f"<br><i>“{html.escape(r['rationale'])}”</i>")
        out.append(f"<div class=\"ex\">{''.join(parts)}</div>")
    return "".join(out)


def _errors_section(a: Mapping) -> Html | None:
    parts = [markdown_to_html(analysis_tables_markdown(a))]
    for name, t in a.get("teachers", {}).items():
        for key, count, title in (("beats_examples", "student_beats", "student right, teacher not"),
                                  ("loses_examples", "student_loses", "teacher right, student not")):
            if t.get(key):
                parts.append(f"<h4>{html.escape(name)}: {title} ({t[count]} rows; first {len(t[key])})</h4>"
                             + _examples_html(t[key]))
    if a.get("errors"):
        parts.append("<h4>Some wrong answers</h4>" + _examples_html(a["errors"]))
    return Html("".join(parts))


def write_html_report(run_dir: str | Path, *, analysis: Mapping[str, Any] | None = None,
                      out: str | Path | None = None) -> Path:
    """``report.html`` for a run folder: config, metrics, loss curve, per-class accuracy, confusion matrix and
    error examples. ``analysis`` defaults to the folder's ``analysis.json`` (left out if there is none)."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json") or read_json(run_dir / "report.json") or {}
    a = analysis if analysis is not None else read_json(run_dir / "analysis.json")
    loss_png = run_dir / "plots" / "loss.png"
    if not loss_png.is_file():
        plot_loss(read_jsonl(run_dir / "metrics.jsonl"), loss_png)
    sections: list[tuple[str, Content]] = [
        ("Configuration", _config_section(run_dir)),
        ("Results", _metrics_section(summary) if summary else None),
        ("Training loss and valid accuracy", loss_png if loss_png.is_file() else None),
    ]
    if a and a.get("by_class"):
        sections.append(("Accuracy per gold answer", class_accuracy_figure(
            a["by_class"], (summary.get("valid") or {}).get("majority_baseline"))))
    if a and a.get("confusion"):
        sections.append(("Confusion matrix", confusion_figure(a["confusion"])))
    if a:
        sections.append(("Error analysis", _errors_section(a)))
    name = yaml.safe_load((run_dir / "config.yaml").read_text()).get("name") if (run_dir / "config.yaml").is_file() \
        else run_dir.name
    path = Path(out) if out is not None else run_dir / "report.html"
    path.write_text(html_page(f"Run {name}", sections, base_dir=run_dir), encoding="utf-8")
    return path
