"""``tinydistill reproduce``: the TinyLLM paper's suites as a grid of runs (:mod:`tinydistill.study`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TinyDistillError
from ..study import DATASETS, FAST_SUITE, SCALING_SUITE, SUITES, TABLE1_METHODS, Sweep, parse_train_limit

HELP = "the TinyLLM paper's tables: methods × datasets × seeds, ablations, fractions, α, sizes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="table1", choices=SUITES,
                   help="table1: methods × datasets; fast: table1 on obqa, arc, riddle with 1,000 training rows "
                        "and finetune, step_by_step, tinyllm (unless those flags are given); ablations (Table 2); "
                        "fractions (Fig. 2); alpha (Fig. 3); sizes (student layers); scaling (Scaling Down: the "
                        "fine-tuned full student as teacher of 2- and 3-layer students trained by finetune, kd, "
                        "whitebox and whitebox_init, with parameters, size on disk and CPU speed per size)")
    p.add_argument("--data-root", default=str(Path("..") / "shared" / "data" / "tinyllm"),
                   help="folder holding <dataset>/ in the TinyLLM layout")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma list (default: all six)")
    p.add_argument("--methods", default=",".join(TABLE1_METHODS),
                   help="table1 and scaling: comma list of methods (scaling: finetune, kd, whitebox, whitebox_init by "
                        "default; also whitebox_cls, whitebox_attn, whitebox_init_cls, finetune_init, "
                        "whitebox_rationales)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--train-limit", default=None,
                   help="seeded subsample of each training set: N for every dataset, or per dataset, e.g. "
                        "piqa=2000 (the rest whole) or piqa=2000,riddle=1000")
    p.add_argument("--valid-rows", type=int, default=100, help="train rows held out for selection (default 100)")
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs of every cell")
    p.add_argument("--fractions", default="0.125,0.25,0.5,1", help="fractions suite: training-set fractions")
    p.add_argument("--alphas", default="0.1,0.5,1", help="alpha suite: the grid for α_T5 and α_LLaMA")
    p.add_argument("--weight-grid", default="",
                   help="table1: rationale-loss weights tried for Distill-step-by-step (λ) and TinyLLM (α, both "
                        "teachers) besides the recipe's; two rows per method chosen on valid: each seed's best weight, "
                        "and one weight per dataset (best mean over seeds) (the paper explores 0.01,0.1,0.5,1,2,3 "
                        "and reports the best)")
    p.add_argument("--layers", default="2,4,6",
                   help="sizes and scaling suites: student layer counts (of MiniLM's 6; scaling's default: 2,3)")
    p.add_argument("--output-dir", default=str(Path("runs") / "reproduce"),
                   help="folder of the cells' run folders and the suite's reports")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[DATASETS:]KEY=VALUE",
                   help="dotted override applied to every cell, e.g. --set train.batch_size=16, or to some "
                        "datasets' cells, e.g. --set bioasq,pubmedqa:train.epochs=3")
    p.add_argument("--dry-run", action="store_true", help="list the cells and which are done; train nothing")
    p.add_argument("--report-only", action="store_true", help="rebuild the reports from finished cells")
    p.add_argument("--keep-models", action="store_true",
                   help="keep every cell's checkpoints/ and best/ (default: only reports, predictions and the "
                        "fine-tuned models that Standard KD distils)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _split(text: str, cast: Callable[[str], Any] = str, flag: str = "") -> list:
    """A comma list, each item cast (``--seeds 0,1,2`` → ints); an item that does not cast is one line naming the
    flag."""
    out = []
    for x in (x.strip() for x in text.split(",")):
        if not x:
            continue
        try:
            out.append(cast(x))
        except ValueError:
            kind = "a whole number" if cast is int else "a number"
            raise TinyDistillError(f"{flag} {text}: {x!r} is not {kind}; give a comma list, e.g. "
                                   f"{'0,1,2' if cast is int else '0.1,0.5'}") from None
    return out


def _fill_defaults(args: argparse.Namespace, parser_defaults: dict[str, Any], values: dict[str, str]) -> None:
    """A suite's preset: each flag of ``values`` that the command left at its default takes the value given."""
    for flag, value in values.items():
        if getattr(args, flag) == parser_defaults[flag]:
            setattr(args, flag, value)


def apply_fast_preset(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> None:
    """``--suite fast``: the datasets, methods and training-row limit of :data:`FAST_SUITE` where the command left
    those flags at their defaults."""
    if args.suite != "fast":
        return
    _fill_defaults(args, parser_defaults, {"datasets": ",".join(FAST_SUITE["datasets"]),
                                           "methods": ",".join(FAST_SUITE["methods"])})
    if args.train_limit is None:
        args.train_limit = str(FAST_SUITE["train_limit"])


def apply_scaling_preset(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> None:
    """``--suite scaling``: the methods, layer counts and PIQA cap of :data:`SCALING_SUITE` where the command left
    those flags at their defaults."""
    if args.suite != "scaling":
        return
    _fill_defaults(args, parser_defaults, {"methods": ",".join(SCALING_SUITE["methods"]),
                                           "layers": ",".join(map(str, SCALING_SUITE["layers"]))})
    if args.train_limit is None and "piqa" in _split(args.datasets):
        args.train_limit = SCALING_SUITE["train_limit"]


def handle(args: argparse.Namespace) -> int:
    from ..study import reproduce
    defaults = {"datasets": ",".join(DATASETS), "methods": ",".join(TABLE1_METHODS), "layers": "2,4,6"}
    apply_fast_preset(args, defaults)
    apply_scaling_preset(args, defaults)
    datasets, methods = _split(args.datasets), _split(args.methods)
    seeds, fractions = _split(args.seeds, int, "--seeds"), _split(args.fractions, float, "--fractions")
    alphas, layers = _split(args.alphas, float, "--alphas"), _split(args.layers, int, "--layers")
    weight_grid = _split(args.weight_grid, float, "--weight-grid")
    if bad := [s for s in seeds if not 0 <= s < 2**32]:
        raise TinyDistillError(f"--seeds {args.seeds}: {bad[0]} is out of range (seeds run from 0 to 2**32 - 1)")
    sweep = Sweep(suite=args.suite, data_root=Path(args.data_root), datasets=datasets, methods=methods, seeds=seeds,
                  train_limit=parse_train_limit(args.train_limit), valid_rows=args.valid_rows, epochs=args.epochs,
                  fractions=fractions, alphas=alphas, weight_grid=weight_grid, layers=layers,
                  output_dir=Path(args.output_dir), overrides=list(args.overrides))
    return reproduce(sweep, dry_run=args.dry_run, report_only=args.report_only, keep_models=args.keep_models,
                     progress=not args.no_progress)
