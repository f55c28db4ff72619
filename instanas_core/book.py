"""The notebook book: numbered, parameterised notebooks that walk through the paper and rebuild
its figures and tables, run in order with papermill.

Two halves:

* the **runner**, :func:`run_book` -- runs ``notebooks/NN_*.py`` (jupytext percent format) in
  order into ``RUN/notebooks/NN_name.ipynb``, after checking every parameter's name and type
  against the notebooks' ``parameters`` cells; keeps ``RUN/book_manifest.json`` (per notebook:
  status, times, output, figures and tables produced, parameters) and skips notebooks already
  complete with the same parameters and source, so a re-run resumes where a failure stopped it;
* the **notebook helpers** (:func:`start`, :class:`BookContext`, :func:`load_splits`,
  :func:`ensure_profile`, ...), which keep each notebook cell to one call.

Every notebook takes ``preset`` and ``run_dir`` and writes figures (PNG and PDF) to
``RUN/figures/``, tables (CSV) to ``RUN/tables/``, stage artifacts to ``RUN/<stage>/``.

Kernel: notebooks store the kernel name ``python3``. In a virtual environment with ipykernel,
``python3`` is ipykernel's own spec (``.venv/share/jupyter/kernels/python3``, installed with the
wheel, first on Jupyter's path inside the environment) whose command is ``python``, which
jupyter_client replaces by ``sys.executable``: the kernel is the interpreter that runs the book.
:func:`resolve_kernel` checks this before anything runs; if ``python3`` would start another
interpreter (a user-level spec pointing elsewhere, say), it writes a private spec for
``sys.executable`` into a temporary folder and puts that first on ``JUPYTER_PATH`` for the run.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

if TYPE_CHECKING:  # the runner imports nothing heavy (torch) until a notebook helper needs it
    from .profile import ProfileConfig

__all__ = [
    "BookError",
    "BookContext",
    "NotebookSpec",
    "NotebookParameter",
    "MANIFEST_FILE",
    "DEFAULT_NOTEBOOKS_DIR",
    "book_preset",
    "list_book_presets",
    "profile_config",
    "discover_notebooks",
    "notebook_parameters",
    "check_parameters",
    "resolve_kernel",
    "run_book",
    "read_manifest",
    "parse_param_assignments",
    "add_book_arguments",
    "run_book_command",
    "start",
    "load_splits",
    "dataset_rows",
    "ensure_run_table",
    "describe_table",
    "check_children",
    "ensure_latency_check",
    "ensure_profile",
    "ensure_extra_profiles",
    "load_profile_panel",
    "stack_panels",
    "lut_rows",
    "correlation_rows",
]

MANIFEST_FILE = "book_manifest.json"
DEFAULT_NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.py$")
REQUIRED_PARAMETERS = ("preset", "run_dir")
DEFAULT_CELL_TIMEOUT_S = 6 * 3600


class BookError(RuntimeError):
    """A book that cannot run as asked (bad parameters, unknown notebook) or a notebook that failed."""


# ---- presets ------------------------------------------------------------------------------------
# The presets are the training configuration's (instanas_core.config): data set, width, stage
# settings, profiling. The book adds one thing, how many children notebook 01 times to check the
# look-up table (Figure 4); the paper timed 10,000 per resolution.
CHECK_CHILDREN = {"smoke": 8, "cpu": 100, "cifar10-cpu": 100}
CHECK_CHILDREN_DEFAULT = 200


def list_book_presets() -> list[str]:
    from .config import PRESETS

    return list(PRESETS)


def book_preset(name: str) -> Any:
    """The :class:`~instanas_core.config.Config` of preset ``name``."""
    from .config import ConfigError, get_preset

    try:
        return get_preset(name)
    except ConfigError as exc:
        raise BookError(f"Unknown preset {name!r} for the book; known presets: {', '.join(list_book_presets())}.") from exc


def profile_config(preset: str) -> ProfileConfig:
    """The latency-profiling settings of ``preset`` (resolution, width and classes of its space)."""
    from .config import stage_profile_config

    return stage_profile_config(book_preset(preset))


# ---- notebooks and their parameters -------------------------------------------------------------
@dataclass(frozen=True)
class NotebookParameter:
    name: str
    default: Any
    help: str = ""

    @property
    def type_name(self) -> str:
        return "None" if self.default is None else type(self.default).__name__


@dataclass(frozen=True)
class NotebookSpec:
    key: str  # "00"
    name: str  # "00_overview_and_data"
    path: Path
    parameters: dict[str, NotebookParameter] = field(default_factory=dict)
    source_sha256: str = ""


def _read_notebook(path: Path):
    import jupytext

    nb = jupytext.read(path)
    ks = nb.metadata.get("kernelspec", {})
    if ks.get("name") != "python3":
        raise BookError(f"Notebook {path.name} must store the kernel name 'python3' in its header, found {ks.get('name')!r}.")
    return nb


def notebook_parameters(nb: Any, label: str = "notebook") -> dict[str, NotebookParameter]:
    """Names, defaults and help of the cell tagged ``parameters``; each line must be
    ``name = <literal>  # optional help`` (papermill injects only literals)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise BookError(f"{label} must have exactly one cell tagged 'parameters', found {len(cells)}.")
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise BookError(f"the parameters cell of {label} is not valid Python: {exc}") from None
    lines = source.splitlines()
    params: dict[str, NotebookParameter] = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise BookError(f"the parameters cell of {label} may hold only `name = literal` lines; line {stmt.lineno} is not one.")
        try:
            default = ast.literal_eval(stmt.value)
        except ValueError:
            raise BookError(f"parameter {stmt.targets[0].id!r} of {label} has a non-literal default (line {stmt.lineno}).") from None
        line = lines[stmt.end_lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line[stmt.end_col_offset :] else ""
        params[stmt.targets[0].id] = NotebookParameter(stmt.targets[0].id, default, help_text)
    for name in REQUIRED_PARAMETERS:
        if name not in params or not isinstance(params[name].default, str):
            raise BookError(f"{label} must declare the parameter {name!r} with a string default in its parameters cell.")
    return params


def discover_notebooks(notebooks_dir: str | Path | None = None) -> list[NotebookSpec]:
    """The numbered notebooks ``NN_name.py`` of ``notebooks_dir``, in order, with their parameters."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else DEFAULT_NOTEBOOKS_DIR
    if not folder.is_dir():
        raise BookError(
            f"Notebook folder {folder} does not exist; the book's notebooks live in notebooks/ of a checkout "
            "of this project (pass notebooks_dir= to use another folder)."
        )
    specs = []
    for path in sorted(folder.iterdir()):
        m = NOTEBOOK_RE.match(path.name)
        if not m:
            continue
        nb = _read_notebook(path)
        specs.append(
            NotebookSpec(m.group(1), path.stem, path, notebook_parameters(nb, path.name), hashlib.sha256(path.read_bytes()).hexdigest())
        )
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        raise BookError(f"Two notebooks in {folder} share a number: {', '.join(sorted(keys))}.")
    if not specs:
        raise BookError(f"No numbered notebooks (NN_name.py) in {folder}.")
    return specs


def _select(specs: list[NotebookSpec], only: Iterable[str | int] | None, start_from: str | int | None) -> list[NotebookSpec]:
    def key_of(k: str | int) -> str:
        k = f"{k:02d}" if isinstance(k, int) else str(k)
        for s in specs:
            if k in (s.key, s.name, s.path.name):
                return s.key
        raise BookError(f"No notebook {k!r} in the book; notebooks: {', '.join(s.name for s in specs)}.")

    chosen = specs
    if only is not None:
        if isinstance(only, (str, int)):
            only = [only]
        keys = {key_of(k) for k in only}
        chosen = [s for s in chosen if s.key in keys]
    if start_from is not None:
        first = key_of(start_from)
        chosen = [s for s in chosen if s.key >= first]
    if not chosen:
        raise BookError("The selection (only=..., start_from=...) leaves no notebook to run.")
    return chosen


def _injectable(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, list):
        return all(_injectable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _injectable(v) for k, v in value.items())
    return False


def _coerce(value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``; raises TypeError when it does not fit."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, tuple):
        value = list(value)
    if not _injectable(value):
        raise TypeError
    if default is None:  # no type to hold it to
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise TypeError
    return value


def check_parameters(
    notebooks: Sequence[NotebookSpec], parameters: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Check ``parameters`` against the selected notebooks before anything runs.

    A name must be declared by at least one selected notebook and its value must have the type
    of that notebook's default (an int is accepted for a float; a path for a string; a tuple for
    a list). Returns, per notebook key, the (coerced) parameters that notebook declares.
    """
    parameters = dict(parameters or {})
    reserved = [k for k in REQUIRED_PARAMETERS if k in parameters]
    if reserved:
        raise BookError(
            f"Pass {' and '.join(reserved)} as the book's own argument(s) (run_book(preset=..., run_dir=...)), "
            "not among the notebook parameters."
        )
    declared = {n for s in notebooks for n in s.parameters}
    unknown = sorted(set(parameters) - declared)
    if unknown:
        valid = "; ".join(
            f"{s.name}: " + ", ".join(f"{p.name} ({p.type_name}, default {p.default!r})" for p in s.parameters.values() if p.name not in REQUIRED_PARAMETERS)
            for s in notebooks
        )
        raise BookError(
            f"Unknown notebook parameter(s) {', '.join(map(repr, unknown))}: no selected notebook declares "
            f"{'it' if len(unknown) == 1 else 'them'} (papermill would only log this and run with the defaults). "
            f"Besides preset and run_dir, the selected notebooks accept -- {valid or 'nothing'}."
        )
    out: dict[str, dict[str, Any]] = {s.key: {} for s in notebooks}
    for name, value in parameters.items():
        for s in notebooks:
            p = s.parameters.get(name)
            if p is None:
                continue
            try:
                out[s.key][name] = _coerce(value, p.default)
            except TypeError:
                raise BookError(
                    f"Parameter {name!r} of notebook {s.name} expects a value of type {p.type_name} "
                    f"(its default is {p.default!r}), but got {value!r} of type {type(value).__name__}. "
                    "Notebook parameters must be str, int, float, bool, list, dict or None, matching the default."
                ) from None
    return out


# ---- the kernel ---------------------------------------------------------------------------------
def _python_aliases() -> set[str]:
    return {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}


def _same_interpreter(executable: str) -> bool:
    if executable in _python_aliases():  # jupyter_client replaces these by sys.executable
        return True
    if os.path.abspath(executable) == os.path.abspath(sys.executable):
        return True
    try:  # a different path may still be this environment (another symlink to it)
        out = subprocess.run([executable, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and os.path.realpath(out.stdout.strip()) == os.path.realpath(sys.prefix)
    except (OSError, subprocess.SubprocessError):
        return False


def resolve_kernel(kernel_name: str = "python3") -> dict:
    """How ``kernel_name`` will start: ``{"name", "argv", "python", "source", "jupyter_path"}``.

    For ``python3`` the kernel must be this interpreter; if Jupyter's ``python3`` spec would start
    another one (or none exists), a private spec for ``sys.executable`` is written to a temporary
    folder, returned as ``jupyter_path`` to put first on ``JUPYTER_PATH`` while the book runs.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
        argv, resource_dir = list(spec.argv), spec.resource_dir
    except NoSuchKernel:
        argv, resource_dir = [], None
    if argv and (kernel_name != "python3" or _same_interpreter(argv[0])):
        python = sys.executable if argv[0] in _python_aliases() else argv[0]
        return {"name": kernel_name, "argv": argv, "python": python, "source": resource_dir, "jupyter_path": None}
    if kernel_name != "python3":
        raise BookError(f"No Jupyter kernel named {kernel_name!r}; `jupyter kernelspec list` shows the installed ones.")
    folder = Path(tempfile.mkdtemp(prefix="instanas-kernel-"))
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return {"name": "python3", "argv": argv, "python": sys.executable, "source": f"private spec ({spec_dir})", "jupyter_path": str(folder)}


def _numba_cache_dir(run_dir: Path) -> Path:
    """The checkout's git-ignored ``.numba_cache`` when writable (umap-learn's compiled code is then
    reused across runs: a cold compile costs tens of seconds), else one inside the run folder."""
    if not (DEFAULT_NOTEBOOKS_DIR.parent / "pyproject.toml").is_file():  # not a checkout
        return run_dir / ".cache" / "numba"
    shared = DEFAULT_NOTEBOOKS_DIR.parent / ".numba_cache"
    try:
        shared.mkdir(exist_ok=True)
        if os.access(shared, os.W_OK):
            return shared
    except OSError:
        pass
    return run_dir / ".cache" / "numba"


@contextlib.contextmanager
def _kernel_environment(run_dir: Path, kernel: dict) -> Iterator[dict]:
    """Environment the kernels inherit: a non-interactive matplotlib backend, a writable numba
    cache (umap-learn compiles at import), a fixed hash seed; restored afterwards."""
    wanted = {
        "MPLBACKEND": "agg",
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR") or str(_numba_cache_dir(run_dir)),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED") or "0",
    }
    if kernel.get("jupyter_path"):
        wanted["JUPYTER_PATH"] = os.pathsep.join(p for p in (kernel["jupyter_path"], os.environ.get("JUPYTER_PATH")) if p)
    Path(wanted["NUMBA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield wanted
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if kernel.get("jupyter_path"):  # the private kernel spec lives as long as the run
            import shutil

            shutil.rmtree(kernel["jupyter_path"], ignore_errors=True)


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
        injected = [i for i, c in enumerate(executed.cells) if "injected-parameters" in c.metadata.get("tags", [])] if executed else []
        source_index = index - sum(1 for i in injected if i < index)
        lines = _cell_lines(spec.path)
        where = f"cell {source_index} (0-based, line {lines[source_index]} of {spec.path.name})" if source_index < len(lines) else f"cell {source_index}"
        first = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "")
        info = {"cell_index": source_index, "executed_cell_index": index, "exec_count": exc.exec_count, "ename": exc.ename, "evalue": exc.evalue, "cell_source": exc.source}
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
    specs = _select(discover_notebooks(notebooks_dir), only, start_from)
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
    from .env import describe_environment

    manifest = manifest or {"preset": preset, "run_dir": str(run_dir), "created": _now(), "notebooks": {}}
    manifest.update({"kernel": {k: kernel[k] for k in ("name", "argv", "python", "source")}, "environment": describe_environment("cpu")})
    manifest["config"] = dataclasses.asdict(cfg)
    _write_manifest(run_dir, manifest)

    with _kernel_environment(run_dir, kernel) as env:
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
                    _read_notebook(spec.path),
                    str(out_path),
                    parameters=params,
                    kernel_name=kernel_name,
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
    p.add_argument("--preset", default="smoke", help="a preset of instanas_core.config (default smoke)")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/book-PRESET)")
    p.add_argument("--only", nargs="+", default=None, metavar="NN", help="run only these notebooks (numbers or names)")
    p.add_argument("--from", "--start-from", dest="start_from", default=None, metavar="NN", help="run this notebook and every later one")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a notebook parameter (repeatable)")
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
        print(f"{name:32s} {entry['status']:9s} {entry.get('last_action', ''):9s} {entry.get('seconds') or 0:8.1f} s  {entry['output']}")
    print(f"manifest: {Path(manifest['run_dir']) / MANIFEST_FILE}")
    return 0


# ---- helpers for the notebooks ------------------------------------------------------------------
@dataclass
class BookContext:
    """What one notebook knows about its run: the preset's configuration, the run folder, where
    figures and tables go, and a label naming preset, data set and machine for figure titles."""

    notebook: str
    cfg: Any  # instanas_core.config.Config
    run_dir: Path
    seed: int
    machine: str

    @property
    def preset(self) -> str:
        return self.cfg.preset

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / "figures"

    @property
    def tables_dir(self) -> Path:
        return self.run_dir / "tables"

    @property
    def label(self) -> str:
        from .data import dataset_info

        exp = self.cfg.experiment
        return f"preset {self.preset} \u00b7 {dataset_info(exp.dataset).title} \u00b7 width {exp.width_mult} \u00b7 {self.machine}"

    def show(self, fig: Any, name: str) -> Any:
        """Save ``fig`` (PNG + PDF in RUN/figures) and return the PNG for the notebook to display."""
        from IPython.display import Image

        from .plots import save_figure

        paths = save_figure(fig, self.run_dir, name)
        return Image(filename=str(paths["png"]))

    def table(self, rows: Sequence[Mapping[str, Any]], name: str, floatfmt: str = ".4g") -> Any:
        """Write ``rows`` to RUN/tables/NAME.csv and return them as a Markdown table to display."""
        from IPython.display import Markdown

        if not rows:
            raise ValueError(f"table {name!r} has no rows.")
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with (self.tables_dir / f"{name}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(rows)

        def fmt(v: Any) -> str:
            return format(v, floatfmt) if isinstance(v, float) else ("" if v is None else str(v))

        md = io.StringIO()
        md.write("| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n")
        for r in rows:
            md.write("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |\n")
        return Markdown(md.getvalue())


def _use_shared_cifar10_jpeg() -> str | None:
    """Point ``$INSTANAS_CIFAR10_JPEG`` at the copy beside the checkout
    (``../shared/datasets/cifar10-jpeg``, see that folder's README) when nothing else locates
    the data set; returns the folder used, if any."""
    from .data import data_root

    if os.environ.get("INSTANAS_CIFAR10_JPEG") or (data_root() / "cifar10-jpeg").exists():
        return None
    beside = DEFAULT_NOTEBOOKS_DIR.parent.parent / "shared" / "datasets" / "cifar10-jpeg"
    if (beside / "train.npz").is_file():
        os.environ["INSTANAS_CIFAR10_JPEG"] = str(beside)
        return str(beside)
    return None


def start(notebook: str, preset: str, run_dir: str | Path, seed: int = 0) -> BookContext:
    """The first cell of every notebook: seed everything, print what runs, make RUN's folders."""
    import random

    import matplotlib
    import numpy as np
    import torch

    from . import __version__
    from .env import describe_environment

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    cfg = book_preset(preset)
    run = Path(run_dir).expanduser().resolve()
    for sub in ("figures", "tables"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    shared = _use_shared_cifar10_jpeg() if cfg.experiment.dataset == "cifar10-jpeg" else None
    env = describe_environment(cfg.experiment.device)
    exp = cfg.experiment
    subsets = f", {exp.train_per_class}/{exp.eval_per_class} images per class (train/eval)" if exp.train_per_class else ""
    print(f"notebook {notebook} \u00b7 preset {preset} \u00b7 seed {seed}")
    print(f"experiment   {exp.dataset}{subsets}, width {exp.width_mult}, 24-channel stage stride {exp.stage24_stride or 'as paper'}, device {exp.device}")
    print(f"run folder   {run}")
    print(f"python       {sys.executable} ({env['python']})")
    print(
        f"packages     instanas_core {__version__}, torch {env['torch']}, torchvision {env['torchvision']}, "
        f"numpy {env['numpy']}, matplotlib {matplotlib.__version__} (backend {matplotlib.get_backend()})"
    )
    print(f"machine      {env['device_name']}, {env['cpu_count']} cores, torch threads {env['threads']}, {env['platform']}")
    print(f"git commit   {env['git_commit']}")
    if shared:
        print(f"data         CIFAR-10 (JPEG q75) from {shared}")
    return BookContext(notebook, cfg, run, seed, env["device_name"])


def load_splits(cfg: Any, augment: bool = False) -> dict[str, Any]:
    """Every split of the experiment's data set exactly as its stages build them (class-balanced
    subsets where the preset asks for them), un-augmented unless ``augment``."""
    from .data import dataset_info
    from .stages.common import build_split

    exp = cfg.experiment
    if exp.dataset == "cifar10-jpeg":
        _use_shared_cifar10_jpeg()
    return {split: build_split(exp, split, augment=augment) for split in dataset_info(exp.dataset).splits}


def dataset_rows(splits: Mapping[str, Any]) -> list[dict]:
    """One row per split: images used (and of how many), classes, resolution, class balance."""
    from .plots import class_counts

    rows = []
    for name, ds in splits.items():
        counts = class_counts(ds)
        info = ds.info
        rows.append(
            {"data set": info.title, "split": name, "images": len(ds), "of": info.splits[name], "classes": info.num_classes,
             "resolution_px": info.resolution, "min_per_class": int(counts.min()), "max_per_class": int(counts.max())}
        )
    return rows


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    with warnings.catch_warnings():  # tqdm.auto in a kernel without ipywidgets warns even when disabled
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield


def ensure_run_table(cfg: Any, run_dir: str | Path, progress: bool = False) -> tuple[Any, Path]:
    """The run's latency look-up table, ``RUN/profile/lut.json``: the one the search stage reads
    (made here if absent, with the preset's profiling settings, exactly as the stage would)."""
    from .stages.common import ensure_latency_table, resolve_device

    t0 = time.perf_counter()
    existed = (Path(run_dir) / "profile" / "lut.json").is_file()
    with _quiet_progress():
        table, path = ensure_latency_table(cfg, run_dir, resolve_device(cfg.experiment.device), progress)
    print(f"{'loaded' if existed else f'profiled in {time.perf_counter() - t0:.1f} s:'} {path}")
    return table, path


def describe_table(table: Any) -> str:
    """A few lines on a look-up table: its space, machine, reference paths and calibration."""
    from .reward import reference_latencies

    sp, m, refs = table.space, table.meta, reference_latencies(table)
    strides = ", ".join(str(st.stride) for st in sp.stages)
    lines = [
        f"space: {sp.resolution} px, width {sp.width_mult}, {sp.num_classes} classes, stage strides {strides}",
        f"timed on {m.get('device_name')} ({m.get('threads')} thread(s), torch {m.get('torch')}, {m.get('date')}): {m.get('statistic')}",
        f"stem {table.stem_ms:.3f} ms, head {table.head_ms:.3f} ms, controller {table.controller_ms:.3f} ms",
        "estimates: all modules {all_modules_ms:.3f} ms, MobileNetV2 path (every cell ir_k3_e6) {mobilenetv2_ms:.3f} ms, "
        "cheapest valid path {cheapest_ms:.3f} ms".format(**refs),
    ]
    c = table.calibration
    lines.append(
        f"calibration: measured ~ {c['coef'][0]:.3f} x sum + {c['coef'][1]:.3f} ms (fitted on {c['fit_children']} children)"
        if c else "calibration: none (the estimate is the plain sum of the entries)"
    )
    return "\n".join(lines)


def check_children(preset: str, children: int = 0) -> int:
    """Children timed for Figure 4: ``children`` if positive, else the preset's default."""
    return children if children > 0 else CHECK_CHILDREN.get(preset, CHECK_CHILDREN_DEFAULT)


def ensure_latency_check(cfg: Any, run_dir: str | Path, table: Any, children: int, progress: bool = False) -> Path:
    """Judge the run's table on ``children`` freshly sampled children (a seed other than the
    calibration's), each timed end to end with the controller, twice (the second pass gives the
    machine's noise floor). Writes ``RUN/profile/check/{correlation.csv,summary.json}``; loads
    them when made with the same settings and table. Returns the folder."""
    import numpy as np
    import torch

    from .controller import build_controller
    from .latency import correlation_summary, measure_children, policy_features, sample_children, thread_limit
    from .meta_graph import MetaGraph

    pcfg = profile_config(cfg.preset)
    out = Path(run_dir) / "profile" / "check"
    settings = {
        "children": int(children), "seed": pcfg.seed + 1, "threads": pcfg.threads, "device": pcfg.device,
        "timing": dataclasses.asdict(pcfg.timing), "space_hash": table.space.space_hash(), "table_date": table.meta.get("date"),
    }
    if (out / "summary.json").is_file() and (out / "correlation.csv").is_file():
        summary = json.loads((out / "summary.json").read_text())
        if summary.get("settings") == settings:
            print(f"loaded the check of {children} children in {out}")
            return out
    if children < 3:
        raise BookError(f"Figure 4 needs at least 3 children to correlate, got {children}.")
    t0 = time.perf_counter()
    device = torch.device(pcfg.device)
    torch.manual_seed(pcfg.seed)
    graph = MetaGraph(table.space).to(device).eval()
    controller = build_controller(graph).to(device).eval()
    policies = sample_children(graph, children, settings["seed"])  # (N, T, K)
    with _quiet_progress(), thread_limit(pcfg.threads):
        measured = measure_children(graph, policies, controller, pcfg.threads, pcfg.timing, device, 2, progress)  # (N, 2)
    est, raw = table.estimate(policies).numpy(), table.raw_estimate(policies).numpy()
    feats = policy_features(table.space, policies)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "correlation.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["child", "split", "estimated_ms", "raw_estimate_ms", "measured_ms", "repeat_ms", "modules_run", "policy"])
        for i in range(children):
            bits = "".join(str(int(b)) for b in policies[i].flatten().tolist())
            w.writerow([i, "eval", f"{est[i]:.5f}", f"{raw[i]:.5f}", f"{measured[i, 0]:.5f}", f"{measured[i, 1]:.5f}", int(feats[i, 0]), bits])
    from .env import describe_environment

    summary = {
        "settings": settings,
        "config": {"resolution": table.space.resolution, "width_mult": table.space.width_mult},
        "table": str(Path(run_dir) / "profile" / "lut.json"),
        "machine": describe_environment(device, pcfg.threads),
        "eval": correlation_summary(est, measured[:, 0], measured[:, 1]),
        "eval_raw_sum": correlation_summary(raw, measured[:, 0]),
        "calibration": table.calibration,
        "mean_modules_run": float(np.mean(feats[:, 0])),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"timed {children} children twice in {time.perf_counter() - t0:.1f} s -> {out}")
    return out


def ensure_profile(cfg: ProfileConfig, out_dir: str | Path, progress: bool = False) -> dict:
    """A stand-alone profile of ``cfg`` in ``out_dir`` (:func:`instanas_core.profile.run_profile`:
    table, children split into calibration and judged ones); loaded when there and made with the
    same configuration. Returns its summary."""
    from .profile import run_profile

    out = Path(out_dir)
    needed = [out / "lut.json", out / "summary.json"] + ([out / "correlation.csv"] if cfg.children else [])
    if all(p.is_file() for p in needed):
        summary = json.loads((out / "summary.json").read_text())
        want = json.loads(json.dumps(dataclasses.asdict(cfg)))
        have = summary.get("config", {})
        if have != want:
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            raise BookError(
                f"{out} holds a profile made with another configuration (found vs wanted: {diff}); "
                "use a fresh run_dir or delete that folder to profile again."
            )
        print(f"loaded the profile in {out}")
        return summary
    t0 = time.perf_counter()
    with _quiet_progress():
        summary = run_profile(cfg, out, progress=progress)
    print(f"profiled in {time.perf_counter() - t0:.1f} s -> {out}")
    return summary


# The paper's data set at each resolution (Tables 1-3, Figure 5) sets the head's class count.
_CLASSES_AT = {32: 10, 64: 200, 224: 1000}


def ensure_extra_profiles(preset: str, run_dir: str | Path, resolutions: Sequence[int], children: int) -> list[Path]:
    """Figure 4 at further resolutions, in the paper's space there (width 1.0, the class count
    of the paper's data set): a profile per resolution with ``children`` children, a quarter of
    them fitting the calibration (``RUN/profile/extra-<R>px``). Returns the folders."""
    pcfg = profile_config(preset)
    folders = []
    for res in resolutions:
        extra = dataclasses.replace(
            pcfg, resolution=int(res), width_mult=1.0, num_classes=_CLASSES_AT.get(int(res), pcfg.num_classes), children=max(int(children), 8)
        )
        folders.append(Path(run_dir) / "profile" / f"extra-{res}px")
        ensure_profile(extra, folders[-1])
    return folders


def load_profile_panel(folder: str | Path) -> dict:
    """One Figure 4 panel from a check or profile folder: per child ``estimated``, ``measured``
    and ``split``; the judged ``r`` and ``within10``; a ``title``; the paper's ``paper_r``."""
    import numpy as np

    from .paper_numbers import load_paper_claims

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    if "eval" not in summary:
        raise BookError(f"{folder} was profiled without children (children=0): nothing to correlate.")
    with (folder / "correlation.csv").open() as f:
        rows = list(csv.DictReader(f))
    res, width = summary["config"]["resolution"], summary["config"]["width_mult"]
    paper = [c.value for c in load_paper_claims() if c.metric == "correlation" and c.subject.endswith(f"{res} px")]
    return {
        "estimated": np.array([float(r["estimated_ms"]) for r in rows]),
        "measured": np.array([float(r["measured_ms"]) for r in rows]),
        "split": np.array([r["split"] for r in rows]),
        "r": summary["eval"]["pearson_r"],
        "within10": summary["eval"]["within_10pct"],
        "resolution": res,
        "title": f"{res} px, width {width}" + (": this run's table" if folder.name == "check" else ": paper's space"),
        "paper_r": paper[0] if paper else None,
        "summary": summary,
    }


def stack_panels(panels: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Figure 4 panels as the per-panel lists :func:`~instanas_core.plots.plot_latency_correlation` takes."""
    keys = ("estimated", "measured", "r", "within10", "resolution", "split", "paper_r")
    out = {k: [p[k] for p in panels] for k in keys}
    out["panel_titles"] = [p["title"] for p in panels]
    return out


def lut_rows(table: Any) -> list[dict]:
    """The look-up table as rows (one per cell) for ``BookContext.table``."""
    rows = []
    for spec, ms in zip(table.space.cells(), table.cell_module_ms):
        row = {"cell": spec.index, "in": spec.in_channels, "out": spec.out_channels, "stride": spec.stride, "size_px": spec.in_size}
        row.update({f"{m}_ms": round(float(v), 4) for m, v in zip(table.space.modules, ms)})
        rows.append(row)
    return rows


def correlation_rows(panels: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Figure 4's numbers per panel, beside the paper's r (§4.1)."""
    rows = []
    for p in panels:
        s = p["summary"]
        e, raw, cal = s["eval"], s["eval_raw_sum"], s.get("calibration")
        rows.append(
            {
                "panel": p["title"],
                "children_judged": e["n"],
                "pearson_r": round(e["pearson_r"], 4),
                "paper_r": p["paper_r"],
                "spearman_rho": round(e["spearman_rho"], 4),
                "mape_pct": round(e["mape_pct"], 2),
                "within_10pct": round(100 * e["within_10pct"], 1),
                "noise_floor_within_10pct": round(100 * e["repeat_within_10pct"], 1),
                "raw_sum_within_10pct": round(100 * raw["within_10pct"], 1),
                "calibration_a": round(cal["coef"][0], 4) if cal else None,
                "calibration_b_ms": round(cal["coef"][1], 4) if cal else None,
            }
        )
    return rows
