"""``tinydistill teach CONFIG``: generate the live teachers' rationales into the run's cache."""

from __future__ import annotations

import argparse

from ..config import check_paths, load_config

HELP = "generate teacher rationales into the cache"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. teachers.0.generation.max_new_tokens=64 (repeatable)",
    )
    p.add_argument("--splits", default="train,valid", help="comma-separated data splits (train,valid,test)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="generate rows I::N only (default: the process rank under accelerate launch/torchrun)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def handle(args: argparse.Namespace) -> int:
    """Run :func:`~tinydistill.teach.teach` with a progress bar, then print a table and the totals."""
    cfg = load_config(args.config, args.overrides)
    check_paths(cfg, args.config, skip=("student.model", "whitebox.teacher_model"))  # with the config's lines
    from ..teach import print_teach_report, teach
    from ..training import launched_shard, parse_shard
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    shard_of = parse_shard(args.shard) if args.shard else launched_shard()
    rows = teach(cfg, splits, shard_of, progress=not args.no_progress)
    print_teach_report(cfg, rows, shard_of)
    return 0
