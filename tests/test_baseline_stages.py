"""Baselines (Tables 1-3) and the comparators of Figure 6 end to end at smoke scale: the
``instanas baseline`` command, exact resume, results rows, BlockDrop / ConvNet-AIG from the
pre-trained meta-graph, the OneshotNAS samples, front and re-trained points, and the evaluate
stage's InstaNAS rows."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from instanas_core.baselines import build_baseline
from instanas_core.cli import main
from instanas_core.config import apply_overrides, get_preset
from instanas_core.controller import build_controller
from instanas_core.flops import count_macs, count_params
from instanas_core.latency import LatencyTable
from instanas_core.meta_graph import MetaGraph
from instanas_core.results import read_results
from instanas_core.rundir import load_checkpoint
from instanas_core.stages import run_evaluate, run_pretrain, run_search
from instanas_core.stages.baseline import BASELINE_COLUMNS
from instanas_core.stages.comparators import (
    BLOCKDROP_COLUMNS,
    CONVNET_AIG_COLUMNS,
    run_blockdrop,
    run_convnet_aig,
)
from instanas_core.stages.oneshot import run_oneshot
from instanas_core.train import ensure_latency_table

SMOKE = ["--preset", "smoke", "--dataset", "digits", "--quiet"]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rows_named(run, name):
    return [r for r in read_results(run) if r.name == name]


@pytest.fixture(scope="module")
def cfg():
    return get_preset("smoke")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cfg):
    """One smoke pre-training (and latency table) shared by the comparator tests; each test
    copies it into its own run folder."""
    run = tmp_path_factory.mktemp("pretrained") / "run"
    run_pretrain(cfg, run, progress=False)
    ensure_latency_table(cfg, run, torch.device("cpu"), progress=False)  # RUN/profile/lut.json
    return run


def fresh_run(pretrained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pretrained / "pretrain", run / "pretrain")
    if (pretrained / "profile").is_dir():
        shutil.copytree(pretrained / "profile", run / "profile")
    return run


# ---- baselines ---------------------------------------------------------------------------------
def test_baseline_command_end_to_end_and_exact_resume(tmp_path, cfg):
    """The issue's check, then: stopped after one epoch and resumed, the run ends with the
    uninterrupted run's metrics and the same test accuracy; a finished run is not recorded twice."""
    name = "mobilenetv2-1.0"
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert main(["baseline", "--model", name, *SMOKE, "--run-dir", str(run_a)]) == 0

    out = run_a / "baselines" / name
    assert {"config.json", "environment.json", "metrics.csv", "last.pt", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    rows = read_rows(out / "metrics.csv")
    assert tuple(rows[0]) == BASELINE_COLUMNS and len(rows) == cfg.baseline.epochs
    assert load_checkpoint(out / "last.pt")["epoch"] == cfg.baseline.epochs - 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["width"] == 1.0 and "width_mult 0.25" in summary["width_note"]

    (row,) = rows_named(run_a, name)
    assert row.dataset == "digits" and row.preset == "smoke" and row.latency_kind == "measured"
    assert 0.0 <= row.accuracy <= 100.0 and row.latency_mean_ms > 0 and row.latency_std_ms >= 0
    model = build_baseline(name, 32, 10)
    assert row.params == count_params(model) and row.flops == count_macs(model, (1, 3, 32, 32))
    assert row.accuracy == pytest.approx(100 * summary["test_accuracy"])

    assert main(["baseline", "--model", name, *SMOKE, "--run-dir", str(run_b), "--set", "stop_after_epoch=0"]) == 0
    assert len(read_rows(run_b / "baselines" / name / "metrics.csv")) == 1
    assert read_results(run_b) == []  # no test result for an unfinished baseline
    assert main(["baseline", "--model", name, *SMOKE, "--run-dir", str(run_b), "--resume"]) == 0
    resumed = read_rows(run_b / "baselines" / name / "metrics.csv")
    assert len(resumed) == len(rows)
    for got, want in zip(resumed, rows):
        for key in BASELINE_COLUMNS:
            if key != "seconds":
                assert float(got[key]) == pytest.approx(float(want[key]), rel=1e-5, abs=1e-6), (key, got, want)
    (row_b,) = rows_named(run_b, name)
    assert row_b.accuracy == row.accuracy and row_b.flops == row.flops

    # Resuming a finished baseline neither retrains nor appends a second row.
    assert main(["baseline", "--model", name, *SMOKE, "--run-dir", str(run_b), "--resume"]) == 0
    assert len(rows_named(run_b, name)) == 1


def test_bad_model_name_is_refused_without_traceback(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "instanas_core",
            "baseline",
            "--model",
            "mobilenetv2-9.9",
            *SMOKE,
            "--run-dir",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown baseline 'mobilenetv2-9.9'" in proc.stderr and "shufflenetv2-1.0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run.exists()


def test_bad_comparator_name_and_missing_pretrain_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["comparator", "--name", "blockdrops", *SMOKE, "--run-dir", str(run)]) == 2
    assert "unknown comparator 'blockdrops'" in capsys.readouterr().err
    assert main(["comparator", "--name", "blockdrop", *SMOKE, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "instanas pretrain" in err and "Traceback" not in err
    assert not (run / "comparators").exists()


# ---- gated comparators -----------------------------------------------------------------------------
def check_gated_result(run, name, folder, columns, cfg):
    rows = read_rows(run / "comparators" / folder / "metrics.csv")
    assert tuple(rows[0]) == columns and len(rows) == cfg.comparator.epochs
    (row,) = rows_named(run, name)
    assert 0.0 <= row.accuracy <= 100.0 and row.latency_kind == "measured" and row.latency_mean_ms > 0
    assert row.extra["latency_images"] == cfg.evaluate.measure_samples and row.extra["decision_maker_included"]
    assert 0.0 <= row.extra["usage"] <= 1.0 and row.params > 0 and row.flops > 0
    s = json.loads((run / "comparators" / folder / "summary.json").read_text())
    assert s["finished"] and s["result_appended"] and s["macs"] == pytest.approx(row.flops, rel=1e-6)
    return s


def test_blockdrop_command_trains_from_the_meta_graph_and_appends_its_row(pretrained, tmp_path, cfg):
    run = fresh_run(pretrained, tmp_path)
    assert main(["comparator", "--name", "blockdrop", *SMOKE, "--run-dir", str(run)]) == 0
    s = check_gated_result(run, "BlockDrop", "blockdrop", BLOCKDROP_COLUMNS, cfg)
    assert s["settings"]["joint"] is True


def test_blockdrop_with_a_frozen_backbone_keeps_the_pretrained_path(pretrained, tmp_path, cfg):
    """Not joint: only the policy network learns, so every backbone weight and BatchNorm
    statistic is still the pre-trained meta-graph's ``ir_k3_e6`` branch (initialisation and
    freezing both checked)."""
    run = fresh_run(pretrained, tmp_path)
    s = run_blockdrop(apply_overrides(cfg, ["comparator.blockdrop_joint=false"]), run, progress=False)
    assert s["finished"] and not s["settings"]["joint"]
    trained = load_checkpoint(run / "comparators" / "blockdrop" / "last.pt")["model"]
    meta = load_checkpoint(run / "pretrain" / "last.pt")["meta_graph"]
    k = cfg.experiment.space().modules.index("ir_k3_e6")
    backbone = [key for key in trained if not key.startswith("policy_net.")]
    assert any(key.startswith("cells.") for key in backbone)
    for key in backbone:
        if key.startswith("cells."):
            t, rest = key.split(".", 2)[1:]
            assert torch.equal(trained[key], meta[f"cells.{t}.branches.{k}.{rest}"]), key
        else:  # stem and head
            assert torch.equal(trained[key], meta[key]), key


def test_convnet_aig_trains_and_appends_its_row(pretrained, tmp_path, cfg):
    run = fresh_run(pretrained, tmp_path)
    s = run_convnet_aig(cfg, run, progress=False)
    s = check_gated_result(run, "ConvNet-AIG", "convnet-aig", CONVNET_AIG_COLUMNS, cfg)
    assert s["settings"]["target_rate"] == cfg.comparator.aig_target_rate
    assert 1 <= s["distinct_masks"] <= 2**10


# ---- OneshotNAS --------------------------------------------------------------------------------------
def dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def test_oneshot_samples_front_and_retrained_points(pretrained, tmp_path, cfg):
    run = fresh_run(pretrained, tmp_path)
    s = run_oneshot(cfg, run, progress=False)
    out = run / "comparators" / "oneshot"
    samples = read_rows(out / "samples.csv")
    front = read_rows(out / "frontier.csv")
    assert len(samples) == cfg.comparator.oneshot_samples and front
    point = lambda r: (float(r["accuracy_pct"]), float(r["table_latency_ms"]))  # noqa: E731
    front_idx = {r["index"] for r in front}
    # Pareto-correct: nothing dominates a front point; every other sample is dominated by (or
    # ties with) a front point; the front runs from fast to slow with rising accuracy.
    for f in front:
        assert not any(dominates(point(r), point(f)) for r in samples)
    for r in samples:
        assert (r["on_frontier"] == "1") == (r["index"] in front_idx)
        if r["index"] not in front_idx:
            assert any(dominates(point(f), point(r)) or point(f) == point(r) for f in front)
    lat = [point(f)[1] for f in front]
    acc = [point(f)[0] for f in front]
    assert lat == sorted(lat) and acc == sorted(acc)

    # Table latency of a one-shot child leaves out the controller.
    table = LatencyTable.load(run / "profile" / "lut.json")
    npz = np.load(out / "samples.npz")
    policies = torch.from_numpy(npz["policy"]).float()
    expected = dataclasses.replace(table, controller_ms=0.0).estimate(policies).numpy()
    np.testing.assert_allclose(npz["table_latency_ms"], expected, rtol=1e-5)
    assert (npz["table_latency_ms"] < table.estimate(policies).numpy()).all()

    # Re-trained front points: one folder and one results row each, cut out of the space.
    n_retrain = min(cfg.comparator.oneshot_retrain_top, len(front))
    assert len(s["retrained"]) == n_retrain and s["finished"]
    graph = MetaGraph(cfg.experiment.space())
    for r in s["retrained"]:
        assert str(r["sample_index"]) in front_idx
        assert len(read_rows(run / r["folder"] / "metrics.csv")) == cfg.baseline.epochs
        (row,) = rows_named(run, f"OneshotNAS-{r['sample_index']}")
        assert row.latency_kind == "measured" and row.latency_mean_ms > 0 and 0 <= row.accuracy <= 100
        child = graph.extract_child(policies[r["sample_index"]])
        assert row.flops == count_macs(child, (1, 3, 32, 32)) and row.params == count_params(child)
        assert row.extra["policy"] == samples[r["sample_index"]]["policy"]

    # Resuming a finished one-shot run reuses its samples and records nothing twice.
    again = run_oneshot(cfg, run, progress=False, resume=True)
    assert (
        again["frontier"] == s["frontier"]
        and len(rows_named(run, f"OneshotNAS-{s['retrained'][0]['sample_index']}")) == 1
    )


# ---- InstaNAS rows from the evaluate stage ---------------------------------------------------------------
def test_evaluate_appends_estimated_and_measured_instanas_rows(pretrained, tmp_path, cfg):
    run = fresh_run(pretrained, tmp_path)
    run_search(cfg, run, progress=False)
    ecfg = apply_overrides(cfg, ["evaluate.source=search", "evaluate.variant=last"])
    s = run_evaluate(ecfg, run, progress=False)
    rows = rows_named(run, "InstaNAS-last")
    assert [r.latency_kind for r in rows] == ["estimated", "measured"]
    est, mea = rows
    assert est.accuracy == pytest.approx(100 * s["accuracy"]) == mea.accuracy
    assert est.latency_mean_ms == pytest.approx(s["latency_estimate_ms"]["mean"])
    assert mea.latency_mean_ms == pytest.approx(s["latency_measured_ms"]["mean"]) and mea.latency_mean_ms > 0
    # Parameters and MACs: each sample's child plus the controller, averaged over samples.
    graph = MetaGraph(cfg.experiment.space())
    controller = build_controller(graph)
    policies = torch.from_numpy(np.load(run / "evaluate" / "records.npz")["policy"]).float()
    unique, inverse = torch.unique(policies.flatten(1), dim=0, return_inverse=True)
    children = [graph.extract_child(p.view(17, 5)) for p in unique]
    macs = np.array([count_macs(c, (1, 3, 32, 32)) for c in children])[inverse.numpy()]
    params = np.array([count_params(c) for c in children])[inverse.numpy()]
    assert est.flops == round(np.mean(macs) + count_macs(controller, (1, 3, 32, 32)))
    assert est.params == round(np.mean(params) + count_params(controller))
    # Validation-split evaluations are for selection and add no rows.
    run_evaluate(apply_overrides(ecfg, ["evaluate.split=val"]), run, progress=False)
    assert len(rows_named(run, "InstaNAS-last")) == 2
