"""The one exception the data layer raises for bad input (missing files, unknown names, corrupt
images), so that callers see a readable paragraph instead of a traceback from deep inside
torchvision or PIL."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(Exception):
    """A data set cannot be built or read; the message says what is wrong and how to fix it."""
