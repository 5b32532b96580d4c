"""Moved to :mod:`tinydistill.parallel`; kept only for ``cli.py``'s import until the CLI moves (delete then)."""

from .parallel.process import is_main_process

__all__ = ["is_main_process"]
