"""``tinydistill analyze RUN_DIR``: error analysis of a run's predictions (``analysis.json``/``.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "error analysis of a run's predictions: per class/domain, confusion, student vs. teachers"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder (runs/<name>)")
    p.add_argument("--data", default=None, help="data the predictions were made on (default: the run's split)")
    p.add_argument("--split", default="valid", help="valid (default) or test, or the split of --data")
    p.add_argument("--format", default="auto", choices=["auto", "tinyllm", "json", "jsonl", "csv", "hf"],
                   help="how to read --data (auto: a folder is the TinyLLM layout, a file by content or suffix)")
    p.add_argument("--predictions", default=None,
                   help="predictions.jsonl to analyse (default: the run's; e.g. the one `tinydistill eval` wrote)")
    p.add_argument("--examples", type=int, default=5, help="examples listed per category (default 5)")
    p.add_argument("--out", default=None, help="folder for analysis.json/.md (default: the run folder)")
    p.add_argument("--html", action="store_true", help="also write report.html with this analysis (into --out)")


def handle(args: argparse.Namespace) -> int:
    from ..evaluation import analyze_run, summary_line, write_analysis, write_html_report
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
