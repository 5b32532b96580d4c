"""Write configs/<dataset>/<method>.yaml, the TinyLLM paper's Table 1 protocol as recipe files.

    python scripts/write_recipes.py          # (re)write them from tinydistill.study.recipes
    python scripts/write_recipes.py --check  # exit 1 and name the files that differ from what reproduce builds
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinydistill.study.paper import DATASETS
from tinydistill.study.recipes import RECIPE_METHODS, recipe_path, recipe_text, write_recipes

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = [str(p.relative_to(ROOT)) for d in DATASETS for m in RECIPE_METHODS
                 if not (p := recipe_path(ROOT, d, m)).is_file() or p.read_text(encoding="utf-8") != recipe_text(d, m)]
        for name in stale:
            print(f"differs: {name}")
        return 1 if stale else 0
    if argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    paths = write_recipes(ROOT)
    print(f"wrote {len(paths)} recipes under {ROOT / 'configs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
