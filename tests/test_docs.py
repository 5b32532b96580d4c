"""The docs: a short README, a nav whose every page exists, and generated references that cover the code."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _hooks() -> Any:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _nav_pages(value)


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_nav_page_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = ROOT / config.get("docs_dir", "docs")
    generated = set(_hooks().GENERATED)
    pages = list(_nav_pages(config["nav"]))
    assert len(pages) >= 10
    missing = [p for p in pages if p not in generated and not (docs / p).is_file()]
    assert not missing, f"mkdocs.yml nav names pages that do not exist: {missing}"
    assert "ARCHITECTURE.md" in pages and "notes.md" in pages


def test_config_reference_covers_every_field() -> None:
    from tinydistill.config.schema import RunConfig

    hooks = _hooks()
    text = hooks.config_reference()
    models = hooks.reachable_models()
    assert RunConfig in models and len(models) >= 15
    for name in RunConfig.model_fields:
        assert f"| `{name}` |" in text, f"RunConfig.{name} is missing from the configuration reference"
    for model in models:
        section = text.split(f"## {model.__name__} ")[1].split("\n## ")[0]
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in section, f"{model.__name__}.{name} is missing from its section"
            assert hooks._description(name, field, field.annotation), (
                f"{model.__name__}.{name} has no description: add Field(description=...) or an attribute docstring")


def test_cli_reference_covers_every_flag() -> None:
    from tinydistill.cli import build_parser

    text = _hooks().cli_reference()

    def walk(parser: argparse.ArgumentParser, prog: str) -> None:
        if prog != "tinydistill":
            assert f"`{prog}`" in text, f"{prog} is missing from the CLI reference"
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in text, f"{prog} {option} is missing from the CLI reference"
                    assert action.help, f"{prog} {option} has no help text"
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prog} {name}")

    walk(build_parser(), "tinydistill")
    assert "`tinydistill data check`" in text and "`--weight-grid" in text


def test_results_page_lists_every_recorded_report() -> None:
    results = ROOT / "docs" / "results"
    text = _hooks().results_index(results)
    reports = sorted(results.glob("*/report.md"))
    assert reports
    for report in reports:
        assert f"({report.parent.name}/report.md)" in text
    for bench in results.glob("*.json"):
        assert f"({bench.name})" in text


def test_the_data_page_counts_the_embedded_obqa_rows_with_duplicate_choices_right() -> None:
    from tinydistill.data import read_records
    from tinydistill.quickstart import embedded_data_dir

    rows = [r for _, r in read_records(embedded_data_dir() / "obqa_train.json")]
    duplicated = [r for r in rows if len(set(r["choices"])) != len(r["choices"])]
    text = " ".join((ROOT / "docs" / "data.md").read_text(encoding="utf-8").split())
    assert len(rows) == 1000 and not duplicated
    assert "the embedded 1,000-row subset it uses by default has none" in text
