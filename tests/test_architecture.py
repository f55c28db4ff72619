"""The package's layers (docs/architecture.md): dependencies run one way, model -> cost ->
configuration -> training -> stages -> book/cli/bench, and no file grows past 700 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "instanas_core"

# Lowest first; a module may import from its own layer and the layers before it. The names are
# top-level modules or sub-packages of instanas_core.
LAYERS = [
    ("foundation", {"validation", "ownership", "env", "search_space", "pareto", "paper_numbers", "data"}),
    ("model", {"modules", "policy", "meta_graph", "controller", "routing"}),
    ("cost", {"flops", "latency", "reward"}),
    ("configuration", {"config", "config_io", "presets", "profile", "rundir", "results", "distributed"}),
    ("training", {"train", "baselines"}),
    ("stages", {"stages", "pipeline", "weights"}),
    ("front ends", {"plots", "book", "bench", "bench_awareness", "export", "cli", "__main__", "__init__"}),
]
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}
MAX_LINES = 700


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else "__init__"


def _imports(path: Path) -> set[str]:
    """The top-level instanas_core modules that ``path`` imports (relative or absolute)."""
    rel = path.relative_to(PACKAGE)
    package = list(rel.parts[:-1])  # the package the file belongs to, relative to instanas_core
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            parts = base + (node.module.split(".") if node.module else [])
            if parts:
                found.add(parts[0])
            else:  # "from . import x" at the top of the package
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("instanas_core."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("instanas_core."))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    me = _top(path)
    assert me in LAYER_OF, f"{me} is in no layer of {__file__}; add it where it belongs"
    upward = sorted(d for d in _imports(path) - {me} if LAYER_OF.get(d, -1) > LAYER_OF[me])
    assert not upward, f"{path.relative_to(PACKAGE)} ({LAYERS[LAYER_OF[me]][0]}) imports {upward} from a higher layer"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_stay_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by concept"


def test_bench_uses_the_stages_never_the_book():
    """Benchmarks are measurements of the package, not of the notebooks that present it."""
    bench = [PACKAGE / "bench.py", PACKAGE / "bench_awareness.py"] + sorted((PACKAGE / "bench").rglob("*.py"))
    for path in (p for p in bench if p.exists()):
        assert "book" not in _imports(path), f"{path.relative_to(PACKAGE)} imports the book"
