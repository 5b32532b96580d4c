"""Command line: a table of subcommand → (configure, handler). No logic lives here beyond argument wiring."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from transformers.utils import logging as hf_logging

from . import __version__
from .analysis import analyze_run, summary_line, write_analysis
from .config import load_config
from .console import print_outcome
from .datacheck import check_data
from .distributed import is_main_process
from .errors import TinyDistillError
from .html_report import write_html_report
from .quickstart import quickstart
from .reproduce import cmd_reproduce, configure_reproduce_parser
from .run import evaluate_run, run
from .search import cmd_search, configure_search_parser
from .serve import cmd_serve, configure_serve_parser
from .teach import cmd_teach, configure_teach_parser

Handler = Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------------------------------------- train
def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.lr=1e-4 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _cmd_train(args: argparse.Namespace) -> int:
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
    quickstart(data_dir=args.data_dir, output_dir=args.output_dir, name=args.name,
               overrides=args.overrides, progress=not args.no_progress)
    return 0


# ----------------------------------------------------------------------------------------------- analyze
def _configure_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder (runs/<name>)")
    p.add_argument("--data", default=None, help="data the predictions were made on (default: the run's split)")
    p.add_argument("--split", default="valid", help="valid (default) or test, or the split of --data")
    p.add_argument("--format", default="auto", choices=["auto", "tinyllm", "json", "jsonl", "csv", "hf"])
    p.add_argument("--predictions", default=None,
                   help="predictions.jsonl to analyse (default: the run's; e.g. the one `tinydistill eval` wrote)")
    p.add_argument("--examples", type=int, default=5, help="examples listed per category (default 5)")
    p.add_argument("--out", default=None, help="folder for analysis.json/.md (default: the run folder)")
    p.add_argument("--html", action="store_true", help="also write report.html with this analysis (into --out)")


def _cmd_analyze(args: argparse.Namespace) -> int:
    a = analyze_run(args.run_dir, data=args.data, split=args.split, fmt=args.format, predictions=args.predictions,
                    n_examples=args.examples)
    out = Path(args.out or args.run_dir)
    write_analysis(out, a)
    if args.html:
        write_html_report(args.run_dir, analysis=a, out=out / "report.html")
    print(summary_line(a, out))
    for note in a["notes"]:
        print(f"note: {note}")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "quickstart": ("train and compare inference-only, fine-tuning and TinyLLM on the embedded data",
                   _configure_quickstart, _cmd_quickstart),
    "train": ("train a student from a YAML config (resumes if the run exists)", _configure_train, _cmd_train),
    "eval": ("score a run's best student on a data file or folder", _configure_eval, _cmd_eval),
    "data": ("inspect and validate data", _configure_data, _cmd_data),
    "teach": ("generate teacher rationales into the cache", configure_teach_parser,
              cmd_teach),
    "reproduce": ("the TinyLLM paper's tables: methods × datasets × seeds, ablations, fractions, α, sizes",
                  configure_reproduce_parser, cmd_reproduce),
    "analyze": ("error analysis of a run's predictions: per class/domain, confusion, student vs. teachers",
                _configure_analyze, _cmd_analyze),
    "search": ("hyperparameter search (optuna: random or TPE, pruning, resumable SQLite study)",
               configure_search_parser, cmd_search),
    "serve": ("serve a local model over an OpenAI-compatible HTTP API", configure_serve_parser,
              cmd_serve),
}


def build_parser() -> argparse.ArgumentParser:
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
