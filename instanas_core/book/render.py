"""A finished book run rendered for a browser: one self-contained HTML page per executed notebook
(figures embedded, tables as rendered by the notebook) and an ``index.html`` that lists them with
the paper section each covers, the time it took and the figures it made.

``instanas render --run-dir RUN --out DIR``. Executed notebooks are git-ignored and the ``.py``
notebooks carry no outputs; rendered, a run shows every figure inside its notebook in a browser.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..ownership import FolderLock, claim, open_output_folder
from .errors import BookError
from .runner import finished_book

__all__ = ["render_book"]


def _first_heading(nb) -> str:
    """The notebook's title: the first Markdown heading of its first Markdown cell."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def render_book(run_dir: str | Path, out: str | Path) -> Path:
    """Render every executed notebook of a finished book run into ``out`` (``NN_name.html`` and
    ``index.html``); returns the index. Refuses a run whose notebooks did not all complete."""
    import nbformat
    from nbconvert import HTMLExporter

    run, manifest = finished_book(run_dir)
    entries = manifest["notebooks"]
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    out = open_output_folder(out, "render")
    rows = []
    with FolderLock(out, "render"):
        for name, entry in entries.items():
            source = Path(entry["output"])
            if not source.is_file():
                raise BookError(f"{source} (notebook {name}'s executed copy) is missing; run the book again.")
            nb = nbformat.read(source, as_version=4)
            page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": name}})
            claim(out / f"{name}.html").write_text(page, encoding="utf-8")
            rows.append((name, _first_heading(nb), entry))
        index = claim(out / "index.html")
        index.write_text(_index_page(manifest, rows), encoding="utf-8")
    return index


def _index_page(manifest: dict, rows: list[tuple[str, str, dict]]) -> str:
    preset = manifest.get("preset", "?")
    total = sum(e.get("seconds") or 0 for _, _, e in rows) / 60
    body = "\n".join(
        f"<tr><td><a href='{html.escape(name)}.html'>{html.escape(name)}</a></td><td>{html.escape(title)}</td>"
        f"<td style='text-align:right'>{(e.get('seconds') or 0):.0f}</td>"
        f"<td>{html.escape(', '.join(Path(f).stem for f in e.get('figures', []) if f.endswith('.png')))}</td></tr>"
        for name, title, e in rows
    )
    started = html.escape(str(manifest.get("created", "")))
    env = manifest.get("environment", {})
    machine = html.escape(
        f"Machine: {env.get('cpu_model', '?')}, {env.get('cpu_count', '?')} cores; torch {env.get('torch', '?')}; "
        f"commit {str(env.get('git_commit', '?'))[:12]}."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>InstaNAS reproduction: the book ({html.escape(preset)})</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;vertical-align:top}}</style>
</head><body>
<h1>InstaNAS reproduction: the notebook book at the <code>{html.escape(preset)}</code> preset</h1>
<p>Each page is one executed notebook of this run, with its figures and tables. This is a reduced-scale
run on a CPU, not the paper's GPU results; every figure's footer names its preset, data set and machine.
Run started {started}; {len(rows)} notebooks, {total:.1f} min in all. {machine}</p>
<table><tr><th>notebook</th><th>title</th><th>seconds</th><th>figures</th></tr>
{body}
</table>
<p>Made with <code>instanas render --run-dir RUN --out DIR</code> from a run of <code>instanas book</code>.</p>
</body></html>
"""
