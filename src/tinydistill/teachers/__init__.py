"""Teachers: one interface whether outputs are imported, generated locally, or fetched over HTTP."""

from .base import Teacher

__all__ = ["Teacher"]
