"""``instanas evaluate --run-dir RUN --set data_root=DIR`` (issue 16): a finished run's variants and
baselines re-evaluated on another copy of the data, with no training, into a new results table
beside the run's own. On the smoke book's run (digits, whose data does not move with the root)
the re-evaluation must reproduce every accuracy the run measured itself; the test-file layout is
tested in test_data_cifar_jpeg.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from instanas_core.cli import main
from instanas_core.results import read_results


@pytest.fixture()
def run_copy(book_smoke_run, tmp_path):
    run, _ = book_smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".instanas.lock", "notebooks"))
    return copy


def test_reevaluation_reproduces_the_runs_own_accuracy_and_leaves_its_table(run_copy, tmp_path, capsys):
    own = (run_copy / "results.csv").read_bytes()
    argv = ["evaluate", "--run-dir", str(run_copy), "--set", f"data_root={tmp_path / 'elsewhere'}", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    folders = list(run_copy.glob("reevaluate-*"))
    assert len(folders) == 1 and folders[0].name in printed
    rows = read_results(folders[0])
    variants = sorted(p.name.split("-", 1)[1] for p in run_copy.glob("finetune-*"))
    baselines = sorted(p.name for p in (run_copy / "baselines").iterdir() if (p / "last.pt").is_file())
    assert {r.name for r in rows} == {f"InstaNAS-{v}" for v in variants} | set(baselines)
    before = {(r.name, r.latency_kind): r for r in read_results(run_copy)}
    for r in rows:
        was = before[(r.name, r.latency_kind)]
        assert r.accuracy == pytest.approx(was.accuracy, abs=1e-9), r.name  # same images, same weights
        if r.name in baselines:  # a static network's latency is carried over, and says so
            assert r.latency_mean_ms == was.latency_mean_ms and "latency_from" in r.extra
    # each variant's images get the same architecture and the same prediction as in the run's evaluation
    for v in variants:
        with (
            np.load(run_copy / f"evaluate-{v}" / "records.npz") as a,
            np.load(folders[0] / f"evaluate-{v}" / "records.npz") as b,
        ):
            for key in ("index", "label", "prediction", "policy", "latency_ms"):
                assert np.array_equal(a[key], b[key]), (v, key)
    assert (run_copy / "results.csv").read_bytes() == own
    assert "| model |" in (folders[0] / "results.md").read_text()
    # a second re-evaluation into the same folder replaces its rows instead of adding to them
    assert main(argv) == 0
    assert len(read_results(folders[0])) == len(rows)


def test_reevaluation_of_a_run_with_nothing_finished_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                "--preset",
                "smoke",
                "--run-dir",
                str(run),
                "--quiet",
                "--set",
                "max_steps_per_epoch=1",
                "epochs=1",
            ]
        )
        == 0
    )
    assert main(["evaluate", "--run-dir", str(run), "--set", f"data_root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "nothing to re-evaluate" in err and "\n" not in err.strip()
    assert not list(run.glob("reevaluate-*"))
