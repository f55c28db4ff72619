"""The book's runner (``instanas book``, :func:`run_book`): runs ``notebooks/NN_*.py`` in order with
papermill into ``RUN/notebooks/NN_name.ipynb``, after checking every parameter's name and type
against the notebooks' ``parameters`` cells; keeps ``RUN/book_manifest.json`` (per notebook:
status, times, output, figures and tables produced, parameters) and skips notebooks already
complete with the same parameters and source, so a re-run resumes where a failure stopped it.
:func:`export_figures` (``instanas figures``) copies a finished run's figures out with a README.

Every notebook takes ``preset`` and ``run_dir`` and writes figures (PNG and PDF) to
``RUN/figures/``, tables (CSV and Markdown) to ``RUN/tables/``, stage artifacts to ``RUN/<stage>/``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import BookError
from .kernel import kernel_environment, kernel_manager_class, resolve_kernel
from .notebooks import NotebookSpec, check_parameters, discover_notebooks, read_notebook, select_notebooks
from .preset import book_preset

__all__ = [
    "MANIFEST_FILE",
    "finished_book",
    "DEFAULT_CELL_TIMEOUT_S",
    "read_manifest",
    "run_book",
    "parse_param_assignments",
    "add_book_arguments",
    "run_book_command",
    "export_figures",
]

MANIFEST_FILE = "book_manifest.json"
DEFAULT_CELL_TIMEOUT_S = 6 * 3600


# ---- the manifest -------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_manifest(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BookError(f"{path} is not valid JSON ({exc}); delete it to run every notebook again.") from None


def _write_manifest(run_dir: Path, manifest: dict) -> None:
    manifest["updated"] = _now()
    path = run_dir / MANIFEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)  # atomic: a crash never leaves half a manifest


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


def _changed(folder: Path, before: dict[str, int], run_dir: Path) -> list[str]:
    after = _snapshot(folder)
    return sorted(str(Path(p).relative_to(run_dir)) for p, t in after.items() if before.get(p) != t)


def _cell_lines(path: Path) -> list[int]:
    """1-based line of each cell marker (``# %%``) of a percent-format script."""
    return [i + 1 for i, line in enumerate(path.read_text().splitlines()) if line.startswith("# %%")]


def _failure_message(spec: NotebookSpec, exc: Exception, out_path: Path, executed: Any) -> tuple[str, dict]:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        index = exc.cell_index  # in the executed copy, which holds papermill's injected cell
        injected = (
            [i for i, c in enumerate(executed.cells) if "injected-parameters" in c.metadata.get("tags", [])]
            if executed
            else []
        )
        source_index = index - sum(1 for i in injected if i < index)
        lines = _cell_lines(spec.path)
        where = (
            f"cell {source_index} (0-based, line {lines[source_index]} of {spec.path.name})"
            if source_index < len(lines)
            else f"cell {source_index}"
        )
        first = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "")
        info = {
            "cell_index": source_index,
            "executed_cell_index": index,
            "exec_count": exc.exec_count,
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_source": exc.source,
        }
        msg = (
            f"Notebook {spec.name} failed in {where}, `{first.strip()}`: {exc.ename}: {exc.evalue}. "
            f"The executed copy with the full traceback is {out_path}; what earlier notebooks produced is kept, "
            "and a re-run resumes at this notebook."
        )
        return msg, info
    info = {"ename": type(exc).__name__, "evalue": str(exc)}
    return (
        f"Notebook {spec.name} did not finish: {type(exc).__name__}: {exc}. The partial copy is {out_path}; "
        "what earlier notebooks produced is kept, and a re-run resumes at this notebook.",
        info,
    )


# ---- the runner ---------------------------------------------------------------------------------
def run_book(
    preset: str = "smoke",
    run_dir: str | Path | None = None,
    only: Iterable[str | int] | str | int | None = None,
    start_from: str | int | None = None,
    parameters: Mapping[str, Any] | None = None,
    timeout: float | None = DEFAULT_CELL_TIMEOUT_S,
    progress: bool = True,
    kernel_name: str = "python3",
    notebooks_dir: str | Path | None = None,
    force: bool = False,
    cwd: str | Path | None = None,
) -> dict:
    """Run the book's notebooks in order; returns the manifest (also ``RUN/book_manifest.json``).

    ``run_dir``: the run folder (default ``runs/book-<preset>``); ``only``: notebook numbers or
    names to run (``["03", "04"]``); ``start_from``: a number, runs it and every later one;
    ``parameters``: notebook parameters by name, checked (name and type) before anything runs and
    passed to the notebooks that declare them; ``timeout``: seconds per cell (None: no limit);
    ``force``: run even notebooks the manifest records as complete with the same parameters and
    source; ``cwd``: the kernels' working directory (default: the current one).
    Raises :class:`BookError` on bad arguments and on the first failing notebook.
    """
    import papermill as pm
    from tqdm.auto import tqdm

    cfg = book_preset(preset)
    run_dir = Path(run_dir if run_dir is not None else f"runs/book-{preset}").expanduser().resolve()
    cwd = Path(cwd).resolve() if cwd is not None else Path.cwd()
    specs = select_notebooks(discover_notebooks(notebooks_dir), only, start_from)
    injected = check_parameters(specs, parameters)
    kernel = resolve_kernel(kernel_name)

    manifest = read_manifest(run_dir)
    if manifest is not None and manifest.get("preset") != preset:
        raise BookError(
            f"{run_dir} holds a book run with preset {manifest.get('preset')!r}; its artifacts would be reused for "
            f"preset {preset!r}. Use another run_dir for this preset."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "notebooks").mkdir(exist_ok=True)
    from ..env import describe_environment

    manifest = manifest or {"preset": preset, "run_dir": str(run_dir), "created": _now(), "notebooks": {}}
    manifest.update(
        {
            "kernel": {k: kernel[k] for k in ("name", "argv", "python", "source")},
            "environment": describe_environment("cpu"),
        }
    )
    manifest["config"] = dataclasses.asdict(cfg)
    _write_manifest(run_dir, manifest)

    with kernel_environment(run_dir, kernel) as env:
        bar = tqdm(specs, desc=f"book ({preset})", unit="notebook", disable=not progress)
        for spec in bar:
            bar.set_postfix_str(spec.name)
            params = {"preset": preset, "run_dir": str(run_dir), **injected[spec.key]}
            out_path = run_dir / "notebooks" / f"{spec.name}.ipynb"
            entry = manifest["notebooks"].get(spec.name)
            if (
                not force
                and entry is not None
                and entry.get("status") == "complete"
                and entry.get("parameters") == params
                and entry.get("source_sha256") == spec.source_sha256
                and out_path.is_file()
            ):
                entry["last_action"] = "skipped"
                _write_manifest(run_dir, manifest)
                continue
            entry = {
                "status": "running",
                "started": _now(),
                "finished": None,
                "seconds": None,
                "source": str(spec.path),
                "source_sha256": spec.source_sha256,
                "output": str(out_path),
                "parameters": params,
                "figures": [],
                "tables": [],
                "last_action": "executed",
            }
            manifest["notebooks"][spec.name] = entry
            _write_manifest(run_dir, manifest)
            before_fig, before_tab = _snapshot(run_dir / "figures"), _snapshot(run_dir / "tables")
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(
                    read_notebook(spec.path),
                    str(out_path),
                    parameters=params,
                    kernel_name=kernel_name,
                    kernel_manager_class=kernel_manager_class(),
                    progress_bar=progress,
                    execution_timeout=timeout,
                    start_timeout=180,
                    cwd=str(cwd),
                )
            except Exception as exc:  # noqa: BLE001 -- every failure is reported the same way
                executed = None
                if out_path.is_file():
                    import nbformat

                    with contextlib.suppress(Exception):
                        executed = nbformat.read(out_path, as_version=4)
                message, info = _failure_message(spec, exc, out_path, executed)
                entry.update(status="failed", finished=_now(), seconds=round(time.perf_counter() - t0, 2), error=info)
                entry["figures"] = _changed(run_dir / "figures", before_fig, run_dir)
                entry["tables"] = _changed(run_dir / "tables", before_tab, run_dir)
                _write_manifest(run_dir, manifest)
                bar.close()
                raise BookError(message) from exc
            entry.update(status="complete", finished=_now(), seconds=round(time.perf_counter() - t0, 2))
            entry["figures"] = _changed(run_dir / "figures", before_fig, run_dir)
            entry["tables"] = _changed(run_dir / "tables", before_tab, run_dir)
            _write_manifest(run_dir, manifest)
        bar.close()
    manifest["environment_variables"] = {k: v for k, v in env.items() if k != "JUPYTER_PATH"}
    _write_manifest(run_dir, manifest)
    return manifest


# ---- command line -------------------------------------------------------------------------------
def parse_param_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=5", "resolutions=[64, 224]", "name=abc"]`` -> a dict; values are Python literals
    where they parse as one (numbers, lists, True/False/None, quoted strings), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise BookError(f"--param takes NAME=VALUE, got {item!r}.")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        out[name.strip()] = value
    return out


def add_book_arguments(p: Any) -> None:
    """The arguments of ``instanas book`` (an argparse parser)."""
    p.add_argument("--preset", default="smoke", help="a preset of instanas_core.presets (default smoke)")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/book-PRESET)")
    p.add_argument("--only", nargs="+", default=None, metavar="NN", help="run only these notebooks (numbers or names)")
    p.add_argument(
        "--from",
        "--start-from",
        dest="start_from",
        default=None,
        metavar="NN",
        help="run this notebook and every later one",
    )
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a notebook parameter (repeatable)"
    )
    p.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, help="seconds per cell, 0 for no limit")
    p.add_argument("--force", action="store_true", help="re-run notebooks the manifest records as complete")
    p.add_argument("--notebooks-dir", default=None, help="folder of NN_name.py notebooks (default: the project's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_book_command(args: Any) -> int:
    """``instanas book``: run the book and print where everything went."""
    manifest = run_book(
        preset=args.preset,
        run_dir=args.run_dir,
        only=args.only,
        start_from=args.start_from,
        parameters=parse_param_assignments(args.param),
        timeout=args.timeout or None,
        progress=not args.quiet,
        notebooks_dir=args.notebooks_dir,
        force=args.force,
    )
    for name, entry in manifest["notebooks"].items():
        print(
            f"{name:32s} {entry['status']:9s} {entry.get('last_action', ''):9s} {entry.get('seconds') or 0:8.1f} s  "
            f"{entry['output']}"
        )
    print(f"manifest: {Path(manifest['run_dir']) / MANIFEST_FILE}")
    return 0


# ---- exported figures ---------------------------------------------------------------------------
def finished_book(run_dir: str | Path) -> tuple[Path, dict]:
    """(run folder, manifest) of a book run whose notebooks all completed; a one-paragraph
    :class:`BookError` otherwise."""
    run = Path(run_dir).expanduser().resolve()
    manifest = read_manifest(run)
    if manifest is None:
        raise BookError(f"{run} holds no book run ({MANIFEST_FILE} is missing); run `instanas book` first.")
    notebooks = manifest.get("notebooks", {})
    unfinished = [n for n, e in notebooks.items() if e.get("status") != "complete"]
    if unfinished or not notebooks:
        raise BookError(
            f"{run}: notebooks not complete ({', '.join(unfinished) or 'none ran'}); finish the book first."
        )
    return run, manifest


def export_figures(run_dir: str | Path, dest: str | Path, command: str | None = None, force: bool = False) -> Path:
    """Copy the PNG figures of a finished book run into ``dest`` (the repository's ``figures/``)
    with a README that says what made them: preset, data set, machine, command, commit, the
    time each notebook took. Refuses a run whose notebooks did not all complete.

    ``dest`` keeps a manifest (:mod:`instanas_core.ownership`) of the files this command wrote:
    only those are replaced or removed. A folder holding other files is refused unless ``force``,
    and even then a README this command did not write is kept (the description goes to
    ``FIGURES.md`` instead)."""
    import shutil

    from ..ownership import FolderLock, claim, foreign_entries, recorded_files, start_manifest
    from ..ownership import read_manifest as read_manifest_of

    run, manifest = finished_book(run_dir)
    pngs = sorted((run / "figures").glob("*.png"))
    out = Path(dest)
    if out.exists() and not out.is_dir():
        raise BookError(f"--out {out} is a file, not a folder; choose a folder for the figures.")
    created = not out.exists()
    with FolderLock(out, "figures"):
        foreign = foreign_entries(out)
        if foreign and not force:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise BookError(
                f"--out {out} holds files that `instanas figures` did not write ({shown}); nothing was copied. Choose "
                "an empty or new folder, or pass --force to add the figures beside them (files it did not write are "
                "still never deleted, and a README it did not write is never replaced)."
            )
        if read_manifest_of(out) is None:
            start_manifest(out, "figures", created)
        ours = set(recorded_files(out))
        names = {p.name for p in pngs}
        for rel in sorted(ours):  # figures of an earlier export that this run no longer has
            if rel.endswith(".png") and rel not in names:
                (out / rel).unlink(missing_ok=True)
        for png in pngs:
            shutil.copy2(png, claim(out / png.name, force=force))
        readme = out / "README.md"
        if readme.exists() and "README.md" not in ours:
            readme = out / "FIGURES.md"
            print(f"kept {out / 'README.md'} (not written by this command); the description is in {readme}")
        _write_figures_readme(claim(readme, force=force), manifest, run, pngs, command)
    return out


def _write_figures_readme(path: Path, manifest: dict, run: Path, pngs: list[Path], command: str | None) -> None:
    """The README of an exported figures folder: what made the figures, where and how long."""
    notebooks = manifest.get("notebooks", {})
    cfg = book_preset(manifest["preset"])
    env = manifest.get("environment", {})
    from ..data import dataset_title
    from ..presets import method_label

    lines = [
        f"# Figures of one reference run of the `{manifest['preset']}` preset",
        "",
        "Reduced-scale figures made on a CPU by the notebook book; they show that every stage runs and what it",
        "measures at this scale. They are **not** the paper's GPU results (see the tables' paper columns for those).",
        "",
        f"- preset: `{manifest['preset']}`; data set: {dataset_title(cfg.experiment.dataset, cfg.experiment.data_root)}; "
        f"width {cfg.experiment.width_mult}; {method_label(cfg)}",
        f"- machine: {env.get('device_name', '?')}, {env.get('cpu_count', '?')} cores; torch {env.get('torch', '?')}; "
        f"{env.get('platform', '')}",
        f"- command: `{command or 'instanas book --preset ' + manifest['preset'] + ' --run-dir ' + str(run)}`",
        f"- commit: {env.get('git_commit', '?')}; run started {manifest.get('created', '?')}",
        "",
        "| notebook | seconds | figures |",
        "| --- | ---: | --- |",
    ]
    for name, entry in notebooks.items():
        figs = ", ".join(Path(f).stem for f in entry.get("figures", []) if f.endswith(".png"))
        lines.append(f"| {name} | {entry.get('seconds') or 0:.0f} | {figs} |")
    total = sum(e.get("seconds") or 0 for e in notebooks.values())
    lines += ["", f"Total: {total / 60:.1f} min over {len(notebooks)} notebooks; {len(pngs)} figures.", ""]
    path.write_text("\n".join(lines))
