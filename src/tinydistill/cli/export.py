"""``tinydistill export RUN_DIR|MODEL_DIR --out DIR [--quantize int8]``: the student as ONNX, with a model card."""

from __future__ import annotations

import argparse

HELP = "export a trained multiple-choice student to ONNX (optionally int8) with its tokenizer and a model card"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run folder (runs/<name>, its best/ student) or a saved student folder")
    p.add_argument("--out", required=True, help="folder to create (written whole, then renamed into place)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8: ONNX Runtime's dynamic quantisation (default: none, fp32)")
    p.add_argument("--data", default=None,
                   help="data file for the card's accuracy and latency (default: the run's valid split)")
    p.add_argument("--split", default="valid", help="split of --data to read (default valid)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def handle(args: argparse.Namespace) -> int:
    from ..export import export_student

    meta = export_student(args.source, args.out, quantize=args.quantize, data=args.data, split=args.split,
                          force=args.force)
    pt, ex = meta["pytorch"], meta["exported"]

    def acc(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}%"

    print(f"wrote {args.out}: model.onnx {ex['size_bytes'] / 1e6:.1f} MB (PyTorch {pt['size_bytes'] / 1e6:.1f} MB); "
          f"batch-1 median {ex['latency_batch1_median_ms']:.1f} ms (PyTorch {pt['latency_batch1_median_ms']:.1f} ms); "
          f"valid accuracy {acc(ex['valid_accuracy'])} (PyTorch {acc(pt['valid_accuracy'])}); see {args.out}/README.md")
    return 0
