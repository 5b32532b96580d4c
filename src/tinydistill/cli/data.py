"""``tinydistill data check PATH``: validate a data file or folder and print its counts."""

from __future__ import annotations

import argparse

HELP = "inspect and validate data"


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True)
    check = sub.add_parser("check", help="validate a data file or folder and print its counts")
    check.add_argument("path")
    check.add_argument("--split", default=None, help="split(s) for folders, comma separated (default: all)")
    check.add_argument("--format", default="auto", choices=["auto", "tinyllm", "json", "jsonl", "csv", "hf"])


def handle(args: argparse.Namespace) -> int:
    from ..data import check_data
    check_data(args.path, split=args.split, fmt=args.format)
    return 0
