"""Fixtures shared by several test modules."""

from __future__ import annotations

import time

import pytest

from instanas_core.book import run_book

CELL_TIMEOUT = 600


def pytest_collection_modifyitems(config, items):
    """Groups for ``pytest -n 2 --dist loadgroup`` (``make test``): the tests of one file run on
    one worker, in file order (module fixtures and ordered cases such as test_kill_resume's stay
    intact), and every test that reads the smoke book run joins one group, so the book runs once."""
    for item in items:
        group = "book" if "book_smoke_run" in getattr(item, "fixturenames", ()) else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def book_smoke_run(tmp_path_factory):
    """The whole book at the smoke preset, once per test session: ``(run folder, manifest)``.
    Tests that use it only read the run folder (or copy it)."""
    run = tmp_path_factory.mktemp("book") / "run"
    t0 = time.perf_counter()
    manifest = run_book("smoke", run, progress=False, timeout=CELL_TIMEOUT)
    print(f"smoke book: {time.perf_counter() - t0:.1f} s")
    return run, manifest
