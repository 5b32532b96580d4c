"""Command line: a table of subcommand → (configure, handler). No logic lives here beyond argument wiring."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .errors import TinyDistillError

Handler = Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------------------------------------- train
def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.lr=1e-4 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .console import print_outcome
    from .distributed import is_main_process
    from .run import run

    cfg = load_config(args.config, args.overrides)
    outcome = run(cfg, progress=not args.no_progress)
    if is_main_process():  # under `accelerate launch`, one summary
        print_outcome(outcome)
    return 0


# -------------------------------------------------------------------------------------------------- eval
def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder (runs/<name>) or a saved student folder")
    p.add_argument("--data", required=True, help="data file or TinyLLM folder")
    p.add_argument("--split", default=None,
                   help="split to score and name: needed for folders and hub datasets (default valid); for a file, "
                        "default from its name (test.jsonl → test)")
    p.add_argument("--format", default="auto", choices=["auto", "tinyllm", "json", "jsonl", "csv", "hf"])
    p.add_argument("--out", required=True, help="folder for metrics.json and predictions.jsonl")
    p.add_argument("--modes", default=None, help="comma list of rank,generate (default: the run's)")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .run import evaluate_run

    evaluate_run(args.run_dir, args.data, split=args.split, fmt=args.format, out=args.out,
                 modes=args.modes.split(",") if args.modes else None)
    return 0


# -------------------------------------------------------------------------------------------------- data
def _configure_data(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True)
    check = sub.add_parser("check", help="validate a data file or folder and print its counts")
    check.add_argument("path")
    check.add_argument("--split", default=None, help="split(s) for folders, comma separated (default: all)")
    check.add_argument("--format", default="auto", choices=["auto", "tinyllm", "json", "jsonl", "csv", "hf"])


def _cmd_data(args: argparse.Namespace) -> int:
    from .datacheck import check_data

    check_data(args.path, split=args.split, fmt=args.format)
    return 0


# -------------------------------------------------------------------------------------------- quickstart
def _configure_quickstart(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="a TinyLLM-layout folder (default: the embedded OBQA)")
    p.add_argument("--output-dir", default="runs", help="where runs/<name> goes (default ./runs)")
    p.add_argument("--name", default="quickstart")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from .quickstart import quickstart

    quickstart(data_dir=args.data_dir, output_dir=args.output_dir, name=args.name,
               overrides=args.overrides, progress=not args.no_progress)
    return 0


def _lazy(module: str, attr: str) -> Callable:
    def call(*a, **kw):
        import importlib

        return getattr(importlib.import_module(f"tinydistill.{module}"), attr)(*a, **kw)

    return call


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "quickstart": ("train and compare inference-only, fine-tuning and TinyLLM on the embedded data",
                   _configure_quickstart, _cmd_quickstart),
    "train": ("train a student from a YAML config (resumes if the run exists)", _configure_train, _cmd_train),
    "eval": ("score a run's best student on a data file or folder", _configure_eval, _cmd_eval),
    "data": ("inspect and validate data", _configure_data, _cmd_data),
    "teach": ("generate teacher rationales into the cache", _lazy("teach", "configure_teach_parser"),
              _lazy("teach", "cmd_teach")),
    "reproduce": ("the TinyLLM paper's tables: methods × datasets × seeds, ablations, fractions, α, sizes",
                  _lazy("reproduce", "configure_reproduce_parser"), _lazy("reproduce", "cmd_reproduce")),
    "analyze": ("error analysis of a run's predictions: per class/domain, confusion, student vs. teachers",
                _lazy("analysis", "configure_analyze_parser"), _lazy("analysis", "cmd_analyze")),
    "search": ("hyperparameter search (optuna: random or TPE, pruning, resumable SQLite study)",
               _lazy("search", "configure_search_parser"), _lazy("search", "cmd_search")),
    "serve": ("serve a local model over an OpenAI-compatible HTTP API", _lazy("serve", "configure_serve_parser"),
              _lazy("serve", "cmd_serve")),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="tinydistill", description="Distil large teachers into small students.")
    parser.add_argument("--version", action="version", version=f"tinydistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TinyDistillError as e:
        for line in str(e).splitlines() or [""]:  # several problems (a config): one line each
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
