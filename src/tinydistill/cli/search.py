"""``tinydistill search CONFIG --space SPACE --trials N``: an optuna hyperparameter search over ordinary runs."""

from __future__ import annotations

import argparse

HELP = "hyperparameter search (optuna: random or TPE, pruning, resumable SQLite study)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config (the base of every trial)")
    p.add_argument("--space", required=True, help="YAML search space: dotted key → {type, low, high | choices}")
    p.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    p.add_argument("--sampler", default="random", choices=["random", "tpe"],
                   help="random (Scaling Down's protocol, default) or tpe (optuna's TPESampler)")
    p.add_argument("--pruner", default="median", choices=["median", "none"],
                   help="stop trials whose valid metric falls below the median of earlier trials at that step")
    p.add_argument("--study-dir", default=None, help="default: <output_dir>/<name>-search")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the base config (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def handle(args: argparse.Namespace) -> int:
    from ..study import best_line, run_search
    result = run_search(args.config, args.space, trials=args.trials, sampler=args.sampler, pruner=args.pruner,
                        study_dir=args.study_dir, overrides=args.overrides, progress=not args.no_progress)
    if result["best"] is None:
        print(f"no trial completed; see {result['study_dir']}/trials.md")
        return 1
    print(best_line(result))
    return 0
