"""The book's presets: a preset's training configuration and the book's settings for it, by name
(both defined once, in :mod:`instanas_core.presets`), refused as a :class:`BookError` when unknown."""

from __future__ import annotations

from ..config import Config, ConfigError
from ..presets import PRESETS, BookSettings, book_settings, get_preset
from .errors import BookError

__all__ = ["list_book_presets", "book_preset", "book_settings", "BookSettings"]


def list_book_presets() -> list[str]:
    return list(PRESETS)


def book_preset(name: str) -> Config:
    """The :class:`~instanas_core.config.Config` of preset ``name``."""
    try:
        return get_preset(name)
    except ConfigError as exc:
        raise BookError(
            f"Unknown preset {name!r} for the book; known presets: {', '.join(list_book_presets())}."
        ) from exc
