"""Where data sets live on disk: ``data/`` under the working directory unless the ``root``
argument or the ``INSTANAS_DATA`` environment variable says otherwise (see ``data/README.md``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "data_root"]

DATA_ENV_VAR = "INSTANAS_DATA"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$INSTANAS_DATA``, else ``./data``, made absolute
    so that error messages show the full path."""
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or Path.cwd() / "data"
    return Path(root).expanduser().resolve()
