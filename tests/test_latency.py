"""Latency look-up table (§4.1, Figure 4): estimate formula, lut.json round trip, refusals,
and the `instanas profile` command on a tiny configuration."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from instanas_core import build_meta_graph, sample_random_policy
from instanas_core.latency import LatencyTable, LatencyTableError, TimingConfig, fit_calibration, profile_lookup_table
from instanas_core.policy import all_ones_policy
from instanas_core.search_space import make_search_space

TINY = TimingConfig(min_run_time=0.001, blocks=1, warmup=1)


@pytest.fixture(scope="module")
def table():
    graph = build_meta_graph(32, width_mult=0.25)
    return profile_lookup_table(graph, None, threads=1, timing=TINY, progress=False)


def test_table_shapes_and_costs(table):
    assert table.cell_module_ms.shape == (17, 5)
    assert (table.cell_module_ms > 0).all() and table.stem_ms > 0 and table.head_ms > 0
    # kernel 5 / expansion 6 cost more multiply-adds than kernel 3 / expansion 3 in every cell
    macs = table.cell_module_macs
    assert (macs[:, 4] > macs[:, 1]).all() and (macs[:, 2] > macs[:, 1]).all()
    assert (table.cell_module_params > 0).all()
    assert table.meta["threads"] == 1 and table.meta["resolution"] == 32


def test_estimate_is_sum_of_entries(table):
    graph = build_meta_graph(32, width_mult=0.25)
    policy = sample_random_policy(graph, 6, torch.Generator().manual_seed(0))
    expected = (policy.numpy() * table.cell_module_ms).sum((1, 2)) + table.stem_ms + table.head_ms + table.controller_ms
    np.testing.assert_allclose(table.raw_estimate(policy).numpy(), expected, rtol=1e-5)
    ones = all_ones_policy(graph)
    assert table.raw_estimate(ones).item() == pytest.approx(table.cell_module_ms.sum() + table.fixed_ms, rel=1e-5)


def test_calibration_recovers_affine_relation(table):
    graph = build_meta_graph(32, width_mult=0.25)
    policy = sample_random_policy(graph, 20, torch.Generator().manual_seed(1))
    raw = table.raw_estimate(policy).numpy().astype(np.float64)  # float64 targets: exact to fit, whatever the timings
    table.calibration = fit_calibration(table, policy, 1.4 * raw + 0.3)
    try:
        a, b = table.calibration["coef"]
        assert a == pytest.approx(1.4, rel=1e-6) and b == pytest.approx(0.3, abs=1e-6)
        np.testing.assert_allclose(table.estimate(policy).numpy(), 1.4 * raw + 0.3, rtol=1e-5)
    finally:
        table.calibration = None


def test_lut_json_round_trip(table, tmp_path):
    table.calibration = {"model": "affine", "coef": [1.2, 0.1], "fit_children": 3}
    try:
        path = table.save(tmp_path / "lut.json")
        again = LatencyTable.load(path)
    finally:
        table.calibration = None
    np.testing.assert_array_equal(again.cell_module_ms, table.cell_module_ms)
    np.testing.assert_array_equal(again.cell_module_macs, table.cell_module_macs)
    assert again.space == table.space and again.stem_ms == table.stem_ms
    assert again.calibration["coef"] == [1.2, 0.1]
    assert again.meta["device_type"] == "cpu"


def test_incompatible_tables_refused(table, tmp_path):
    with pytest.raises(LatencyTableError, match="width_mult"):
        table.check_compatible(make_search_space(32, width_mult=0.5))
    with pytest.raises(LatencyTableError, match="resolution"):
        table.check_compatible(make_search_space(64, width_mult=0.25))
    with pytest.raises(LatencyTableError, match="profiled on cpu"):
        table.check_compatible(table.space, device="cuda")
    table.check_compatible(table.space, device="cpu")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LatencyTableError, match="not valid JSON"):
        LatencyTable.load(tmp_path / "bad.json")
    d = table.to_dict()
    d["cell_module_ms"] = d["cell_module_ms"][:3]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(LatencyTableError, match="shape"):
        LatencyTable.load(tmp_path / "short.json")
    with pytest.raises(LatencyTableError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")


def test_profile_command_tiny(tmp_path):
    out = tmp_path / "prof"
    cmd = [
        sys.executable,
        "-m",
        "instanas_core",
        "profile",
        "--resolution",
        "32",
        "--width-mult",
        "0.25",
        "--children",
        "12",
        "--min-run-time",
        "0.001",
        "--blocks",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Pearson r" in proc.stdout and "noise floor" in proc.stdout
    table = LatencyTable.load(out / "lut.json")
    assert table.calibration is not None and table.calibration["fit_children"] == 4
    rows = list(csv.DictReader((out / "correlation.csv").open()))
    assert len(rows) == 12
    est = np.array([float(r["estimated_ms"]) for r in rows])
    mea = np.array([float(r["measured_ms"]) for r in rows])
    assert (est > 0).all() and (mea > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval"]["n"] == 8


def test_profile_command_refuses_bad_input(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "instanas_core",
        "profile",
        "--resolution",
        "32",
        "--threads",
        "0",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "threads must be at least 1" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_takes_minimum_of_interleaved_passes(tmp_path, monkeypatch):
    """With 4 passes a child's measured latency is its minimum over passes 0 and 2, the repeat
    its minimum over passes 1 and 3."""
    from instanas_core import profile as profile_mod

    raw = {}

    def fake_measure(graph, policies, controller, threads, timing, device, passes, progress):
        rng = np.random.default_rng(0)
        raw["ms"] = 1.0 + rng.random((len(policies), passes))  # (N, passes)
        return raw["ms"]

    monkeypatch.setattr(profile_mod, "measure_children", fake_measure)
    cfg = profile_mod.ProfileConfig(resolution=32, width_mult=0.25, children=8, min_run_time=0.001, blocks=1, passes=4)
    summary = profile_mod.run_profile(cfg, tmp_path, progress=False)
    rows = list(csv.DictReader((tmp_path / "correlation.csv").open()))
    np.testing.assert_allclose([float(r["measured_ms"]) for r in rows], raw["ms"][:, [0, 2]].min(1), atol=1e-5)
    np.testing.assert_allclose([float(r["repeat_ms"]) for r in rows], raw["ms"][:, [1, 3]].min(1), atol=1e-5)
    assert "minimum over 2 of 4" in summary["measurement"]


@pytest.mark.parametrize("passes", [0, 1, 3])
def test_profile_refuses_odd_passes(passes):
    from instanas_core.profile import ProfileConfig

    with pytest.raises(ValueError, match="passes must be an even number"):
        ProfileConfig(passes=passes)


def test_lut_accuracy_reuses_a_finished_resolution(tmp_path):
    """``bench lut-accuracy`` continues where it stopped: a resolution profiled with the same
    settings (any number of children; runs from before ``passes`` existed made 2) is reused."""
    import dataclasses

    from instanas_core.bench import _finished_profile
    from instanas_core.profile import ProfileConfig

    old = dataclasses.asdict(ProfileConfig(children=500))
    del old["passes"]
    (tmp_path / "summary.json").write_text(json.dumps({"config": old}))
    (tmp_path / "correlation.csv").write_text("child\n")
    assert _finished_profile(tmp_path, ProfileConfig(children=200)) is not None
    assert _finished_profile(tmp_path, ProfileConfig(children=200, passes=4)) is None
    assert _finished_profile(tmp_path, ProfileConfig(children=200, blocks=3)) is None
