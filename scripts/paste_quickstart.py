"""Paste the table a ``tinydistill quickstart`` run printed into README.md and docs/quickstart.md.

    tinydistill quickstart --no-progress > quickstart.txt && python scripts/paste_quickstart.py quickstart.txt

The table is copied from the run's own output (its title line through ``total …``), never typed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "quickstart.md")
BLOCK = re.compile(r"(```\n\$ tinydistill quickstart\n).*?(\n```)", re.S)


def table_of(output: str) -> str:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "quickstart:" in line and "valid" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("total ") and i > start)
    return "\n".join(line.rstrip() for line in lines[start:end + 1])


def main(path: str) -> int:
    table = table_of(Path(path).read_text(encoding="utf-8"))
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        new, n = BLOCK.subn(lambda m: m.group(1) + table + m.group(2), text)
        if n != 1:
            print(f"{page}: expected one quickstart block, found {n}", file=sys.stderr)
            return 1
        page.write_text(new, encoding="utf-8")
        print(f"{page.relative_to(ROOT)}: table pasted")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
