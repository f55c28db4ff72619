"""The notebook book: numbered, parameterised notebooks that walk through the paper and rebuild
its figures and tables, run in order with papermill.

Two halves:

* the **runner**, :func:`run_book` -- runs ``notebooks/NN_*.py`` (jupytext percent format) in
  order into ``RUN/notebooks/NN_name.ipynb``, after checking every parameter's name and type
  against the notebooks' ``parameters`` cells; keeps ``RUN/book_manifest.json`` (per notebook:
  status, times, output, figures and tables produced, parameters) and skips notebooks already
  complete with the same parameters and source, so a re-run resumes where a failure stopped it;
* the **notebook helpers** (:func:`start`, :class:`BookContext`, :func:`load_splits`,
  :func:`ensure_profile`, ...), which keep each notebook cell to one call. The stage helpers
  (:func:`ensure_stage`, :func:`ensure_variant`, :func:`ensure_baseline`,
  :func:`ensure_comparator`, :func:`ensure_difficulty_run`) load what an earlier notebook left in
  the run folder and make what is missing, so every notebook also runs on its own; the rest turn
  stage outputs (``metrics.csv``, ``records.npz``, ``RUN/results.csv``) into the rows and arrays
  that :mod:`instanas_core.plots` and :meth:`BookContext.table` take.

Every notebook takes ``preset`` and ``run_dir`` and writes figures (PNG and PDF) to
``RUN/figures/``, tables (CSV and Markdown) to ``RUN/tables/``, stage artifacts to ``RUN/<stage>/``.

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
    "LATENCY_KINDS",
    "stage_config",
    "ensure_stage",
    "ensure_search",
    "read_metrics",
    "melt",
    "train_val_curves",
    "stage_rows",
    "search_rows",
    "read_variants",
    "search_tradeoff_points",
    "variant_pick_rows",
    "load_run_table",
    "reference_lines",
    "greedy_latencies",
    "BOOK_VARIANTS",
    "book_variants",
    "variant_config",
    "ensure_evaluation",
    "ensure_variant",
    "variant_rows",
    "variant_points",
    "load_records",
    "split_images",
    "class_names",
    "figure7_data",
    "figure7_rows",
    "figure8_boxes",
    "architecture_rows",
    "DIFFICULTY_RUNS",
    "check_namespace",
    "export_figures",
    "launch_stage",
    "injected_parameters",
    "difficulty_config",
    "ensure_difficulty_run",
    "difficulty_rows",
    "BOOK_BASELINES",
    "BOOK_COMPARATORS",
    "book_baselines",
    "ensure_baseline",
    "baseline_rows",
    "ensure_comparator",
    "load_oneshot_samples",
    "paper_table_for",
    "latest_results",
    "result_family",
    "comparison_rows",
    "reduction_rows",
    "tradeoff_methods",
    "tradeoff_rows",
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
        if stmt.lineno == stmt.end_lineno and line.count("=") > 1:  # papermill's own parser would skip the line
            raise BookError(
                f"line {stmt.lineno} of the parameters cell of {label} holds more than one '=' (in a default or its comment); "
                "papermill cannot parse such a line: reword it."
            )
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


def injected_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The names papermill injected into this kernel and their current values.

    papermill executes its parameters as a cell whose source starts with ``# Parameters``; IPython
    keeps every executed cell's source in ``In``, so the last such cell names exactly what was
    injected (no false alarm for variables a Jupyter user made by running later cells first)."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return {}
    cells = [c for c in history if isinstance(c, str) and c.lstrip().startswith("# Parameters")]
    if not cells:
        return {}
    try:
        tree = ast.parse(cells[-1])
    except SyntaxError:
        return {}
    names = [t.id for stmt in tree.body if isinstance(stmt, ast.Assign) for t in stmt.targets if isinstance(t, ast.Name)]
    return {n: namespace[n] for n in names if n in namespace}


def check_namespace(notebook: str, namespace: Mapping[str, Any], notebooks_dir: str | Path | None = None) -> None:
    """Inside a notebook: refuse parameters that papermill injected but the notebook does not
    declare, and injected values of the wrong type.

    ``papermill -p NAME VALUE`` only logs a warning for an unknown name and runs with the
    defaults, and ``-r`` passes every value as a string; the runner (:func:`run_book`) checks
    both before anything runs, and this is the same check for a notebook executed by papermill
    directly (see :func:`injected_parameters`).
    """
    injected = injected_parameters(namespace)
    if not injected:
        return
    spec = next((s for s in discover_notebooks(notebooks_dir) if s.key == notebook), None)
    if spec is None:
        raise BookError(f"no notebook {notebook!r} in the book.")
    unknown = sorted(set(injected) - set(spec.parameters))
    if unknown:
        valid = ", ".join(f"{p.name} ({p.type_name})" for p in spec.parameters.values())
        raise BookError(
            f"Unknown parameter(s) {', '.join(map(repr, unknown))} for notebook {spec.name}: it declares only {valid}. "
            "papermill ignores such a name and runs with the default; fix the name and run again."
        )
    for name, value in injected.items():
        p = spec.parameters[name]
        try:
            _coerce(value, p.default)
        except TypeError:
            raise BookError(
                f"Parameter {name!r} of notebook {spec.name} expects {p.type_name} (default {p.default!r}) but got "
                f"{value!r} of type {type(value).__name__}. With papermill, pass numbers and booleans with -p (not -r) "
                "and lists with -y 'name: [..]', or use `instanas book --param name=value`, which converts them."
            ) from None


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


def export_figures(run_dir: str | Path, dest: str | Path, command: str | None = None, force: bool = False) -> Path:
    """Copy the PNG figures of a finished book run into ``dest`` (the repository's ``figures/``)
    with a README that says what made them: preset, data set, machine, command, commit, the
    time each notebook took. Refuses a run whose notebooks did not all complete.

    ``dest`` keeps a manifest (:mod:`instanas_core.ownership`) of the files this command wrote:
    only those are replaced or removed. A folder holding other files is refused unless ``force``,
    and even then a README this command did not write is kept (the description goes to
    ``FIGURES.md`` instead)."""
    import shutil

    from .ownership import FolderLock, claim, foreign_entries, recorded_files, start_manifest
    from .ownership import read_manifest as read_manifest_of

    run = Path(run_dir).expanduser().resolve()
    manifest = read_manifest(run)
    if manifest is None:
        raise BookError(f"{run} holds no book run ({MANIFEST_FILE} is missing); run `instanas book` first.")
    notebooks = manifest.get("notebooks", {})
    unfinished = [n for n, e in notebooks.items() if e.get("status") != "complete"]
    if unfinished or not notebooks:
        raise BookError(f"{run}: notebooks not complete ({', '.join(unfinished) or 'none ran'}); finish the book first.")
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
    from .data import dataset_info

    lines = [
        f"# Figures of one reference run of the `{manifest['preset']}` preset",
        "",
        "Reduced-scale figures made on a CPU by the notebook book; they show that every stage runs and what it",
        "measures at this scale. They are **not** the paper's GPU results (see the tables' paper columns for those).",
        "",
        f"- preset: `{manifest['preset']}`; data set: {dataset_info(cfg.experiment.dataset).title}; width {cfg.experiment.width_mult}",
        f"- machine: {env.get('device_name', '?')}, {env.get('cpu_count', '?')} cores; torch {env.get('torch', '?')}; {env.get('platform', '')}",
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

    def for_config(self, cfg: Any) -> "BookContext":
        """The same notebook and run folder, labelled with another experiment's configuration
        (a sub-run such as ``RUN/synthetic``), so its figures and tables name its data set."""
        return dataclasses.replace(self, cfg=cfg)

    def context(self, latency: str | None = None) -> str:
        """:attr:`label` plus how the latencies shown were obtained: ``latency`` is a key of
        :data:`LATENCY_KINDS` (``"estimated"``, ``"measured"``, ``"both"``, ``"mixed"``) or free text."""
        if latency is None:
            return self.label
        return f"{self.label} \u00b7 latency {LATENCY_KINDS.get(latency, latency)}"

    def show(self, fig: Any, name: str) -> Any:
        """Save ``fig`` (PNG + PDF in RUN/figures) and return the PNG for the notebook to display."""
        from IPython.display import Image

        from .plots import save_figure

        paths = save_figure(fig, self.run_dir, name)
        return Image(filename=str(paths["png"]))

    def table(
        self, rows: Sequence[Mapping[str, Any]], name: str, floatfmt: str = ".4g", latency: str | None = None, title: str | None = None
    ) -> Any:
        """Write ``rows`` to RUN/tables/NAME.csv and NAME.md and return the Markdown to display.

        The Markdown is headed by ``title`` (if given) and a line naming preset, data set,
        width, machine and, with ``latency``, how latencies were obtained (see :meth:`context`);
        the CSV holds the rows only."""
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
            text = format(v, floatfmt) if isinstance(v, float) else ("" if v is None else str(v))
            return text.replace("|", "\\|")

        md = io.StringIO()
        if title:
            md.write(f"**{title}**\n\n")
        md.write(f"_{self.context(latency)}_\n\n")
        md.write("| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n")
        for r in rows:
            md.write("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |\n")
        (self.tables_dir / f"{name}.md").write_text(md.getvalue())
        return Markdown(md.getvalue())


# How a figure's or table's latencies were obtained, as its heading says it.
LATENCY_KINDS = {
    "estimated": "estimated (look-up table, \u00a74.1; controller included)",
    "measured": "measured (batch 1, timed on this machine)",
    "both": "estimated (look-up table) and measured (batch 1), as labelled",
    "mixed": "as each row's latency_kind says (estimated or measured)",
}


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


def start(
    notebook: str, preset: str, run_dir: str | Path, seed: int = 0, namespace: Mapping[str, Any] | None = None
) -> BookContext:
    """The first cell of every notebook: check the parameters the kernel holds (``namespace``,
    the notebook's ``globals()``, see :func:`check_namespace`), seed everything, print what runs,
    make RUN's folders."""
    import random

    import matplotlib
    import numpy as np
    import torch

    from . import __version__
    from .env import describe_environment

    if namespace is not None:
        check_namespace(notebook, namespace)
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


# ---- notebooks 02-09: the training stages --------------------------------------------------------
# What each stage writes its summary.json into, and the sections of its config that made it.
_STAGE_SECTIONS = {"pretrain": ("experiment", "pretrain"), "search": ("experiment", "search"),
                   "finetune": ("experiment", "finetune"), "evaluate": ("experiment", "evaluate")}
# Settings that may differ without changing what a finished stage holds (see stages.common).


def stage_config(cfg: Any, stage: str, overrides: Sequence[str] = ()) -> Any:
    """``cfg`` with ``key=value`` overrides (``instanas <stage> --set`` syntax: a field of the
    stage or of the experiment, or ``section.field``), e.g. ``["epochs=3"]`` for fewer epochs."""
    from .config import ConfigError, apply_overrides

    try:
        return apply_overrides(cfg, list(overrides), section=stage)
    except ConfigError as exc:
        raise BookError(f"bad override for the {stage} stage: {exc}") from None


def _stage_folder(stage: str, cfg: Any) -> str:
    return cfg.finetune.out_dir if stage == "finetune" else stage


def _config_diff(saved: Mapping[str, Any], cfg: Any, sections: Sequence[str]) -> list[str]:
    """Settings of ``sections`` that differ between a saved ``config.json`` and ``cfg`` (a field
    the saved file lacks was added to the code since, and is not counted)."""
    from .stages.common import RESUME_FREE_SETTINGS

    mine = dataclasses.asdict(cfg)
    return [
        f"{sec}.{k}: {saved[sec][k]!r} there, {v!r} here"
        for sec in sections
        for k, v in mine[sec].items()
        if k not in RESUME_FREE_SETTINGS and k in saved.get(sec, {}) and saved[sec][k] != v
    ]


def launch_stage(stage: str, cfg: Any, run_dir: str | Path, nproc: int, overwrite: bool = False) -> dict:
    """Run ``stage`` with ``cfg`` in ``nproc`` processes through ``torchrun --standalone`` (a
    subprocess: a notebook's kernel cannot be one rank of a process group), streaming its output;
    returns the stage's ``summary.json``. The configuration travels as a ``config.json`` file
    (``instanas <stage> --config``), so overrides made in the notebook reach every rank."""
    import subprocess

    from .config import config_to_dict
    from .rundir import load_json, save_json

    if stage not in ("pretrain", "search", "finetune"):
        raise BookError(f"only pretrain, search and finetune run under torchrun from a notebook, not {stage!r}.")
    if nproc < 1:
        raise BookError(f"nproc must be at least 1, got {nproc}.")
    run = Path(run_dir)
    config_file = save_json(run / "launch" / f"{stage}-config.json", config_to_dict(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "instanas_core", stage, "--config", str(config_file), "--run-dir", str(run), "--quiet",
           "--overwrite" if overwrite else "--resume"]
    print("launching: " + " ".join(cmd[1:]), flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            tail = (tail + [line.rstrip()])[-15:]
        code = proc.wait()
    if code != 0:
        raise BookError(f"torchrun {stage} with {nproc} processes exited with status {code}; its last lines:\n" + "\n".join(tail))
    return load_json(run / _stage_folder(stage, cfg) / "summary.json")


def ensure_stage(
    stage: str, cfg: Any, run_dir: str | Path, check_config: bool = True, progress: bool = False, nproc: int = 1
) -> dict:
    """The summary of ``RUN/<stage>`` (``RUN/<finetune.out_dir>`` for fine-tuning): loaded when
    the stage finished there, else the stage is run (``resume=True``: an interrupted stage
    continues from its last checkpoint; the stages refuse an existing folder otherwise).

    ``check_config``: a finished stage made with other settings of this stage or of the
    experiment is refused (a notebook re-run with new overrides must not silently show the old
    result); with ``False`` it is accepted and said so (a later notebook needing a stage as
    input takes whatever an earlier notebook trained). An evaluation is cheap and is simply
    redone when its settings differ.

    ``nproc`` > 1 runs the stage in that many processes with ``torchrun`` (:func:`launch_stage`).
    """
    from .rundir import load_json
    from .stages import STAGE_RUNNERS

    if stage not in STAGE_RUNNERS:
        raise BookError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_RUNNERS)}.")
    runner, fmt = STAGE_RUNNERS[stage]
    out = Path(run_dir) / _stage_folder(stage, cfg)
    overwrite = False
    if (out / "summary.json").is_file() and (out / "config.json").is_file():
        summary = load_json(out / "summary.json")
        diff = _config_diff(load_json(out / "config.json"), cfg, _STAGE_SECTIONS[stage])
        if summary.get("finished", True) and (not diff or not check_config):
            note = f" (made with other settings: {'; '.join(diff)})" if diff else ""
            print(f"loaded {out}: {fmt(summary)}{note}")
            return summary
        if diff and stage == "evaluate":
            overwrite = True
        elif diff and summary.get("finished", True):
            raise BookError(
                f"{out} holds a finished {stage} stage made with other settings ({'; '.join(diff)}). "
                "Use another run_dir for these settings, or delete that folder to train it again."
            )
    t0 = time.perf_counter()
    if nproc > 1:
        summary = launch_stage(stage, cfg, run_dir, nproc, overwrite)
    else:
        with _quiet_progress():
            summary = runner(cfg, run_dir, resume=not overwrite, overwrite=overwrite, progress=progress)
    print(f"{fmt(summary)} [{time.perf_counter() - t0:.1f} s in this notebook]")
    return summary


def ensure_search(cfg: Any, run_dir: str | Path) -> dict:
    """Pre-training and search as a later notebook's inputs: loaded when an earlier notebook
    made them (whatever overrides it used), else run with the preset's settings."""
    ensure_stage("pretrain", cfg, run_dir, check_config=False)
    return ensure_stage("search", cfg, run_dir, check_config=False)


def read_metrics(run_dir: str | Path, stage: str) -> list[dict]:
    """``RUN/<stage>/metrics.csv`` as rows of floats (an empty field is NaN)."""
    path = Path(run_dir) / stage / "metrics.csv"
    if not path.is_file():
        raise BookError(f"{path} does not exist: the {stage} stage has not run in {run_dir}.")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in rows]


def melt(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str], value: str, key: str, x: str = "epoch") -> list[dict]:
    """Wide to long: one row per (row, column) with ``x``, ``key`` (the column's label from
    ``columns``) and ``value``, for :func:`~instanas_core.plots.plot_training_curves`'s ``hue``."""
    return [{x: r[x], key: label, value: r[col]} for col, label in columns.items() for r in rows if col in r]


def train_val_curves(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Pre-training (or fine-tuning) metrics as ``{epoch, split, loss, accuracy (%)}`` rows."""
    out = []
    for split in ("train", "val"):
        for r in rows:
            out.append({"epoch": r["epoch"], "split": split, "loss": r[f"{split}_loss"], "accuracy": 100 * r[f"{split}_accuracy"]})
    return out


def stage_rows(summaries: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """One row per stage summary: epochs done, seconds of the call that made or loaded it."""
    rows = []
    for name, s in summaries.items():
        rows.append({"stage": name, "epochs": f"{s.get('epochs_done', '')}/{s.get('epochs', '')}", "finished": s.get("finished", True),
                     "seconds_of_the_call_that_ran_it": round(float(s.get("seconds_this_call", s.get("seconds", 0.0)) or 0.0), 1)})
    return rows


def search_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The search per epoch: bounds, validation accuracy (%), latency (ms), reward, diversity."""
    keep = {
        "epoch": "epoch", "upper_bound": "U_t_ms", "lower_bound": "L_t_ms", "val_accuracy": "val_accuracy_pct",
        "mean_latency_ms": "val_latency_ms", "latency_std_ms": "val_latency_std_ms", "measured_latency_ms": "measured_ms",
        "val_reward": "val_reward", "ctrl_reward": "sampled_reward", "val_distinct_policies": "distinct_architectures",
        "val_modules_per_sample": "modules_per_image",
    }
    out = []
    for r in rows:
        row = {new: r[old] for old, new in keep.items()}
        row["epoch"], row["distinct_architectures"] = int(row["epoch"]), int(row["distinct_architectures"])
        row["val_accuracy_pct"] = 100 * row["val_accuracy_pct"]
        out.append(row)
    return out


def read_variants(run_dir: str | Path) -> dict:
    """``RUN/search/variants.json`` (picked now from the search's checkpoints when missing)."""
    from .stages import pick_variants

    path = Path(run_dir) / "search" / "variants.json"
    if not path.is_file():
        pick_variants(path.parent)
    return json.loads(path.read_text())


def search_tradeoff_points(rows: Sequence[Mapping[str, Any]], variants: Mapping[str, Any] | None = None) -> list[dict]:
    """Validation accuracy (%) against mean table latency per search epoch, and the picked
    variants (A-E) as a second group, for :func:`~instanas_core.plots.plot_accuracy_vs_latency`."""
    by_epoch: dict[int, list[str]] = {}
    for letter, v in (variants or {}).items():
        by_epoch.setdefault(int(v["epoch"]), []).append(letter)
    points = [  # a picked epoch is named once, by its letters
        {"name": "" if int(r["epoch"]) in by_epoch else f"e{int(r['epoch'])}", "group": "search epochs (validation)",
         "latency_ms": r["mean_latency_ms"], "latency_std_ms": r["latency_std_ms"], "accuracy": 100 * r["val_accuracy"]}
        for r in rows
    ]
    for epoch, letters in sorted(by_epoch.items()):
        r = next(r for r in rows if int(r["epoch"]) == epoch)
        points.append({"name": f"{''.join(letters)} (e{epoch})", "group": "picked variants", "latency_ms": r["mean_latency_ms"],
                       "latency_std_ms": 0.0, "accuracy": 100 * r["val_accuracy"]})
    return points


def variant_pick_rows(picked: Mapping[str, Any]) -> list[dict]:
    """``variants.json``'s picks as rows: letter, search epoch, validation accuracy and latency."""
    return [{"variant": k, "search_epoch": v["epoch"], "val_accuracy_pct": round(100 * v["val_accuracy"], 2),
             "val_latency_ms": round(v["mean_latency_ms"], 4), "checkpoint": v["checkpoint"]} for k, v in picked["variants"].items()]


def load_run_table(cfg: Any, run_dir: str | Path) -> Any:
    """The run's latency look-up table (made if absent, as the search would)."""
    from .stages.common import ensure_latency_table, resolve_device

    with _quiet_progress():
        return ensure_latency_table(cfg, run_dir, resolve_device(cfg.experiment.device), False)[0]


def reference_lines(table: Any) -> dict[str, float]:
    """Estimated latencies (ms) of the in-space reference paths, for histograms and tables."""
    from .reward import reference_latencies

    refs = reference_latencies(table)
    return {"MobileNetV2 path (every cell ir_k3_e6)": refs["mobilenetv2_ms"], "all modules": refs["all_modules_ms"],
            "cheapest path": refs["cheapest_ms"]}


def greedy_latencies(cfg: Any, run_dir: str | Path, variant: str = "C", split: str = "test") -> dict:
    """Per image of ``split``: the latency (table estimate, ms, controller included) of the
    greedy architecture that the search's controller of ``variant`` assigns, with labels and
    correctness (meta-graph as searched, not fine-tuned). For Figure 1."""
    import torch

    from .latency import thread_limit
    from .stages.common import build_split, infer, make_loader, resolve_device
    from .stages.evaluate import load_trained

    exp = cfg.experiment
    device = resolve_device(exp.device)
    table = load_run_table(cfg, run_dir)
    with thread_limit(exp.threads), torch.no_grad():
        graph, controller, what = load_trained(cfg, run_dir, device, "search", variant)
        data = build_split(exp, split, augment=False)
        loader = make_loader(data, cfg.evaluate.batch_size, False, 0, exp, device, train=False)
        res = infer(graph, loader, device, ("image", "label"), controller=controller, channels_last=exp.use_channels_last)
    latency = table.estimate(res["policy"].float()).numpy()
    flat = res["policy"].reshape(len(latency), -1)
    return {"latency_ms": latency, "label": res["label"].numpy(), "correct": (res["pred"] == res["label"]).numpy(),
            "model": what, "split": split, "distinct": int(torch.unique(flat, dim=0).shape[0])}


# ---- variants A-E: fine-tune (or re-train) and evaluate ------------------------------------------
BOOK_VARIANTS = {"smoke": ("C", "E")}  # the rest: all five


def book_variants(preset: str, variants: Sequence[str] = ()) -> list[str]:
    """``variants`` if given, else the preset's default (smoke: C and E; others: A-E)."""
    from .stages import VARIANT_NAMES

    chosen = list(variants) if variants else list(BOOK_VARIANTS.get(preset, VARIANT_NAMES))
    bad = [v for v in chosen if v not in VARIANT_NAMES]
    if bad:
        raise BookError(f"unknown variant(s) {bad}; variants are {', '.join(VARIANT_NAMES)}.")
    return chosen


def variant_config(cfg: Any, letter: str, overrides: Sequence[str] = ()) -> Any:
    """The fine-tuning and evaluation settings of variant ``letter``: ``RUN/finetune-<L>``,
    evaluated on the test split (``overrides`` apply to the finetune section)."""
    cfg = stage_config(cfg, "finetune", overrides)
    ft = dataclasses.replace(cfg.finetune, variant=letter, out_dir=f"finetune-{letter}")
    ev = dataclasses.replace(cfg.evaluate, source=f"finetune-{letter}", split="test")
    return dataclasses.replace(cfg, finetune=ft, evaluate=ev)


def ensure_evaluation(cfg: Any, run_dir: str | Path, folder: str) -> dict:
    """The evaluation of ``cfg.evaluate.source`` in ``RUN/<folder>`` (``evaluate.out_dir``; loaded
    when made with the same settings): the book keeps one folder per evaluated model."""
    from .rundir import load_json
    from .stages import format_evaluate_summary, run_evaluate

    run = Path(run_dir)
    dest = run / folder
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, out_dir=folder))
    model = run / cfg.evaluate.source / "last.pt"
    if (dest / "summary.json").is_file() and (dest / "config.json").is_file():
        stale = model.is_file() and model.stat().st_mtime_ns > (dest / "summary.json").stat().st_mtime_ns  # trained again since
        if not stale and not _config_diff(load_json(dest / "config.json"), cfg, _STAGE_SECTIONS["evaluate"]):
            summary = load_json(dest / "summary.json")
            print(f"loaded {dest}: {format_evaluate_summary(summary)}")
            return summary
    t0 = time.perf_counter()
    with _quiet_progress():
        summary = run_evaluate(cfg, run, overwrite=True, progress=False)
    print(f"{format_evaluate_summary(summary)} [{time.perf_counter() - t0:.1f} s] -> {dest}")
    return summary


def ensure_variant(cfg: Any, run_dir: str | Path, letter: str, overrides: Sequence[str] = ()) -> dict:
    """Variant ``letter``: fine-tuned (or re-trained, as the preset's ``finetune.mode`` says) in
    ``RUN/finetune-<L>`` and evaluated on the test split in ``RUN/evaluate-<L>``; the search is
    made first if missing. Returns ``{"variant", "finetune", "evaluate", "folder"}``."""
    ensure_search(cfg, run_dir)
    vcfg = variant_config(cfg, letter, overrides)
    ft = ensure_stage("finetune", vcfg, run_dir)
    ev = ensure_evaluation(vcfg, run_dir, f"evaluate-{letter}")
    return {"variant": letter, "finetune": ft, "evaluate": ev, "folder": str(Path(run_dir) / f"evaluate-{letter}")}


def variant_rows(results: Sequence[Mapping[str, Any]], reference_ms: float | None = None) -> list[dict]:
    """One row per evaluated variant: the search epoch it came from, how it was trained, test
    accuracy (%), latency estimated by the table (mean +- std, ms) and measured on a sample,
    distinct architectures; with ``reference_ms`` (the in-space MobileNetV2 path, estimated)
    the estimated latency reduction against it."""
    rows = []
    for r in results:
        ft, ev = r["finetune"], r["evaluate"]
        est, mea = ev["latency_estimate_ms"], ev["latency_measured_ms"]
        row = {
            "variant": r["variant"],
            "search_epoch": ft["picked"]["epoch"],
            "val_accuracy_at_search_pct": round(100 * ft["picked"].get("val_accuracy", float("nan")), 2),
            "training": f"{ft['mode']} {ft['epochs_done']} epochs ({ft['optimizer']}, lr {ft['lr']:g})",
            "test_images": ev["n"],
            "test_accuracy_pct": round(100 * ev["accuracy"], 2),
            "latency_estimated_ms": round(est["mean"], 4),
            "latency_estimated_std_ms": round(est["std"], 4),
            "latency_measured_ms": round(mea["mean"], 4) if mea["mean"] is not None else None,
            "measured_on_images": mea["samples"],
            "distinct_architectures": ev["distinct_policies"],
            "modules_per_image": round(ev["modules_per_sample"], 2),
        }
        if reference_ms:
            row["estimated_reduction_vs_mobilenetv2_path_pct"] = round(100 * (1 - est["mean"] / reference_ms), 1)
        rows.append(row)
    return rows


def variant_points(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Test accuracy (%) against estimated latency per variant, for the variants' scatter."""
    return [{"name": r["variant"], "group": "fine-tuned variants (test)", "latency_ms": r["evaluate"]["latency_estimate_ms"]["mean"],
             "latency_std_ms": r["evaluate"]["latency_estimate_ms"]["std"], "accuracy": 100 * r["evaluate"]["accuracy"]} for r in results]


# ---- per-sample records (Figures 7 and 8) -----------------------------------------------------
def load_records(folder: str | Path) -> dict:
    """An evaluation's per-image arrays (``records.npz``): index, label, prediction, correct,
    latency_ms (table), measured_latency_ms (NaN where not timed), policy (N, T, K), probs
    (N, T, K) and, on synthetic-difficulty, difficulty."""
    import numpy as np

    path = Path(folder) / "records.npz"
    if not path.is_file():
        raise BookError(f"{path} does not exist: evaluate a model into {folder} first.")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def split_images(cfg: Any, split: str, indices: Iterable[int]) -> list:
    """Images ``indices`` of the experiment's ``split`` (as the evaluate stage numbered them),
    each (H, W, 3) in [0, 1]."""
    from .plots import _dataset_image
    from .stages.common import build_split

    data = build_split(cfg.experiment, split, augment=False)
    return [_dataset_image(data, int(i)) for i in indices]


def class_names(cfg: Any) -> list[str]:
    from .stages.common import build_split

    data = build_split(cfg.experiment, "test", augment=False)
    names = getattr(data, "classes", None)
    return list(names) if names else [str(c) for c in range(cfg.experiment.info.num_classes)]


def figure7_data(cfg: Any, records: Mapping[str, Any], classes: int = 3, per_class: int = 8) -> dict:
    """Figure 7's rows: for each of the first ``classes`` classes (0: all), ``per_class`` test
    images spread evenly over the class's images sorted by the latency of their architecture
    (the cheapest and the costliest included), each with its latency relative to the mean of
    every test image of the class (0.12 = +12%). Keys ``images``, ``rel_latency``, ``class_names``."""
    import numpy as np

    labels, lat, idx = records["label"], records["latency_ms"].astype(float), records["index"]
    names = class_names(cfg)
    shown = range(len(names)) if classes <= 0 else range(min(classes, len(names)))
    images, rel, kept = [], [], []
    for c in shown:
        mine = np.flatnonzero(labels == c)
        if len(mine) == 0:
            continue
        order = mine[np.argsort(lat[mine], kind="stable")]
        pick = order[np.unique(np.linspace(0, len(order) - 1, min(per_class, len(order))).round().astype(int))]
        images.append(split_images(cfg, cfg.evaluate.split, idx[pick]))
        rel.append(lat[pick] / lat[mine].mean() - 1.0)
        kept.append(names[c])
    return {"images": images, "rel_latency": rel, "class_names": kept}


def figure7_rows(records: Mapping[str, Any], names: Sequence[str]) -> list[dict]:
    """Per class: test images, mean latency of their architectures, spread (max/min), accuracy."""
    import numpy as np

    rows = []
    for c, name in enumerate(names):
        sel = records["label"] == c
        if not sel.any():
            continue
        lat = records["latency_ms"][sel].astype(float)
        rows.append({"class": name, "images": int(sel.sum()), "mean_latency_ms": round(float(lat.mean()), 4),
                     "min_rel_pct": round(100 * (lat.min() / lat.mean() - 1), 1), "max_rel_pct": round(100 * (lat.max() / lat.mean() - 1), 1),
                     "distinct_architectures": int(len(np.unique(records["policy"][sel].reshape(int(sel.sum()), -1), axis=0))),
                     "accuracy_pct": round(100 * float(records["correct"][sel].mean()), 1)})
    return rows


def figure8_boxes(records: Mapping[str, Any], n_boxes: int = 3, seed: int = 0, min_images: int = 2) -> dict:
    """Figure 8's boxes: ``n_boxes`` architectures drawn at random (seeded, as the paper
    "randomly select[s] three architectures") among those the controller assigns to at least
    ``min_images`` test images (fewer if there are not enough; the most used fill in), each
    with the indices (rows of ``records``) of its images. Keys ``indices``, ``labels``."""
    import numpy as np

    flat = records["policy"].reshape(len(records["policy"]), -1)
    uniq, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    eligible = np.flatnonzero(counts >= min_images)
    rng = np.random.default_rng(seed)
    chosen = list(rng.choice(eligible, size=min(n_boxes, len(eligible)), replace=False)) if len(eligible) else []
    for a in np.argsort(-counts, kind="stable"):  # too few shared architectures: the most used fill in
        if len(chosen) >= min(n_boxes, len(uniq)):
            break
        if a not in chosen:
            chosen.append(a)
    lat = records["latency_ms"].astype(float)
    chosen = sorted(chosen, key=lambda a: float(lat[inverse == a][0]))  # by latency, cheapest first
    indices = [np.flatnonzero(inverse == a) for a in chosen]
    labels = [f"architecture {i + 1}: {lat[ix[0]]:.2f} ms, {int(flat[ix[0]].sum())} modules" for i, ix in enumerate(indices)]
    return {"indices": indices, "labels": labels}


def architecture_rows(records: Mapping[str, Any], boxes: Mapping[str, Any], names: Sequence[str]) -> list[dict]:
    """Per boxed architecture: latency, modules, images and the classes among them."""
    import numpy as np

    rows = []
    for label, ix in zip(boxes["labels"], boxes["indices"]):
        cls, counts = np.unique(records["label"][ix], return_counts=True)
        rows.append({"architecture": label.split(":")[0], "latency_ms": round(float(records["latency_ms"][ix[0]]), 4),
                     "modules": int(records["policy"][ix[0]].sum()), "images": len(ix),
                     "classes": ", ".join(f"{names[c]} ({n})" for c, n in zip(cls, counts)),
                     "accuracy_pct": round(100 * float(records["correct"][ix].mean()), 1)})
    return rows


# ---- synthetic-difficulty (§4.3's claim against a known difficulty) ---------------------------
# Images per split of the synthetic sub-run, and settings that keep it short; the rest follows
# the preset (width, stage strides, reward schedule).
# At the cpu presets: 2,000 images per split (1,000 leave the meta-graph at chance after 8 epochs;
# 2,000 reach about 35% validation accuracy after 4), 4 pre-training and 3 search epochs: about
# 7 minutes on the 2-core build machine. A check of the pipeline more than of the claim.
DIFFICULTY_RUNS = {
    "smoke": {"size": 100, "overrides": ()},
    "cpu": {"size": 2000, "overrides": ("pretrain.epochs=4", "search.epochs=3")},
    "cifar10-cpu": {"size": 2000, "overrides": ("pretrain.epochs=4", "search.epochs=3")},
}
DIFFICULTY_DEFAULT = {"size": 5000, "overrides": ()}


def difficulty_config(cfg: Any, dataset: str = "synthetic-difficulty", size: int = 0) -> Any:
    """The preset's settings on ``dataset`` (a data set with difficulty levels) with ``size``
    images per split (0: the preset's default, see :data:`DIFFICULTY_RUNS`), no class subsets;
    evaluated through the search's controller of the preset's variant on the test split."""
    from .config import ConfigError

    if dataset != "synthetic-difficulty":  # the evaluate stage reads levels from this data set only
        raise BookError(f"{dataset!r} has no difficulty levels; the difficulty check needs 'synthetic-difficulty'.")
    spec = DIFFICULTY_RUNS.get(cfg.preset, DIFFICULTY_DEFAULT)
    try:
        exp = dataclasses.replace(cfg.experiment, dataset=dataset, data_size=int(size or spec["size"]), train_per_class=None, eval_per_class=None)
    except ConfigError as exc:
        raise BookError(f"cannot run the difficulty check on {dataset!r}: {exc}") from None
    out = stage_config(dataclasses.replace(cfg, experiment=exp), "search", spec["overrides"])
    return dataclasses.replace(out, evaluate=dataclasses.replace(out.evaluate, source="search", split="test"))


def ensure_difficulty_run(cfg: Any, run_dir: str | Path, dataset: str = "synthetic-difficulty", size: int = 0) -> dict:
    """A small InstaNAS run on ``dataset`` in ``RUN/synthetic/`` (``RUN/difficulty-<dataset>-<size>/``
    for other settings): pre-train, search, evaluate the search's controller on the test split;
    the run's look-up table is reused when the space is the same. Returns ``{"config",
    "run_dir", "summary", "folder"}``."""
    import shutil

    dcfg = difficulty_config(cfg, dataset, size)
    default = dataset == "synthetic-difficulty" and size in (0, DIFFICULTY_RUNS.get(cfg.preset, DIFFICULTY_DEFAULT)["size"])
    sub = Path(run_dir) / ("synthetic" if default else f"difficulty-{dataset}-{dcfg.experiment.data_size}")
    lut, mine = Path(run_dir) / "profile" / "lut.json", sub / "profile" / "lut.json"
    if lut.is_file() and not mine.exists():
        from .latency import LatencyTable, LatencyTableError

        try:
            LatencyTable.load(lut).check_compatible(dcfg.experiment.space(), dcfg.experiment.device)
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lut, mine)
            print(f"reusing the run's look-up table {lut} (same search space)")
        except LatencyTableError:
            pass
    ensure_stage("pretrain", dcfg, sub)
    ensure_stage("search", dcfg, sub)
    summary = ensure_evaluation(dcfg, sub, "evaluate")
    return {"config": dcfg, "run_dir": str(sub), "summary": summary, "folder": str(sub / "evaluate")}


def difficulty_rows(records: Mapping[str, Any]) -> list[dict]:
    """Per difficulty level: images, mean and std of the assigned latency (ms), accuracy (%)."""
    import numpy as np

    rows = []
    for level in np.unique(records["difficulty"]):
        sel = records["difficulty"] == level
        lat = records["latency_ms"][sel].astype(float)
        rows.append({"difficulty": int(level), "images": int(sel.sum()), "mean_latency_ms": round(float(lat.mean()), 4),
                     "std_latency_ms": round(float(lat.std()), 4), "accuracy_pct": round(100 * float(records["correct"][sel].mean()), 1)})
    return rows


# ---- baselines (Tables 1-3) and comparators (Figure 6) ----------------------------------------
_MOBILENETS = ("mobilenetv2-0.4", "mobilenetv2-1.0", "mobilenetv2-1.4")
_SHUFFLENETS = ("shufflenetv2-0.5", "shufflenetv2-1.0", "shufflenetv2-1.5", "shufflenetv2-2.0")
BOOK_BASELINES = {
    "smoke": ("mobilenetv2-1.0", "shufflenetv2-1.0"),
    # every width of Tables 1-2: about 15 minutes on the 2-core build machine (MobileNetV2 1.4 alone
    # 5); the in-space MobileNetV2 path adds about 3 (models=[..., "meta-mobilenetv2-path"]).
    "cpu": _MOBILENETS + _SHUFFLENETS,
    "cifar10-cpu": _MOBILENETS + _SHUFFLENETS,
}
BOOK_COMPARATORS = ("oneshot", "blockdrop", "convnet-aig")


def book_baselines(preset: str, models: Sequence[str] = ()) -> list[str]:
    """``models`` if given, else the preset's default: smoke MobileNetV2 1.0 and ShuffleNetV2
    1.0; the CPU presets every MobileNetV2 and ShuffleNetV2 width of Tables 1-2; a paper preset
    the baselines its table lists, plus the in-space MobileNetV2 path."""
    from .baselines import BASELINE_NAMES
    from .paper_numbers import load_paper_numbers

    if models:
        chosen = list(models)
    elif preset in BOOK_BASELINES:
        chosen = list(BOOK_BASELINES[preset])
    else:
        paper = paper_table_for(book_preset(preset).experiment.dataset)["paper_dataset"]
        chosen = list(dict.fromkeys([r.our_name for r in load_paper_numbers(paper) if r.our_name] + ["meta-mobilenetv2-path"]))
    bad = [m for m in chosen if m not in BASELINE_NAMES]
    if bad:
        raise BookError(f"unknown baseline(s) {bad}; baselines: {', '.join(BASELINE_NAMES)}.")
    return chosen


def ensure_baseline(
    cfg: Any, run_dir: str | Path, name: str, overrides: Sequence[str] = (), folder_name: str | None = None
) -> dict:
    """Baseline ``name`` trained, tested and timed in ``RUN/baselines/<folder_name or name>``
    (its row in ``RUN/results.csv``); a finished one is loaded (``run_baseline`` with ``resume``)."""
    from .stages import format_baseline_summary, run_baseline

    cfg = stage_config(cfg, "baseline", overrides)
    existed = (Path(run_dir) / "baselines" / (folder_name or name) / "summary.json").is_file()
    t0 = time.perf_counter()
    with _quiet_progress():
        summary = run_baseline(cfg, run_dir, name, False, resume=True, folder_name=folder_name)
    took = f"[{time.perf_counter() - t0:.1f} s]" if not (existed and summary.get("result_appended")) else "(loaded)"
    print(f"{format_baseline_summary(summary)} {took}")
    return summary


def baseline_rows(summaries: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One row per baseline: test accuracy (%), measured latency (ms), parameters, MACs, budget."""
    rows = []
    for s in summaries:
        lat = s.get("latency_ms") or {}
        rows.append({
            "model": s["model"], "family": s["family"], "width": s["width"],
            "training": f"{s['epochs_done']}/{s['epochs']} epochs ({s['optimizer']}, lr {s['lr']:g})",
            "test_accuracy_pct": round(s.get("accuracy_pct", float("nan")), 2),
            "latency_measured_ms": round(lat.get("mean_ms", float("nan")), 4),
            "latency_std_ms": round(lat.get("std_ms", float("nan")), 4),
            "params_M": round(s.get("params", 0) / 1e6, 3), "MACs_M": round(s.get("macs", 0) / 1e6, 2),
        })
    return rows


def ensure_comparator(cfg: Any, run_dir: str | Path, name: str, overrides: Sequence[str] = ()) -> dict:
    """Comparator ``name`` of Figure 6 (``oneshot``, ``blockdrop``, ``convnet-aig``) in
    ``RUN/comparators/<name>``, from the run's pre-trained meta-graph (made if missing)."""
    from .stages import format_comparator_summary, run_comparator

    ensure_stage("pretrain", cfg, run_dir, check_config=False)
    cfg = stage_config(cfg, "comparator", overrides)
    t0 = time.perf_counter()
    with _quiet_progress():
        summary = run_comparator(cfg, run_dir, name, False, resume=True)
    print(f"{format_comparator_summary(summary)}\n[{time.perf_counter() - t0:.1f} s in this notebook]")
    return summary


def load_oneshot_samples(run_dir: str | Path) -> dict:
    """OneshotNAS's sampled architectures (``RUN/comparators/oneshot/samples.npz``): shared-weight
    validation accuracy (%) and table latency without a controller (ms), and which lie on the front."""
    import numpy as np

    folder = Path(run_dir) / "comparators" / "oneshot"
    if not (folder / "samples.npz").is_file():
        raise BookError(f"{folder / 'samples.npz'} does not exist: run the oneshot comparator first (notebook 07).")
    with np.load(folder / "samples.npz") as z:
        acc, lat, index = z["accuracy_pct"].astype(float), z["table_latency_ms"].astype(float), z["index"]
    with (folder / "frontier.csv").open(newline="") as f:
        front = {int(r["index"]) for r in csv.DictReader(f)}
    return {"accuracy_pct": acc, "latency_ms": lat, "index": index, "on_front": np.isin(index, sorted(front))}


# ---- the results registry: Tables 1-3 and Figures 5-6 ----------------------------------------
# The paper's table a data set is compared against, and whether it is the same data.
_PAPER_TABLES = {"cifar10": "cifar10", "cifar100": "cifar100", "tinyimagenet": "tinyimagenet"}


def paper_table_for(dataset: str) -> dict:
    """The paper's table for ``dataset``: Table 1 (CIFAR-10), 2 (CIFAR-100) or 3 (TinyImageNet);
    the CPU data sets (digits, CIFAR-10 as JPEG, synthetic shapes) are set beside Table 1 and
    labelled as *not the same data*; ImageNet has no table (Figure 5 only)."""
    from .data import dataset_info
    from .paper_numbers import load_paper_numbers

    paper = _PAPER_TABLES.get(dataset, None if dataset == "imagenet" else "cifar10")
    rows = load_paper_numbers(paper) if paper else []
    source = rows[0].source if rows else None
    same = paper == dataset
    title = dataset_info(dataset).title
    if not rows:
        heading = f"{title}: the paper has no table (ImageNet appears in Figure 5 only)"
    elif same:
        heading = f"{source} ({dataset_info(paper).title}): the paper's rows beside this run's"
    else:
        heading = (f"{source} ({dataset_info(paper).title}) beside this run on {title}: NOT the same data -- "
                   "compare ratios (latency reductions, ranking), not absolute numbers")
    slug = source.lower().replace(" ", "") if source else "no_table"
    return {"paper_dataset": paper, "source": source, "slug": slug, "same_data": same, "heading": heading, "rows": rows}


def latest_results(run_dir: str | Path, dataset: str | None = None) -> list[Any]:
    """Rows of ``RUN/results.csv`` (of ``dataset`` if given), the last one of each (name,
    latency kind): a model evaluated again replaces its earlier row."""
    from .results import read_results

    latest: dict[tuple, Any] = {}
    for r in read_results(run_dir):
        if dataset is None or r.dataset == dataset:
            latest.pop((r.name, r.latency_kind), None)
            latest[(r.name, r.latency_kind)] = r
    return list(latest.values())


def result_family(name: str) -> str:
    """The family a results row belongs to, as Tables 1-3 and Figures 5-6 group them."""
    for prefix, family in (("InstaNAS", "InstaNAS"), ("mobilenetv2", "MobileNetV2"), ("shufflenetv2", "ShuffleNetV2"),
                           ("resnet", "ResNet"), ("meta-mobilenetv2-path", "MobileNetV2 path (in-space)"),
                           ("OneshotNAS", "OneshotNAS (re-trained front)"), ("BlockDrop", "BlockDrop"), ("ConvNet-AIG", "ConvNet-AIG")):
        if name.startswith(prefix):
            return family
    return "other"


def _short_name(name: str) -> str:
    for prefix in ("InstaNAS-", "mobilenetv2-", "shufflenetv2-", "OneshotNAS-"):
        if name.startswith(prefix):
            return name[len(prefix):] or name
    return name


def comparison_rows(results: Sequence[Any], dataset: str, path_estimate_ms: float | None = None) -> list[dict]:
    """Tables 1-3: the paper's rows (its table for ``dataset``, latency in its own unit) and this
    run's InstaNAS and baseline rows (ms), each with its latency reduction against MobileNetV2
    1.0 of the same source and latency kind (paper: its MobileNet v2 1.0x row; this run: the
    measured ``mobilenetv2-1.0`` row, or for estimated InstaNAS rows the in-space MobileNetV2
    path's table estimate ``path_estimate_ms``)."""
    from .data import dataset_info
    from .paper_numbers import PAPER_CPU

    info = paper_table_for(dataset)
    rows = []
    ref = next((r.latency_mean for r in info["rows"] if r.our_name == "mobilenetv2-1.0"), None)
    for r in info["rows"]:
        red = round(100 * (1 - r.latency_mean / ref), 1) if ref and r.latency_mean is not None else None
        rows.append({"source": f"paper, {r.source}", "model": r.model, "group": r.group, "error_pct": r.error_pct,
                     "latency": r.latency_mean, "latency_std": r.latency_std, "latency_unit": "paper's (s?)",
                     "latency_kind": f"measured, {PAPER_CPU}", "reduction_pct": red,
                     "reduction_against": "MobileNet v2 1.0x (paper)" if red is not None else None, "params_M": None, "MACs_M": None})
    ours = [r for r in results if result_family(r.name) not in ("OneshotNAS (re-trained front)", "BlockDrop", "ConvNet-AIG", "other")]
    measured_ref = next((r.latency_mean_ms for r in ours if r.name == "mobilenetv2-1.0" and r.latency_kind == "measured"), None)
    title = dataset_info(dataset).title
    for r in sorted(ours, key=lambda r: (result_family(r.name) == "InstaNAS", r.name, r.latency_kind or "")):
        if r.latency_kind == "measured" and measured_ref:
            red, against = round(100 * (1 - r.latency_mean_ms / measured_ref), 1), "mobilenetv2-1.0 (measured, this run)"
        elif r.latency_kind == "estimated" and path_estimate_ms:
            red, against = round(100 * (1 - r.latency_mean_ms / path_estimate_ms), 1), "in-space MobileNetV2 path (table)"
        else:
            red, against = None, None
        rows.append({"source": f"this run, {title}", "model": r.name, "group": result_family(r.name),
                     "error_pct": round(r.error_pct, 2) if r.error_pct is not None else None,
                     "latency": round(r.latency_mean_ms, 4) if r.latency_mean_ms is not None else None,
                     "latency_std": round(r.latency_std_ms, 4) if r.latency_std_ms is not None else None,
                     "latency_unit": "ms", "latency_kind": r.latency_kind, "reduction_pct": red, "reduction_against": against,
                     "params_M": round(r.params / 1e6, 3) if r.params else None, "MACs_M": round(r.flops / 1e6, 2) if r.flops else None})
    return rows


def reduction_rows(results: Sequence[Any], dataset: str, path_estimate_ms: float | None = None) -> list[dict]:
    """Per InstaNAS variant: the paper's error and latency reduction against MobileNetV2 1.0
    (its variant of the same letter) beside this run's (measured against the measured
    mobilenetv2-1.0; estimated against the in-space MobileNetV2 path), and the error difference
    to MobileNetV2 1.0 in both (negative: InstaNAS is more accurate)."""
    info = paper_table_for(dataset)
    paper = {r.model[-1]: r for r in info["rows"] if r.group == "InstaNAS"}
    p_ref = next((r for r in info["rows"] if r.our_name == "mobilenetv2-1.0"), None)
    by = {(r.name, r.latency_kind): r for r in results}
    m_ref = by.get(("mobilenetv2-1.0", "measured"))
    letters = sorted({_short_name(r.name) for r in results if result_family(r.name) == "InstaNAS"})
    rows = []
    for v in letters:
        est, mea, p = by.get((f"InstaNAS-{v}", "estimated")), by.get((f"InstaNAS-{v}", "measured")), paper.get(v)
        row = {"variant": v, "paper_model": p.model if p else None,
               "paper_error_pct": p.error_pct if p else None,
               "paper_error_minus_mobilenetv2_pct": round(p.error_pct - p_ref.error_pct, 2) if p and p_ref else None,
               "paper_reduction_pct": round(100 * (1 - p.latency_mean / p_ref.latency_mean), 1) if p and p_ref else None}
        mine = est or mea
        row["our_error_pct"] = round(mine.error_pct, 2) if mine else None
        row["our_error_minus_mobilenetv2_pct"] = round(mine.error_pct - m_ref.error_pct, 2) if mine and m_ref else None
        row["our_reduction_measured_pct"] = round(100 * (1 - mea.latency_mean_ms / m_ref.latency_mean_ms), 1) if mea and m_ref else None
        row["our_reduction_estimated_vs_path_pct"] = (
            round(100 * (1 - est.latency_mean_ms / path_estimate_ms), 1) if est and path_estimate_ms else None)
        rows.append(row)
    return rows


def tradeoff_methods(results: Sequence[Any], families: Sequence[str], latency_kind: str = "measured") -> dict:
    """Figures 5-6: per family (see :func:`result_family`), the latency (ms), error (%) and
    short names of its rows of ``latency_kind``; families without such rows are left out."""
    import numpy as np

    out = {}
    for fam in families:
        rows = sorted((r for r in results if result_family(r.name) == fam and r.latency_kind == latency_kind
                       and r.latency_mean_ms is not None and r.error_pct is not None), key=lambda r: r.latency_mean_ms)
        if rows:
            out[fam] = {"latency": np.array([r.latency_mean_ms for r in rows]), "error": np.array([r.error_pct for r in rows]),
                        "names": [_short_name(r.name) for r in rows]}
    return out


def tradeoff_rows(methods: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """The points of a trade-off figure as rows, marking each method's Pareto front."""
    from .plots import pareto_frontier

    rows = []
    for fam, d in methods.items():
        front = set(pareto_frontier(d["latency"], d["error"]).tolist())
        for i, name in enumerate(d["names"]):
            rows.append({"method": fam, "model": name, "latency_ms": round(float(d["latency"][i]), 4),
                         "error_pct": round(float(d["error"][i]), 2), "on_method_front": i in front})
    return rows
