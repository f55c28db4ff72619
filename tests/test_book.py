"""The notebook book: every notebook (00-09) runs at the smoke preset through papermill, once, into
one run folder, and leaves its figures, tables, stage artifacts and manifest; the runner refuses
unknown or wrongly typed parameters before anything runs, skips what is complete, names the
failing notebook and cell; the kernel is this interpreter; and the notebooks, converted to .ipynb,
pass nbval on the same run folder, loading the stages instead of training them again."""

import csv
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
from instanas_core.book import MANIFEST_FILE, BookError, PipelineError, run_book
from instanas_core.book.kernel import kernel_environment, numba_cache_dir
from instanas_core.book.notebooks import select_notebooks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT = 600
BOOK = [
    "00_overview_and_data",
    "01_latency_profiling",
    "02_pretrain",
    "03_search",
    "04_variants",
    "05_baselines",
    "06_tables",
    "07_tradeoff",
    "08_qualitative",
    "09_architectures",
]
FIGURES = {
    "00_overview_and_data": ["00_sample_grid", "00_augmented_grid", "00_class_balance"],
    "01_latency_profiling": ["01_lut_heatmap", "01_figure4_latency_correlation"],
    "02_pretrain": ["02_pretrain_curves", "02_droppath_schedule"],
    "03_search": [
        "03_reward_bounds",
        "03_accuracy_vs_latency",
        "03_reward",
        "03_distinct_architectures",
        "03_figure1_latency_distribution",
    ],
    "04_variants": ["04_variants_tradeoff"],
    "05_baselines": ["05_baselines_tradeoff"],
    "06_tables": [],
    "07_tradeoff": ["07_figure5_tradeoff", "07_figure6_tradeoff", "07_oneshot_samples"],
    "08_qualitative": ["08_figure7_sorted_by_latency", "08_difficulty_vs_latency"],
    "09_architectures": ["09_figure8_umap"],
}
TABLES = {
    "00_overview_and_data": ["00_dataset_splits"],
    "01_latency_profiling": ["01_lut_ms", "01_figure4_correlation"],
    "02_pretrain": ["02_pretrain_metrics"],
    "03_search": ["03_search_per_epoch"],
    "04_variants": ["04_variant_picks", "04_variants"],
    "05_baselines": ["05_baselines", "05_baseline_cost"],
    "06_tables": ["06_table1_comparison", "06_latency_reduction"],
    "07_tradeoff": ["07_tradeoff_points"],
    "08_qualitative": ["08_latency_per_class", "08_difficulty_levels"],
    "09_architectures": ["09_boxed_architectures"],
}
# What the stages leave in the run folder (notebook 04 trains the smoke preset's variants C and E).
STAGE_ARTIFACTS = [
    "profile/lut.json",
    "profile/check/summary.json",
    "pretrain/last.pt",
    "pretrain/metrics.csv",
    "search/variants.json",
    "search/epochs/epoch_0000.pt",
    "finetune-C/last.pt",
    "finetune-E/last.pt",
    "evaluate-C/records.npz",
    "evaluate-E/summary.json",
    "baselines/mobilenetv2-1.0/summary.json",
    "baselines/shufflenetv2-1.0/summary.json",
    "comparators/oneshot/samples.npz",
    "comparators/blockdrop/summary.json",
    "comparators/convnet-aig/summary.json",
    "synthetic/search/summary.json",
    "synthetic/evaluate/records.npz",
    "results.csv",
]


@pytest.fixture
def smoke_run(book_smoke_run):
    """The whole book at the smoke preset, run once per test session (tests/conftest.py)."""
    return book_smoke_run


def test_every_notebook_runs_at_smoke(smoke_run):
    run, manifest = smoke_run
    assert manifest == json.loads((run / MANIFEST_FILE).read_text())
    assert manifest["preset"] == "smoke" and manifest["kernel"]["python"] == sys.executable
    assert sorted(manifest["notebooks"]) == BOOK == [s.name for s in book.discover_notebooks(NOTEBOOKS)]
    for name in BOOK:
        entry = manifest["notebooks"][name]
        assert entry["status"] == "complete" and entry["last_action"] == "executed", entry
        assert entry["output"] == str(run / "notebooks" / f"{name}.ipynb") and Path(entry["output"]).is_file()
        assert entry["parameters"] == {"preset": "smoke", "run_dir": str(run)}
        assert entry["seconds"] > 0 and entry["finished"] >= entry["started"]
        for fig in FIGURES[name]:
            png = run / "figures" / f"{fig}.png"
            assert png.stat().st_size > 5_000 and (run / "figures" / f"{fig}.pdf").is_file()
            assert f"figures/{fig}.png" in entry["figures"]
        for table in TABLES[name]:
            for ext in ("csv", "md"):
                assert (run / "tables" / f"{table}.{ext}").is_file() and f"tables/{table}.{ext}" in entry["tables"], (
                    name,
                    table,
                )
    assert len(list((run / "figures").glob("*.png"))) >= 8
    for artifact in STAGE_ARTIFACTS:
        assert (run / artifact).is_file(), artifact
    check = json.loads((run / "profile" / "check" / "summary.json").read_text())
    assert check["eval"]["n"] == book.count_check_children("smoke") == 8


def test_export_figures_copies_pngs_with_a_readme(smoke_run, tmp_path, capsys):
    run, manifest = smoke_run
    dest = tmp_path / "figures"  # a new folder (a folder of someone else's: test_bad_inputs_folders.py)
    from instanas_core.cli import main

    assert main(["figures", "--run-dir", str(run), "--out", str(dest), "--made-by", "make book"]) == 0
    pngs = sorted(p.name for p in dest.glob("*.png"))
    assert pngs == sorted(p.name for p in (run / "figures").glob("*.png")) and len(pngs) >= 8
    readme = (dest / "README.md").read_text()
    assert "`smoke` preset" in readme and "`make book`" in readme and "not** the paper" in readme
    assert manifest["environment"]["git_commit"] in readme
    assert all(name in readme for name in BOOK)
    with pytest.raises(book.BookError, match="holds no book run"):
        book.export_figures(tmp_path / "nowhere", dest)


def test_tradeoff_benchmark_on_the_finished_smoke_run(smoke_run, tmp_path):
    """``instanas bench tradeoff`` loads the book's trained variants and baseline (nothing is
    trained again), times them in one process and reports the reduction at matched accuracy."""
    from instanas_core.bench import BenchConfig, run_bench

    run, _ = smoke_run
    before = (run / "results.csv").read_text()
    result = run_bench(
        "tradeoff", BenchConfig(quick=True, preset="smoke", run_dir=str(run), baseline_budget="preset"), tmp_path
    )
    summary = result["summary"]
    assert [r["model"] for r in summary["rows"]] == ["mobilenetv2-1.0", "InstaNAS-C", "InstaNAS-E"]
    assert summary["baseline_folder"] == "baselines/mobilenetv2-1.0" and summary["baseline_epochs"] == 2
    # letters with the same test-image policies are one network, timed once
    assert sorted(L for group in summary["distinct_variants"] for L in group.split("=")) == ["C", "E"]
    for r in summary["rows"][1:]:
        twins = [q for q in summary["rows"][1:] if q["timed_as"] == r["timed_as"]]
        assert {q["measured_ms"] for q in twins} == {r["measured_ms"]} and r["model"][-1] in r["timed_as"]
    for r in summary["rows"]:
        assert r["measured_ms"] > 0 and 0 <= r["test_accuracy_pct"] <= 100
    matched = [r for r in summary["rows"][1:] if r["accuracy_vs_baseline_pt"] >= -0.5]
    if matched:
        best = min(matched, key=lambda r: r["measured_ms"])
        assert summary["latency_reduction_at_matched_accuracy_pct"] == pytest.approx(best["reduction_vs_baseline_pct"])
    else:
        assert summary["latency_reduction_at_matched_accuracy_pct"] is None
    assert (tmp_path / "tradeoff.json").is_file() and (tmp_path / "tradeoff.md").is_file()
    assert (run / "results.csv").read_text() == before  # loaded, not trained again


def test_tradeoff_baseline_trains_with_instanas_budget(smoke_run, tmp_path):
    """``--baseline-budget same`` (the default) trains MobileNetV2 1.0 for pre-training + search
    + fine-tuning epochs in its own folder, beside the book's baseline."""
    from instanas_core.bench import BenchConfig, run_bench

    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run)
    summary = run_bench("tradeoff", BenchConfig(quick=True, preset="smoke", run_dir=str(run)), tmp_path / "out")[
        "summary"
    ]
    assert summary["baseline_folder"] == "baselines/mobilenetv2-1.0-7ep"
    assert summary["baseline_epochs"] == 7 == sum(summary["instanas_epochs"].values())
    with (run / "baselines" / "mobilenetv2-1.0-7ep" / "metrics.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 7
    assert (run / "baselines" / "mobilenetv2-1.0" / "summary.json").is_file()  # the book's stays


def test_tables_are_headed_and_hold_both_sources(smoke_run):
    run, _ = smoke_run
    md = (run / "tables" / "06_table1_comparison.md").read_text()
    assert (
        "NOT the same data" in md
        and "preset smoke" in md
        and "Digits" in md
        and "latency as each row's latency_kind says" in md
    )
    with (run / "tables" / "06_table1_comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    sources = {r["source"].split(",")[0] for r in rows}
    assert sources == {"paper", "this run"}
    kinds = {r["latency_kind"] for r in rows if r["source"].startswith("this run")}
    assert kinds == {"estimated", "measured"}
    assert any(
        r["model"] == "mobilenetv2-1.0" and float(r["reduction_pct"]) == 0.0
        for r in rows
        if r["source"].startswith("this run")
    )
    with (run / "tables" / "06_latency_reduction.csv").open() as f:
        reductions = {r["variant"]: r for r in csv.DictReader(f)}
    assert set(reductions) == {"C", "E"} and float(reductions["C"]["paper_reduction_pct"]) == 48.9
    assert "latency estimated (look-up table" in (run / "tables" / "04_variant_picks.md").read_text()


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
    again = run_book("smoke", run, progress=False, timeout=CELL_TIMEOUT)
    assert time.perf_counter() - t0 < 20  # no kernel started
    for name in BOOK:
        assert again["notebooks"][name]["last_action"] == "skipped"
        assert again["notebooks"][name]["started"] == first["notebooks"][name]["started"]
    assert {p.name: p.stat().st_mtime_ns for p in (run / "notebooks").iterdir()} == mtimes


def test_ensure_stage_loads_finished_stages_and_refuses_other_settings(smoke_run, capsys):
    run, _ = smoke_run
    cfg = book.book_preset("smoke")
    before = (run / "pretrain" / "last.pt").stat().st_mtime_ns
    summary = book.ensure_stage("pretrain", cfg, run)
    assert summary["finished"] and "loaded" in capsys.readouterr().out
    assert (run / "pretrain" / "last.pt").stat().st_mtime_ns == before
    other = book.stage_config(cfg, "pretrain", ["epochs=3"])
    with pytest.raises(PipelineError, match=r"other settings \(pretrain.epochs: 2 -> 3\)"):
        book.ensure_stage("pretrain", other, run)
    assert book.ensure_stage("pretrain", other, run, check_config=False)["epochs"] == 2  # an input to a later notebook
    with pytest.raises(PipelineError, match="bad override for the search stage"):
        book.stage_config(cfg, "search", ["epoch=3"])


def test_bad_parameters_are_refused_before_anything_runs(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(
        BookError, match=r"Unknown notebook parameter\(s\) 'n_per_clas'.*n_per_class \(int, default 8\)"
    ):
        run_book("smoke", run, parameters={"n_per_clas": 4}, progress=False)
    with pytest.raises(
        BookError, match=r"'n_per_class' of notebook 00_overview_and_data expects a value of type int.*'4' of type str"
    ):
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
    assert [s.key for s in select_notebooks(specs, ["01"], None)] == ["01"]
    assert [s.key for s in select_notebooks(specs, [0, "01_latency_profiling"], None)] == ["00", "01"]
    assert [s.key for s in select_notebooks(specs, None, "01")] == [k for k in keys if k >= "01"]
    with pytest.raises(BookError, match="leaves no notebook"):
        select_notebooks(specs, ["00"], "01")


def test_command_line_arguments():
    import argparse

    parser = argparse.ArgumentParser()
    book.add_book_arguments(parser)
    args = parser.parse_args(
        ["--preset", "cpu", "--only", "00", "01", "--param", "children=50", "--param", "extra_resolutions=[64]"]
    )
    assert args.preset == "cpu" and args.only == ["00", "01"] and not args.force
    assert book.parse_param_assignments(args.param) == {"children": 50, "extra_resolutions": [64]}


def test_param_assignments_from_the_command_line():
    assert book.parse_param_assignments(["n=5", "r=[64, 224]", "name=abc", "x=0.5", "f=True"]) == {
        "n": 5,
        "r": [64, 224],
        "name": "abc",
        "x": 0.5,
        "f": True,
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
    (foreign / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "x",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))
    kernel = book.resolve_kernel("python3")
    assert kernel["argv"][0] == sys.executable and kernel["jupyter_path"]
    from jupyter_client.kernelspec import KernelSpecManager

    with kernel_environment(tmp_path, kernel):
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
    (folder / "00_ok.py").write_text(
        HEADER
        + textwrap.dedent("""
        # %% tags=["parameters"]
        preset = "smoke"
        run_dir = "runs/tiny"
        n = 1  # a count
        ratio = 0.5

        # %%
        from pathlib import Path
        (Path(run_dir) / "figures").mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "figures" / "00_ok.png").write_bytes(b"png" * n)
        """)
    )
    (folder / "01_fails.py").write_text(
        HEADER
        + textwrap.dedent("""
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
        """)
    )
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
    assert (
        failed["status"] == "failed" and failed["error"]["ename"] == "ValueError" and failed["error"]["cell_index"] == 3
    )
    assert (run / "figures" / "00_ok.png").read_bytes() == b"pngpng"  # earlier output kept
    assert Path(failed["output"]).is_file()  # the executed copy holds the traceback

    resumed = run_book(
        "smoke", run, notebooks_dir=notebooks, parameters={"n": 2, "fail": False}, progress=False, timeout=CELL_TIMEOUT
    )
    assert resumed["notebooks"]["00_ok"]["last_action"] == "skipped"
    assert resumed["notebooks"]["01_fails"]["status"] == "complete"
    # a changed parameter runs the notebook again
    again = run_book(
        "smoke", run, notebooks_dir=notebooks, only=["00"], parameters={"n": 3}, progress=False, timeout=CELL_TIMEOUT
    )
    assert again["notebooks"]["00_ok"]["last_action"] == "executed"
    assert (run / "figures" / "00_ok.png").read_bytes() == b"png" * 3


def test_parameters_cell_must_hold_literals(tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    (folder / "00_bad.py").write_text(
        HEADER + '\n# %% tags=["parameters"]\npreset = "smoke"\nrun_dir = "x"\nn = len("abc")\n'
    )
    with pytest.raises(BookError, match="non-literal default"):
        book.discover_notebooks(folder)
    (folder / "00_bad.py").write_text(HEADER + '\n# %% tags=["parameters"]\nrun_dir = "x"\n')
    with pytest.raises(BookError, match="'preset'"):
        book.discover_notebooks(folder)
    # papermill's own parser skips a line with a second '=' (here in the comment): refused
    (folder / "00_bad.py").write_text(
        HEADER + '\n# %% tags=["parameters"]\npreset = "smoke"\nrun_dir = "x"\nsets = []  # e.g. epochs=3\n'
    )
    with pytest.raises(BookError, match="line 3 .* more than one '='"):
        book.discover_notebooks(folder)


# ---- nbval on the converted notebooks ---------------------------------------------------------------
def _stage_mtimes(run: Path) -> dict[str, int]:
    return {
        str(p.relative_to(run)): p.stat().st_mtime_ns
        for p in run.rglob("*")
        if p.suffix in (".pt", ".npz") or p.name == "results.csv"
    }


def test_notebooks_pass_nbval(smoke_run, tmp_path):
    """Every notebook, converted to .ipynb, runs under ``pytest --nbval-lax`` with its default
    parameters (the smoke preset). nbval starts each kernel in the notebook's folder, so the
    default ``run_dir = "runs/book-smoke"`` is tmp_path/runs/book-smoke: a link to the run folder
    the book made above, whose finished stages the notebooks load instead of training again."""
    run, _ = smoke_run
    converted = []
    for py in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        converted.append(tmp_path / f"{py.stem}.ipynb")
        jupytext.write(jupytext.read(py), converted[-1])
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "book-smoke").symlink_to(run, target_is_directory=True)
    trained = _stage_mtimes(run)
    figure = run / "figures" / "09_figure8_umap.png"
    figure_mtime = figure.stat().st_mtime_ns
    env = dict(os.environ, MPLBACKEND="agg", PYTHONHASHSEED="0")
    env.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir(run)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-q",
            *map(str, converted),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert figure.stat().st_mtime_ns > figure_mtime  # the notebooks ran in this run folder ...
    assert _stage_mtimes(run) == trained  # ... and trained, evaluated and recorded nothing again
