"""``python -m tinydistill.cli`` (what ``accelerate launch`` and ``torchrun`` run): the ``tinydistill`` command."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
