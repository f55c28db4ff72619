"""``python -m instanas_core`` does what the ``instanas`` command does."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
