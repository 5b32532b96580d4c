"""Command line: one module per command, each with ``HELP``, ``configure(parser)`` and ``handle(args) -> int``.

This package is the only place that uses argparse: a handler turns the parsed flags into typed calls of the
modules below it (``run``, ``teach``, ``study``, ``serve``…) and returns the exit code.
A command module imports those modules (and so torch) inside ``handle``: ``--help``, ``--version`` and a
mistyped config answer in a second or two.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from types import ModuleType

from .. import __version__
from ..errors import TinyDistillError
from . import analyze, data, evaluate, export, quickstart, reproduce, search, serve, teach, train
from .help import HelpFormatter

Handler = Callable[[argparse.Namespace], int]

#: subcommand → its module, in the order ``--help`` lists them
COMMANDS: dict[str, ModuleType] = {"quickstart": quickstart, "train": train, "eval": evaluate, "data": data,
                                   "teach": teach, "reproduce": reproduce, "analyze": analyze, "search": search,
                                   "serve": serve, "export": export}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinydistill", description="Distil large teachers into small students.")
    parser.add_argument("--version", action="version", version=f"tinydistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.configure(p)
        p.set_defaults(handler=module.handle)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before torch is imported
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return int(args.handler(args) or 0)
    except TinyDistillError as e:
        for line in str(e).splitlines() or [""]:  # several problems (a config): one line each
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
