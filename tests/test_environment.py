"""The environment ``make env`` builds opens the book as the README says: JupyterLab and nbconvert
run, ``jupytext --sync`` leaves every tracked notebook as it is, and the book's kernels start over
local IPC without ipykernel's warning about unencrypted TCP."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from instanas_core.book.kernel import kernel_manager_class

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("tool", [["jupyter", "lab", "--version"], ["jupyter", "nbconvert", "--version"]])
def test_jupyter_front_ends_run(tool):
    done = subprocess.run([str(BIN / tool[0]), *tool[1:]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()[0].isdigit()  # a version number


def test_jupytext_sync_changes_no_tracked_notebook(tmp_path):
    """What a user who opens a notebook in Jupyter triggers: the pairing rewrites the .py only if
    its header, metadata or cells differ from jupytext's own rendering."""
    for f in ROOT.glob("notebooks/[0-9][0-9]_*.py"):
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    names = sorted(p.name for p in tmp_path.glob("*.py"))
    assert len(names) == 10
    done = subprocess.run(
        [str(BIN / "jupytext"), "--sync", *names], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    changed = [n for n in names if (tmp_path / n).read_bytes() != (ROOT / "notebooks" / n).read_bytes()]
    assert not changed, f"jupytext --sync rewrote {changed}"
    for n in names:  # and the first cell is the title, not an empty cell
        nb = nbformat.read(tmp_path / n.replace(".py", ".ipynb"), as_version=4)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_book_kernel_runs_over_ipc_without_the_tcp_warning(tmp_path, capfd):
    import papermill as pm

    manager = kernel_manager_class()
    assert manager().transport == "ipc"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(
        str(tmp_path / "in.ipynb"),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        progress_bar=False,
        kernel_manager_class=manager,
    )
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"] == "42\n"
    assert "without encryption" not in capfd.readouterr().err
