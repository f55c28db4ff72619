"""The book's notebooks and their parameters: ``notebooks/NN_name.py`` (jupytext percent format),
each with one cell tagged ``parameters`` of ``name = literal  # help`` lines, which papermill
replaces. Parameters are checked by name and type before anything runs (:func:`check_parameters`)
and, inside a notebook that papermill started directly, against what it injected
(:func:`check_namespace`)."""

from __future__ import annotations

import ast
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import BookError

__all__ = [
    "DEFAULT_NOTEBOOKS_DIR",
    "REQUIRED_PARAMETERS",
    "NotebookParameter",
    "NotebookSpec",
    "read_notebook",
    "notebook_parameters",
    "discover_notebooks",
    "select_notebooks",
    "check_parameters",
    "injected_parameters",
    "check_namespace",
]

DEFAULT_NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.py$")
REQUIRED_PARAMETERS = ("preset", "run_dir")


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


def read_notebook(path: Path) -> Any:
    """A jupytext notebook, refused unless it stores the kernel name ``python3`` (see :mod:`.kernel`)."""
    import jupytext

    nb = jupytext.read(path)
    ks = nb.metadata.get("kernelspec", {})
    if ks.get("name") != "python3":
        raise BookError(
            f"Notebook {path.name} must store the kernel name 'python3' in its header, found {ks.get('name')!r}."
        )
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
            raise BookError(
                f"the parameters cell of {label} may hold only `name = literal` lines; line {stmt.lineno} is not one."
            )
        try:
            default = ast.literal_eval(stmt.value)
        except ValueError:
            raise BookError(
                f"parameter {stmt.targets[0].id!r} of {label} has a non-literal default (line {stmt.lineno})."
            ) from None
        line = lines[stmt.end_lineno - 1]
        if stmt.lineno == stmt.end_lineno and line.count("=") > 1:  # papermill's own parser would skip the line
            raise BookError(
                f"line {stmt.lineno} of the parameters cell of {label} holds more than one '=' (in a default or its "
                "comment); papermill cannot parse such a line: reword it."
            )
        help_text = line.split("#", 1)[1].strip() if "#" in line[stmt.end_col_offset :] else ""
        params[stmt.targets[0].id] = NotebookParameter(stmt.targets[0].id, default, help_text)
    for name in REQUIRED_PARAMETERS:
        if name not in params or not isinstance(params[name].default, str):
            raise BookError(
                f"{label} must declare the parameter {name!r} with a string default in its parameters cell."
            )
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
        nb = read_notebook(path)
        specs.append(
            NotebookSpec(
                m.group(1),
                path.stem,
                path,
                notebook_parameters(nb, path.name),
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        )
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys):
        raise BookError(f"Two notebooks in {folder} share a number: {', '.join(sorted(keys))}.")
    if not specs:
        raise BookError(f"No numbered notebooks (NN_name.py) in {folder}.")
    return specs


def select_notebooks(
    specs: list[NotebookSpec], only: Iterable[str | int] | None, start_from: str | int | None
) -> list[NotebookSpec]:
    """The notebooks of ``specs`` that ``only`` (numbers or names) and ``start_from`` select, in order."""

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
            f"{s.name}: "
            + ", ".join(
                f"{p.name} ({p.type_name}, default {p.default!r})"
                for p in s.parameters.values()
                if p.name not in REQUIRED_PARAMETERS
            )
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
    names = [
        t.id for stmt in tree.body if isinstance(stmt, ast.Assign) for t in stmt.targets if isinstance(t, ast.Name)
    ]
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
