"""Fixtures shared by several test modules."""

from __future__ import annotations

import time

import pytest

from instanas_core.book import run_book

CELL_TIMEOUT = 600


@pytest.fixture(scope="session")
def book_smoke_run(tmp_path_factory):
    """The whole book at the smoke preset, once per test session (per worker under pytest-xdist):
    ``(run folder, manifest)``.
    Tests that use it only read the run folder (or copy it)."""
    run = tmp_path_factory.mktemp("book") / "run"
    t0 = time.perf_counter()
    manifest = run_book("smoke", run, progress=False, timeout=CELL_TIMEOUT)
    print(f"smoke book: {time.perf_counter() - t0:.1f} s")
    return run, manifest
