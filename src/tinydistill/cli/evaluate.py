"""``tinydistill eval RUN_DIR --data PATH --out DIR``: score a run's best (or any saved) student."""

from __future__ import annotations

import argparse

HELP = "score a run's best student on a data file or folder"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder (runs/<name>) or a saved student folder")
    p.add_argument("--data", required=True, help="data file or TinyLLM folder")
    p.add_argument("--split", default=None,
                   help="split to score and name: needed for folders and hub datasets (default valid); for a file, "
                        "default from its name (test.jsonl → test)")
    p.add_argument("--format", default="auto", choices=["auto", "tinyllm", "json", "jsonl", "csv", "hf"],
                   help="how to read --data (auto: a folder is the TinyLLM layout, a file by content or suffix)")
    p.add_argument("--out", required=True, help="folder for metrics.json and predictions.jsonl")
    p.add_argument("--modes", type=_modes, default=None, help="comma list of rank,generate (default: the run's)")


def _modes(text: str) -> list[str]:
    """``--modes rank,generate``: each one of the two (a typo would score nothing and print no accuracy)."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    wrong = [m for m in modes if m not in ("rank", "generate")]
    if wrong or not modes:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of rank and generate")
    return modes


def handle(args: argparse.Namespace) -> int:
    from ..run import evaluate_run
    evaluate_run(args.run_dir, args.data, split=args.split, fmt=args.format, out=args.out,
                 modes=args.modes)
    return 0
