"""The book rendered for a browser (``instanas render``), opened in a real headless Chromium: the
index and every notebook page load, and every image on them loads. Debian's Chromium (``/usr/bin/chromium``) is driven by Playwright; ``.ci/run`` installs it
when it is absent, and without it these tests are skipped, saying so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from instanas_core.book import render_book

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does it in CI)"
)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _open(browser, path: Path) -> dict:
    """Load ``path`` and report its title, links and images (loaded = decoded with a size)."""
    page = browser.new_page()
    page.goto(path.as_uri(), wait_until="load")
    report = page.evaluate(
        """() => ({
            title: document.title,
            links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href')),
            images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth})),
        })"""
    )
    page.close()
    return report


def _check_book(browser, folder: Path, notebooks: int) -> None:
    index = _open(browser, folder / "index.html")
    assert index["title"].startswith("InstaNAS reproduction")
    pages = [link for link in index["links"] if link.endswith(".html")]
    assert len(pages) == notebooks and all((folder / link).is_file() for link in pages)
    images = 0
    for link in pages:
        report = _open(browser, folder / link)
        assert report["title"], link
        assert all(i["complete"] and i["width"] > 0 for i in report["images"]), (link, report["images"])
        images += len(report["images"])
    assert images > 0


def test_render_makes_pages_that_load_in_a_browser(browser, book_smoke_run, tmp_path):
    run, manifest = book_smoke_run
    render_book(run, tmp_path / "html")
    _check_book(browser, tmp_path / "html", notebooks=len(manifest["notebooks"]))


def test_the_committed_reference_book_opens_in_a_browser(browser):
    """``book/`` (the `cpu` reference run, rendered and committed so that a reader of the repository
    sees every figure inside its notebook): the index and its ten pages load, with every image."""
    folder = Path(__file__).resolve().parents[1] / "book"
    assert (folder / "index.html").is_file(), "book/index.html is missing: instanas render --run-dir RUN --out book"
    _check_book(browser, folder, notebooks=10)
