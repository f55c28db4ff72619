"""The notebook book: notebooks 00 and 01 run at the smoke preset through papermill and leave their
figures, tables and manifest; the runner refuses unknown or wrongly typed parameters before
anything runs, skips what is complete, names the failing notebook and cell; the kernel is this
interpreter; and the notebooks, converted to .ipynb, pass nbval."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

from instanas_core import book
from instanas_core.book import MANIFEST_FILE, BookError, run_book

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT = 600
FIGURES = {
    "00_overview_and_data": ["00_sample_grid", "00_augmented_grid", "00_class_balance"],
    "01_latency_profiling": ["01_lut_heatmap", "01_figure4_latency_correlation"],
}
TABLES = {"00_overview_and_data": ["00_dataset_splits"], "01_latency_profiling": ["01_lut_ms", "01_figure4_correlation"]}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("book") / "run"
    manifest = run_book("smoke", run, only=["00", "01"], progress=False, timeout=CELL_TIMEOUT)
    return run, manifest


def test_notebooks_00_and_01_run_at_smoke(smoke_run):
    run, manifest = smoke_run
    assert manifest == json.loads((run / MANIFEST_FILE).read_text())
    assert manifest["preset"] == "smoke" and manifest["kernel"]["python"] == sys.executable
    for name, figures in FIGURES.items():
        entry = manifest["notebooks"][name]
        assert entry["status"] == "complete" and entry["last_action"] == "executed", entry
        assert entry["output"] == str(run / "notebooks" / f"{name}.ipynb") and Path(entry["output"]).is_file()
        assert entry["parameters"] == {"preset": "smoke", "run_dir": str(run)}
        assert entry["seconds"] > 0 and entry["finished"] >= entry["started"]
        for fig in figures:
            png = run / "figures" / f"{fig}.png"
            assert png.stat().st_size > 5_000 and (run / "figures" / f"{fig}.pdf").is_file()
            assert f"figures/{fig}.png" in entry["figures"]
        for table in TABLES[name]:
            assert (run / "tables" / f"{table}.csv").is_file() and f"tables/{table}.csv" in entry["tables"]
    # the run's table (what the search stage reads) and its Figure 4 check on fresh children
    for artifact in ("lut.json", "summary.json", "check/correlation.csv", "check/summary.json"):
        assert (run / "profile" / artifact).is_file()
    check = json.loads((run / "profile" / "check" / "summary.json").read_text())
    assert check["eval"]["n"] == book.check_children("smoke") == 8


def test_kernel_is_this_interpreter(smoke_run):
    run, _ = smoke_run
    nb = nbformat.read(run / "notebooks" / "00_overview_and_data.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"python       {sys.executable} " in printed
    assert "backend agg" in printed  # MPLBACKEND reached the kernel
    assert nb.metadata.kernelspec.name == "python3"


def test_rerun_skips_complete_notebooks(smoke_run):
    run, first = smoke_run
    mtimes = {p.name: p.stat().st_mtime_ns for p in (run / "notebooks").iterdir()}
    t0 = time.perf_counter()
    again = run_book("smoke", run, only=["00", "01"], progress=False, timeout=CELL_TIMEOUT)
    assert time.perf_counter() - t0 < 20  # no kernel started
    for name in FIGURES:
        assert again["notebooks"][name]["last_action"] == "skipped"
        assert again["notebooks"][name]["started"] == first["notebooks"][name]["started"]
    assert {p.name: p.stat().st_mtime_ns for p in (run / "notebooks").iterdir()} == mtimes


def test_bad_parameters_are_refused_before_anything_runs(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(BookError, match=r"Unknown notebook parameter\(s\) 'n_per_clas'.*n_per_class \(int, default 8\)"):
        run_book("smoke", run, parameters={"n_per_clas": 4}, progress=False)
    with pytest.raises(BookError, match=r"'n_per_class' of notebook 00_overview_and_data expects a value of type int.*'4' of type str"):
        run_book("smoke", run, parameters={"n_per_class": "4"}, progress=False)
    with pytest.raises(BookError, match=r"expects a value of type list"):
        run_book("smoke", run, parameters={"extra_resolutions": 64}, progress=False)
    with pytest.raises(BookError, match=r"'children' of notebook 01_latency_profiling expects a value of type int"):
        run_book("smoke", run, parameters={"children": 10.0}, progress=False)
    with pytest.raises(BookError, match="declares it|declares them"):  # declared only by 00, which is not selected
        run_book("smoke", run, only=["01"], parameters={"n_per_class": 4}, progress=False)
    with pytest.raises(BookError, match="as the book's own argument"):
        run_book("smoke", run, parameters={"preset": "cpu"}, progress=False)
    with pytest.raises(BookError, match="Unknown preset 'tiny'.*smoke"):
        run_book("tiny", run, progress=False)
    with pytest.raises(BookError, match="No notebook '42'"):
        run_book("smoke", run, only=["42"], progress=False)
    assert not run.exists(), "a refused book must not create its run folder"


def test_parameter_types_are_coerced_like_their_defaults():
    specs = book.discover_notebooks(NOTEBOOKS)
    out = book.check_parameters(specs, {"extra_resolutions": (64,), "seed": 3})
    assert out["01"] == {"extra_resolutions": [64], "seed": 3} and out["00"] == {"seed": 3}
    with pytest.raises(BookError, match="type int"):
        book.check_parameters(specs, {"seed": True})  # a bool is not an int here
    with pytest.raises(BookError, match="type int"):
        book.check_parameters(specs, {"seed": 1.5})


def test_selection_by_number_name_and_start():
    specs = book.discover_notebooks(NOTEBOOKS)
    keys = [s.key for s in specs]
    assert [s.key for s in book._select(specs, ["01"], None)] == ["01"]
    assert [s.key for s in book._select(specs, [0, "01_latency_profiling"], None)] == ["00", "01"]
    assert [s.key for s in book._select(specs, None, "01")] == [k for k in keys if k >= "01"]
    with pytest.raises(BookError, match="leaves no notebook"):
        book._select(specs, ["00"], "01")


def test_command_line_arguments():
    import argparse

    parser = argparse.ArgumentParser()
    book.add_book_arguments(parser)
    args = parser.parse_args(["--preset", "cpu", "--only", "00", "01", "--param", "children=50", "--param", "extra_resolutions=[64]"])
    assert args.preset == "cpu" and args.only == ["00", "01"] and not args.force
    assert book.parse_param_assignments(args.param) == {"children": 50, "extra_resolutions": [64]}


def test_param_assignments_from_the_command_line():
    assert book.parse_param_assignments(["n=5", "r=[64, 224]", "name=abc", "x=0.5", "f=True"]) == {
        "n": 5, "r": [64, 224], "name": "abc", "x": 0.5, "f": True
    }
    with pytest.raises(BookError, match="NAME=VALUE"):
        book.parse_param_assignments(["oops"])


def test_run_folder_of_another_preset_is_refused(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"preset": "cpu", "notebooks": {}}))
    with pytest.raises(BookError, match="preset 'cpu'.*another run_dir"):
        run_book("smoke", tmp_path, only=["00"], progress=False)


def test_kernel_resolves_to_this_interpreter_even_with_a_foreign_spec(tmp_path, monkeypatch):
    kernel = book.resolve_kernel("python3")
    assert kernel["python"] == sys.executable and kernel["jupyter_path"] is None
    foreign = tmp_path / "jp" / "kernels" / "python3"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "x", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))
    kernel = book.resolve_kernel("python3")
    assert kernel["argv"][0] == sys.executable and kernel["jupyter_path"]
    from jupyter_client.kernelspec import KernelSpecManager

    with book._kernel_environment(tmp_path, kernel):
        assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    assert os.environ["JUPYTER_PATH"] == str(tmp_path / "jp")


# ---- a tiny book for failure and resume -------------------------------------------------------------
HEADER = """\
# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---
"""


def tiny_book(folder: Path) -> Path:
    folder.mkdir()
    (folder / "00_ok.py").write_text(HEADER + textwrap.dedent('''
        # %% tags=["parameters"]
        preset = "smoke"
        run_dir = "runs/tiny"
        n = 1  # a count
        ratio = 0.5

        # %%
        from pathlib import Path
        (Path(run_dir) / "figures").mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "figures" / "00_ok.png").write_bytes(b"png" * n)
        '''))
    (folder / "01_fails.py").write_text(HEADER + textwrap.dedent('''
        # %% [markdown]
        # A notebook that fails when asked to.

        # %% tags=["parameters"]
        preset = "smoke"
        run_dir = "runs/tiny"
        fail = True

        # %%
        x = 1

        # %%
        if fail:
            raise ValueError("boom")
        '''))
    (folder / "README.md").write_text("not a notebook")
    return folder


def test_failure_names_notebook_and_cell_and_resume(tmp_path):
    notebooks, run = tiny_book(tmp_path / "nb"), tmp_path / "run"
    with pytest.raises(BookError) as err:
        run_book("smoke", run, notebooks_dir=notebooks, parameters={"n": 2}, progress=False, timeout=CELL_TIMEOUT)
    msg = str(err.value)
    assert "01_fails" in msg and "cell 3" in msg and "line 20 of 01_fails.py" in msg and "ValueError: boom" in msg, msg
    manifest = json.loads((run / MANIFEST_FILE).read_text())
    assert manifest["notebooks"]["00_ok"]["status"] == "complete"
    assert manifest["notebooks"]["00_ok"]["figures"] == ["figures/00_ok.png"]
    failed = manifest["notebooks"]["01_fails"]
    assert failed["status"] == "failed" and failed["error"]["ename"] == "ValueError" and failed["error"]["cell_index"] == 3
    assert (run / "figures" / "00_ok.png").read_bytes() == b"pngpng"  # earlier output kept
    assert Path(failed["output"]).is_file()  # the executed copy holds the traceback

    resumed = run_book("smoke", run, notebooks_dir=notebooks, parameters={"n": 2, "fail": False}, progress=False, timeout=CELL_TIMEOUT)
    assert resumed["notebooks"]["00_ok"]["last_action"] == "skipped"
    assert resumed["notebooks"]["01_fails"]["status"] == "complete"
    # a changed parameter runs the notebook again
    again = run_book("smoke", run, notebooks_dir=notebooks, only=["00"], parameters={"n": 3}, progress=False, timeout=CELL_TIMEOUT)
    assert again["notebooks"]["00_ok"]["last_action"] == "executed"
    assert (run / "figures" / "00_ok.png").read_bytes() == b"png" * 3


def test_parameters_cell_must_hold_literals(tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    (folder / "00_bad.py").write_text(HEADER + '\n# %% tags=["parameters"]\npreset = "smoke"\nrun_dir = "x"\nn = len("abc")\n')
    with pytest.raises(BookError, match="non-literal default"):
        book.discover_notebooks(folder)
    (folder / "00_bad.py").write_text(HEADER + '\n# %% tags=["parameters"]\nrun_dir = "x"\n')
    with pytest.raises(BookError, match="'preset'"):
        book.discover_notebooks(folder)


# ---- nbval on the converted notebooks ---------------------------------------------------------------
def test_notebooks_pass_nbval(smoke_run, tmp_path):
    """Every notebook, converted to .ipynb, runs under ``pytest --nbval-lax`` with its default
    parameters (the smoke preset). nbval starts each kernel in the notebook's folder, so the
    default ``run_dir = "runs/book-smoke"`` lands in tmp_path."""
    run, _ = smoke_run
    converted = []
    for py in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        converted.append(tmp_path / f"{py.stem}.ipynb")
        jupytext.write(jupytext.read(py), converted[-1])
    # 01 loads the smoke profile made above instead of timing every module again
    shutil.copytree(run / "profile", tmp_path / "runs" / "book-smoke" / "profile")
    env = dict(os.environ, MPLBACKEND="agg", PYTHONHASHSEED="0")
    env.setdefault("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "-q", *map(str, converted)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert (tmp_path / "runs" / "book-smoke" / "figures" / "00_sample_grid.png").is_file()
    assert (tmp_path / "runs" / "book-smoke" / "figures" / "01_figure4_latency_correlation.png").is_file()
