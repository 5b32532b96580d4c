"""Write the quickstart's embedded OpenBookQA subset (TinyLLM layout) from the shared TinyLLM data.

    python scripts/embed_quickstart_data.py ../shared/data/tinyllm/obqa --train-rows 1000

Keeps the first N valid training rows with their FLAN-T5/LLaMA-2 rationale strings (verbatim, realigned into
500-row chunks) and the whole valid split. OpenBookQA is Apache-2.0, the rationales come from the Apache-2.0
TinyLLM repository (YikunHan42/TinyLLM, commit 9f5bebe).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinydistill.data.loaders import read_records
from tinydistill.data.records import build_example

OUT = Path(__file__).resolve().parents[1] / "src" / "tinydistill" / "datasets" / "obqa"


def chunks(folder: Path, split: str) -> list[str]:
    files = sorted((folder / "llm").glob(f"{split}_CoT_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [s for f in files for s in json.loads(f.read_text())]


def copy_split(src: Path, split: str, limit: int | None) -> int:
    records = read_records(src / f"obqa_{split}.json")
    rationales = chunks(src, split)
    kept_rows, kept_rats = [], []
    for i, ((_, row), rat) in enumerate(zip(records, rationales, strict=True)):
        try:
            build_example(row, path=src, row=i)
        except Exception:  # noqa: BLE001 - the embedded copy holds only valid rows
            continue
        kept_rows.append(row)
        kept_rats.append(rat)
        if limit and len(kept_rows) == limit:
            break
    (OUT / "llm").mkdir(parents=True, exist_ok=True)
    (OUT / f"obqa_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in kept_rows))
    for k in range(0, len(kept_rats), 500):
        (OUT / "llm" / f"{split}_CoT_{k // 500}.json").write_text(json.dumps(kept_rats[k: k + 500]))
    return len(kept_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the shared obqa folder")
    parser.add_argument("--train-rows", type=int, default=1000)
    args = parser.parse_args()
    print("train", copy_split(args.source, "train", args.train_rows), "valid", copy_split(args.source, "valid", None))


if __name__ == "__main__":
    main()
