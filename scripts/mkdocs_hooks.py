"""MkDocs hook: generates the reference pages at build time, so they cannot go stale.

- ``reference/config.md`` from the pydantic models (``RunConfig`` and everything reachable from it, the teacher
  specs included): every key with its type, default and description;
- ``reference/cli.md`` from the argparse parser (``tinydistill.cli.build_parser``), every subcommand and flag;
- ``results/index.md`` from the recorded reports under ``docs/results/`` (``*/report.md`` and the bench JSON).

Wired in ``mkdocs.yml`` as ``hooks: [scripts/mkdocs_hooks.py]``; the functions are plain and tested directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # document this checkout's code, not whatever is installed
    sys.path.insert(0, str(ROOT / "src"))

from pydantic import BaseModel  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

#: pages this hook adds to the site (they exist in no folder)
GENERATED = ("reference/config.md", "reference/cli.md", "results/index.md")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\n", " "))


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"``{text}``"


# ------------------------------------------------------------------------------------------ config reference
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _is_list(annotation: Any) -> bool:
    """Whether a field holds a list of models (``tuple[X, ...]``, possibly optional)."""
    if typing.get_origin(annotation) in (tuple, list):
        return True
    return any(_is_list(a) for a in typing.get_args(annotation) if typing.get_origin(annotation) is not typing.Literal)


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _type(annotation: Any) -> str:
    """A field's type in YAML terms (Markdown, for a table cell)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(_code(json.dumps(a) if isinstance(a, str) else str(a)) for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin in (tuple, list):
        inner = args[0] if args and (len(args) == 1 or args[-1] is Ellipsis) else None
        return f"list of {_type(inner)}" if inner is not None else "list"
    if origin is dict:
        return f"mapping {_type(args[0])} → {_type(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation)})"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    return _cell(str(annotation))


def _constraints(field: Any) -> str:
    out = []
    for meta in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            out.append(f"matches {_code(pattern)}")
    return ", ".join(out)


def _yaml(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(its defaults)"
    if isinstance(value, tuple):
        value = list(value)
    return _code(json.dumps(value, ensure_ascii=False))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return _yaml(field.default_factory())
    if field.default is PydanticUndefined:
        return "**required**"
    return _yaml(field.default)


def _description(name: str, field: Any, annotation: Any) -> str:
    if field.description:
        return field.description
    models = _models_in(annotation)
    if len(models) == 1 and models[0].__doc__:
        return models[0].__doc__.strip().splitlines()[0]
    return ""


def reachable_models() -> dict[type[BaseModel], list[str]]:
    """Every model reachable from ``RunConfig``, in first-seen order, with the dotted paths it sits at."""
    from tinydistill.config.schema import RunConfig

    found: dict[type[BaseModel], list[str]] = {RunConfig: ["(top level)"]}
    stack: list[tuple[type[BaseModel], str]] = [(RunConfig, "")]
    while stack:
        model, path = stack.pop(0)
        for name, field in model.model_fields.items():
            for sub in _models_in(field.annotation):
                key = f"{path}{name}" + ("[]" if _is_list(field.annotation) else "")
                kind = sub.model_fields.get("kind")
                if kind is not None and isinstance(kind.default, str) and len(_models_in(field.annotation)) > 1:
                    key += f" (kind: {kind.default})"
                if sub not in found:
                    found[sub] = [key]
                    stack.append((sub, key.split(" ")[0] + "."))
                elif key not in found[sub]:
                    found[sub].append(key)
    return found


def config_reference() -> str:
    """The configuration reference page (Markdown)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models in `src/tinydistill/config/schema.py` and "
        "`src/tinydistill/config/teachers.py` when the site is built. Every key can be set in the YAML run "
        "config or on the command line with "
        "`--set key.sub=value` (list items by index: `--set teachers.0.alpha_rationale=1.0`). Unknown keys and "
        "wrong types stop the run with `file:line: key: message`; see [Configuration](../configuration.md) for "
        "an annotated example.",
        "",
    ]
    for model, paths in reachable_models().items():
        doc = (model.__doc__ or "").strip()
        if model.__name__ == "RunConfig" or doc.startswith(("Usage docs", "!!! abstract")):
            doc = "The whole run config: the top-level keys of the YAML file."
        where = ", ".join(_code(p) if p != "(top level)" else p for p in paths)
        lines += [f"## {model.__name__} {{ #{_anchor(model)} }}", "", f"At: {where}.", ""]
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            typ = _type(field.annotation)
            bounds = _constraints(field)
            if bounds:
                typ += f" ({_cell(bounds)})"
            lines.append(f"| {_code(name)} | {typ} | {_default(field)} | "
                         f"{_cell(_description(name, field, field.annotation))} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI reference
def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += f" {action.metavar or action.dest.upper()}"
        else:
            name = action.metavar or action.dest
        details = []
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            details.append("one of " + ", ".join(_code(str(c)) for c in action.choices))
        helped = (action.help or "").lower()
        if isinstance(action, argparse._AppendAction) and "repeatable" not in helped:
            details.append("repeatable")
        if action.required and action.option_strings:
            details.append("required")
        default = action.default
        if (action.option_strings and default not in (None, False, [], argparse.SUPPRESS)
                and not isinstance(action, argparse._VersionAction) and "default" not in helped and default != ""):
            details.append(f"default {_code(str(default))}")
        text = _cell(action.help or "")
        if details:
            text = f"{text} ({'; '.join(details)})" if text else "; ".join(details)
        rows.append(f"| {_code(name)} | {text} |")
    return rows


def _command_section(prog: str, help_text: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} `{prog}`", ""]
    if help_text:
        lines += [help_text[0].upper() + help_text[1:] + ".", ""]
    usage = " ".join(parser.format_usage().removeprefix("usage: ").split())
    lines += ["```text", usage, "```", ""]
    rows = _argument_rows(parser)
    if rows:
        lines += ["| argument | meaning |", "|---|---|", *rows, ""]
    for name, sub_help, sub in _subcommands(parser):
        lines += _command_section(f"{prog} {name}", sub_help, sub, level + 1)
    return lines


def cli_reference() -> str:
    """The CLI reference page (Markdown), walked from the real parser."""
    from tinydistill.cli import build_parser

    parser = build_parser()
    lines = [
        "# CLI reference",
        "",
        "Generated from the argparse parser (`tinydistill.cli.build_parser`) when the site is built. The same "
        "text is printed by `tinydistill COMMAND --help`. Bad input stops with one line naming the file, line and "
        "field, and exit code 2; Ctrl-C prints how to resume (exit 130).",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    subs = _subcommands(parser)
    lines += [f"| [`{name}`](#tinydistill-{name}) | {_cell(text)} |" for name, text, _ in subs]
    lines += ["", "Global options, before the command:", "", "| argument | meaning |", "|---|---|",
              *_argument_rows(parser), ""]
    for name, text, sub in subs:
        lines += _command_section(f"tinydistill {name}", text, sub, 2)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- results
def _first_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return []
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def _bench_table(data: dict[str, Any]) -> list[str]:
    rows = data.get("variants") or data.get("runs") or {}
    if not isinstance(rows, dict) or not rows:
        return []
    wanted = ("examples_per_s", "train_seconds", "seconds", "peak_rss_mb", "speed_ratio", "rank_accuracy")
    cols = [c for c in wanted if any(isinstance(r, dict) and c in r for r in rows.values())]
    out = ["| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, row in rows.items():
        label = row.get("label", key) if isinstance(row, dict) else key
        out.append(f"| {_cell(str(label))} | " + " | ".join(_number(row.get(c, "–")) for c in cols) + " |")
    return out


def results_index(results_dir: Path) -> str:
    """The results page: every recorded reproduce report and bench JSON under ``results_dir``."""
    lines = [
        "# Results",
        "",
        "Generated from the records kept under `docs/results/` when the site is built: each reproduce sweep's "
        "`report.md` (embedded below by its headline table, linked whole) and each benchmark's JSON. How these "
        "were run and how to read them: [Reproducing the papers](../reproducing.md) and "
        "[Benchmarks](../benchmarks.md).",
        "",
    ]
    for report in sorted(results_dir.glob("*/report.md")):
        folder = report.parent.name
        text = report.read_text(encoding="utf-8")
        title = next((ln[2:] for ln in text.splitlines() if ln.startswith("# ")), folder)
        protocol = next((ln for ln in text.splitlines()[1:] if ln and not ln.startswith(("#", "|"))), "")
        lines += [f"## `{folder}`: {title}", "", protocol, ""]
        lines += _first_table(text) + [""]
        links = [f"[full report]({folder}/report.md)"]
        if (report.parent / "report.html").is_file():
            links.append(f"[HTML report]({folder}/report.html)")
        if (report.parent / "report.json").is_file():
            links.append(f"[every cell (JSON)]({folder}/report.json)")
        lines += [" · ".join(links), ""]
        if (report.parent / "plots" / "accuracy.png").is_file():
            lines += [f"![accuracy per dataset and method, {folder}]({folder}/plots/accuracy.png)", ""]
    benches = sorted(results_dir.glob("*.json"))
    if benches:
        lines += ["## Benchmark records", ""]
    for path in benches:
        data = json.loads(path.read_text(encoding="utf-8"))
        facts = [f"{k} {_number(data[k])}" for k in ("dataset", "max_input_length", "steps", "rows", "threads",
                                                     "ratio", "torch") if k in data]
        lines += [f"### [`{path.name}`]({path.name})", "", "; ".join(facts) + ".", ""]
        lines += _bench_table(data) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- mkdocs hooks
def generated_pages(docs_dir: Path) -> dict[str, str]:
    """Every generated page: site path → Markdown."""
    return {"reference/config.md": config_reference(), "reference/cli.md": cli_reference(),
            "results/index.md": results_index(docs_dir / "results")}


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site."""
    from mkdocs.structure.files import File

    with warnings.catch_warnings():  # importing the CLI imports torch, whose deprecation notes are not ours
        warnings.simplefilter("ignore")
        pages = generated_pages(Path(config["docs_dir"]))
    for path, text in pages.items():
        files.append(File.generated(config, path, content=text))
    return files
