"""The error every part of the book raises."""

from __future__ import annotations

__all__ = ["BookError"]


class BookError(RuntimeError):
    """A book that cannot run as asked (bad parameters, unknown notebook) or a notebook that failed."""
