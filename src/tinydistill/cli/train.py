"""``tinydistill train CONFIG``: one run from a YAML config (resumes if the run folder exists)."""

from __future__ import annotations

import argparse

from ..config import check_paths, load_config

HELP = "train a student from a YAML config (resumes if the run exists)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.lr=1e-4 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def handle(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    check_paths(cfg, args.config)  # every path, with the config's lines, before torch is imported
    from ..evaluation import print_outcome
    from ..run import run
    from ..training import is_main_process
    outcome = run(cfg, progress=not args.no_progress)
    if is_main_process():  # under `accelerate launch`, one summary
        print_outcome(outcome)
    return 0
