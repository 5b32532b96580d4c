"""``tinydistill quickstart``: inference-only, fine-tuning and TinyLLM on the embedded data, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train and compare inference-only, fine-tuning and TinyLLM on the embedded data"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="a TinyLLM-layout folder (default: the embedded OBQA)")
    p.add_argument("--output-dir", default="runs", help="where runs/<name> goes (default ./runs)")
    p.add_argument("--name", default="quickstart",
                   help="folder of the three runs: <output-dir>/<name>/<method>/")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the quickstart recipe for all three runs, e.g. train.epochs=2 "
                        "(repeatable)")
    p.add_argument("--shrink", type=_layers, default=None, metavar="LAYERS",
                   help="then distil the fine-tuned student white-box into one of LAYERS layers (e.g. 3), started "
                        "from its own layers, and show its parameters and CPU speed beside its accuracy")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _layers(text: str) -> int:
    """``--shrink LAYERS``: a whole number of layers, at least 1, checked before the quickstart trains (minutes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of layers") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 layer, got {value}")
    return value


def handle(args: argparse.Namespace) -> int:
    from ..quickstart import quickstart
    quickstart(data_dir=args.data_dir, output_dir=args.output_dir, name=args.name,
               overrides=args.overrides, progress=not args.no_progress)
    if args.shrink is not None:
        from ..quickstart import embedded_data_dir
        from ..shrink import shrink

        shrink(Path(args.data_dir) if args.data_dir else embedded_data_dir(), layers=args.shrink,
               output_dir=args.output_dir, name=args.name, overrides=args.overrides, progress=not args.no_progress)
    return 0
