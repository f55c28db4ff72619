"""The training stages end to end at smoke scale (paper §3.1-3.3): run folders, metrics, the
dynamic reward's falling upper bound, exact resume, instance-aware policies on
synthetic-difficulty, and the controller's latency following U_t."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from instanas_core.cli import main
from instanas_core.config import apply_overrides, get_preset
from instanas_core.flops import count_macs, count_params
from instanas_core.latency import LatencyTable
from instanas_core.meta_graph import MetaGraph
from instanas_core.controller import build_controller
from instanas_core.rundir import load_checkpoint
from instanas_core.stages import pareto_front, run_evaluate, run_pretrain, run_search

STAGES = ("pretrain", "search", "finetune")


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_mac_table(cfg, run_dir, us_per_mmac: float = 20.0, per_module_us: float = 5.0) -> LatencyTable:
    """A deterministic latency table proportional to multiply-accumulates, written to
    RUN/profile/lut.json, so tests do not depend on this machine's timing noise."""
    space = cfg.experiment.space()
    graph = MetaGraph(space).eval()
    t, k = space.num_cells, space.num_modules
    macs, params = np.zeros((t, k)), np.zeros((t, k))
    for ti, spec in enumerate(space.cells()):
        for ki, branch in enumerate(graph.cells[ti].branches):
            macs[ti, ki] = count_macs(branch, (1, spec.in_channels, spec.in_size, spec.in_size))
            params[ti, ki] = count_params(branch)
    ms = macs / 1e6 * us_per_mmac / 1e3 + per_module_us / 1e3
    res = space.resolution
    stem = count_macs(graph.stem, (1, 3, res, res)) / 1e6 * us_per_mmac / 1e3
    last = space.cells()[-1]
    head = count_macs(graph.head, (1, last.out_channels, last.out_size, last.out_size)) / 1e6 * us_per_mmac / 1e3
    ctrl = count_macs(build_controller(graph), (1, 3, res, res)) / 1e6 * us_per_mmac / 1e3
    table = LatencyTable(space, ms, ms, np.zeros_like(ms), stem, head, ctrl, macs, params, {"device_type": "cpu"})
    table.save(run_dir / "profile" / "lut.json")
    return table


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The check of the issue: pretrain, search, finetune (and evaluate) with the smoke preset on
    digits, through the command line, into one run folder."""
    run = tmp_path_factory.mktemp("smoke") / "run"
    for stage in STAGES + ("evaluate",):
        code = main([stage, "--preset", "smoke", "--dataset", "digits", "--run-dir", str(run), "--quiet"])
        assert code == 0, stage
    return run


def test_each_stage_writes_config_environment_metrics_checkpoint(smoke_run):
    for stage in STAGES:
        out = smoke_run / stage
        rows = read_rows(out / "metrics.csv")
        assert rows and {"epoch"} <= set(rows[0])
        assert any("accuracy" in c for c in rows[0]) and any("loss" in c for c in rows[0])
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["preset"] == "smoke" and cfg["experiment"]["dataset"] == "digits"
        env = json.loads((out / "environment.json").read_text())
        assert {"torch", "git_commit", "seed", "device", "numpy", "python"} <= set(env)
        state = load_checkpoint(out / "last.pt")  # weights_only=True
        assert state["epoch"] == len(rows) - 1 and "rng" in state and "meta_graph" in state
    assert (smoke_run / "profile" / "lut.json").is_file()


def test_search_metrics_and_falling_upper_bound(smoke_run):
    rows = read_rows(smoke_run / "search" / "metrics.csv")
    assert {"epoch", "upper_bound", "lower_bound", "val_accuracy", "mean_latency_ms"} <= set(rows[0])
    upper = [float(r["upper_bound"]) for r in rows]
    lower = [float(r["lower_bound"]) for r in rows]
    assert len(rows) == get_preset("smoke").search.epochs
    assert all(a > b for a, b in zip(upper, upper[1:])), upper
    assert all(u > lo for u, lo in zip(upper, lower))
    bounds = json.loads((smoke_run / "search" / "bounds.json").read_text())
    refs = bounds["reference_latencies"]
    assert upper[0] == pytest.approx(0.7 * refs["all_modules_ms"], rel=1e-6)
    assert upper[-1] == pytest.approx(0.5 * refs["mobilenetv2_ms"], rel=1e-6)
    assert lower[0] == pytest.approx(refs["cheapest_ms"], rel=1e-6)
    for r in rows:
        assert 0.0 <= float(r["val_accuracy"]) <= 1.0 and float(r["mean_latency_ms"]) > 0
        assert float(r["measured_latency_ms"]) > 0  # real routed latency timed each epoch
    assert len(list((smoke_run / "search" / "epochs").glob("epoch_*.pt"))) == len(rows)


def test_variants_a_to_e_from_the_validation_front(smoke_run):
    picks = json.loads((smoke_run / "search" / "variants.json").read_text())["variants"]
    assert list(picks) == ["A", "B", "C", "D", "E"]
    # A is the most accurate, E the fastest point of the front.
    assert picks["A"]["val_accuracy"] >= picks["E"]["val_accuracy"]
    assert picks["A"]["mean_latency_ms"] >= picks["E"]["mean_latency_ms"]
    points = [
        {"epoch": 0, "val_accuracy": 0.5, "mean_latency_ms": 3.0},
        {"epoch": 1, "val_accuracy": 0.6, "mean_latency_ms": 2.0},  # dominates epoch 0
        {"epoch": 2, "val_accuracy": 0.7, "mean_latency_ms": 4.0},
        {"epoch": 3, "val_accuracy": 0.4, "mean_latency_ms": 1.0},
    ]
    assert [p["epoch"] for p in pareto_front(points)] == [3, 1, 2]


def test_evaluate_writes_records_and_statistics(smoke_run):
    s = json.loads((smoke_run / "evaluate" / "summary.json").read_text())
    assert s["split"] == "test" and 0 <= s["accuracy"] <= 1
    assert s["latency_estimate_ms"]["mean"] > 0 and s["latency_measured_ms"]["samples"] > 0
    assert s["distinct_policies"] >= 1
    rates = np.asarray(s["selection_rates"]["cells"])
    assert rates.shape == (17, 5) and ((rates >= 0) & (rates <= 1)).all()
    rows = read_rows(smoke_run / "evaluate" / "records.csv")
    assert len(rows) == s["n"]
    assert {"index", "label", "prediction", "correct", "latency_ms", "policy"} <= set(rows[0])
    assert len(rows[0]["policy"]) == 85
    arrays = np.load(smoke_run / "evaluate" / "records.npz")
    assert arrays["probs"].shape == (s["n"], 17, 5) and arrays["policy"].shape == (s["n"], 17, 5)
    assert sorted(arrays["index"].tolist()) == list(range(s["n"]))


def test_cli_refuses_to_mix_runs_and_reuses_saved_config(smoke_run, capsys):
    assert main(["pretrain", "--preset", "smoke", "--run-dir", str(smoke_run), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    # Without --preset a stage takes the configuration an earlier stage saved.
    assert main(["evaluate", "--run-dir", str(smoke_run), "--quiet", "--set", "split=val", "measure_samples=0"]) == 0
    s = json.loads((smoke_run / "evaluate" / "summary.json").read_text())
    assert s["split"] == "val" and s["dataset"] == "digits"
    assert main(["search", "--preset", "smoke", "--run-dir", str(smoke_run), "--set", "alpha=2"]) == 2
    assert "alpha" in capsys.readouterr().err


_NOISY = {"seconds", "measured_latency_ms"}  # wall-clock quantities, not part of the comparison


@pytest.mark.parametrize("stage", STAGES)
def test_resume_reproduces_the_uninterrupted_run(smoke_run, tmp_path, stage):
    """Stop a stage after its first epoch, resume it, and get the uninterrupted run's metrics."""
    run = tmp_path / "run"
    for earlier in ("profile",) + STAGES[: STAGES.index(stage)]:
        shutil.copytree(smoke_run / earlier, run / earlier)
    if stage == "finetune":  # the variants the uninterrupted finetune used
        shutil.copy(smoke_run / "search" / "variants.json", run / "search" / "variants.json")
    common = ["--preset", "smoke", "--dataset", "digits", "--run-dir", str(run), "--quiet"]
    assert main([stage, *common, "--set", "stop_after_epoch=0"]) == 0
    partial = read_rows(run / stage / "metrics.csv")
    assert len(partial) == 1
    assert main([stage, *common, "--resume"]) == 0
    resumed = read_rows(run / stage / "metrics.csv")
    reference = read_rows(smoke_run / stage / "metrics.csv")
    assert len(resumed) == len(reference)
    for got, want in zip(resumed, reference):
        for key in want:
            if key in _NOISY:
                continue
            a, b = float(got[key] or "nan"), float(want[key] or "nan")
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-6), (stage, key, got, want)


def test_synthetic_difficulty_gets_several_architectures(tmp_path, record_property):
    """After a short search on synthetic-difficulty the controller does not route every image
    through the same architecture; the difficulty/latency correlation is reported."""
    cfg = apply_overrides(
        get_preset("smoke"),
        [
            "dataset=synthetic-difficulty",
            "data_size=300",
            "train_per_class=20",
            "eval_per_class=10",
            "search.epochs=2",
            "evaluate.split=val",
            "evaluate.measure_samples=0",
        ],
    )
    run = tmp_path / "run"
    write_mac_table(cfg, run)
    run_pretrain(cfg, run, progress=False)
    run_search(cfg, run, progress=False)
    s = run_evaluate(apply_overrides(cfg, ["evaluate.source=search", "evaluate.variant=last"]), run, progress=False)
    assert s["n"] == 100 and "difficulty" in s
    assert s["distinct_policies"] > 1
    d = s["difficulty"]
    record_property("difficulty_latency_spearman", d["spearman_rho"])
    record_property("difficulty_latency_pearson", d["pearson_r"])
    print(
        f"\nsynthetic-difficulty: {s['distinct_policies']} distinct policies for {s['n']} images; "
        f"difficulty/latency Pearson {d['pearson_r']:.3f}, Spearman {d['spearman_rho']:.3f}; "
        f"mean latency per level {d['mean_latency_per_level']}"
    )
    assert np.isfinite(d["spearman_rho"]) and -1.0 <= d["spearman_rho"] <= 1.0
    assert set(d["mean_latency_per_level"]) == {0, 1, 2, 3, 4}


# The "small problem" of the latency test: 300 digits, width 0.25, the 24-channel stage at
# stride 2, no augmentation, a MAC-proportional latency table; pre-training reaches about 0.9
# validation accuracy (all modules). The search then shrinks U_t over 6 epochs.
LATENCY_SETUP = [
    "experiment.stage24_stride=2",
    "experiment.train_per_class=30",
    "experiment.eval_per_class=10",
    "experiment.augment=false",
    "pretrain.epochs=6",
    "pretrain.lr=0.03",
    "pretrain.max_steps_per_epoch=none",
    "search.epochs=5",
    "search.max_steps_per_epoch=none",
    "search.measure_samples=0",
    "search.controller_lr=0.02",
    "search.entropy_bonus=0",
    "search.alpha=0.95",
    "search.upper_end_factor=0.8",
]
ACCURACY_FLOOR = 0.7  # validation accuracy of the greedy policies, every search epoch (chance: 0.1)


def test_controller_latency_falls_as_upper_bound_shrinks(tmp_path):
    cfg = apply_overrides(get_preset("smoke"), LATENCY_SETUP)
    run = tmp_path / "run"
    write_mac_table(cfg, run)
    run_pretrain(cfg, run, progress=False)
    run_search(cfg, run, progress=False)
    rows = read_rows(run / "search" / "metrics.csv")
    upper = np.array([float(r["upper_bound"]) for r in rows])
    latency = np.array([float(r["mean_latency_ms"]) for r in rows])
    accuracy = np.array([float(r["val_accuracy"]) for r in rows])
    print(f"\nU_t {np.round(upper, 3).tolist()}\nlatency {np.round(latency, 3).tolist()}\naccuracy {accuracy.tolist()}")
    assert (np.diff(upper) < 0).all()
    assert latency[-1] < 0.85 * latency[0]
    assert np.corrcoef(upper, latency)[0, 1] > 0.5  # latency moves with the bound
    assert (accuracy >= ACCURACY_FLOOR).all(), accuracy


def test_drop_path_schedule_zero_then_linear_to_half():
    from instanas_core.stages import drop_rate_at

    rates = [drop_rate_at(e, 10) for e in range(10)]
    assert rates[:5] == [0.0] * 5
    assert rates[5:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert [drop_rate_at(e, 2) for e in range(2)] == [0.0, 0.5]


def test_pretrain_logs_the_drop_path_rate(smoke_run):
    rows = read_rows(smoke_run / "pretrain" / "metrics.csv")
    assert [float(r["drop_rate"]) for r in rows] == [0.0, 0.5]


def test_controller_loss_signs():
    """Eq. 1: a positive advantage makes the sampled actions more likely; a positive
    entropy_bonus pulls probabilities towards 0.5 (A3C's sign, the original code's)."""
    from instanas_core.stages import controller_loss

    logits = torch.zeros(1, 17, 5, requires_grad=True)
    probs = torch.sigmoid(logits)
    actions = torch.ones(1, 17, 5)
    loss, _ = controller_loss(probs, actions, torch.tensor([1.0]), alpha=0.8, entropy_bonus=0.0)
    loss.backward()
    assert (logits.grad < 0).all()  # gradient descent raises p(a = 1)

    logits = torch.full((1, 17, 5), 2.0, requires_grad=True)
    loss, entropy = controller_loss(torch.sigmoid(logits), actions, torch.tensor([0.0]), alpha=1.0, entropy_bonus=1.0)
    loss.backward()
    assert (logits.grad > 0).all() and entropy > 0  # descent lowers p from 0.88 towards 0.5
    logits.grad = None
    loss, _ = controller_loss(torch.sigmoid(logits), actions, torch.tensor([0.0]), alpha=1.0, entropy_bonus=-1.0)
    loss.backward()
    assert (logits.grad < 0).all()  # a negative bonus minimises entropy


def test_retrain_from_scratch_with_adam(smoke_run):
    out = "retrain-A"
    code = main(
        [
            "finetune",
            "--run-dir",
            str(smoke_run),
            "--quiet",
            "--set",
            "mode=retrain",
            "variant=A",
            f"out_dir={out}",
            "epochs=1",
        ]
    )
    assert code == 0
    s = json.loads((smoke_run / out / "summary.json").read_text())
    assert s["mode"] == "retrain" and s["optimizer"] == "adam" and s["lr"] == 0.01
    assert s["graph_source"].startswith("fresh")
    assert read_rows(smoke_run / out / "metrics.csv")
