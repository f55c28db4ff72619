"""``instanas bench instance-awareness``: is the controller instance-aware, and does it beat what a
reader gets without one? (issues 15 and 20; paper §3, §4.3).

For each data set (``--quick``: synthetic-difficulty; otherwise also the CIFAR-10 JPEG preset) it
trains three runs from the same preset:

* ``options``  -- the named options of :data:`~instanas_core.presets.INSTANCE_AWARE_OPTIONS`;
* ``paper``    -- the paper's method exactly (every option at its default);
* ``shuffled`` -- the options, with a controller that sees another image of the batch (a control:
  whatever it gains over the static front is not instance-awareness). It shares the options
  run's pre-training.

and judges each on the test split with the deployed (greedy) decoding, on the search's last
meta-graph (:mod:`instanas_core.stages.awareness`): Spearman rho(difficulty, latency), latency per
level, architectures and their shares, the greedy-sampled latency gap, and accuracy against the
static front, the 2- and 3-stage confidence cascades and random routing at equal measured mean
latency (:mod:`instanas_core.stages.cascade`), with bootstrap intervals over test images.
Thresholds and cascade children are chosen on the validation split; so is the static front.

Writes ``DIR/instance-awareness.json``, ``.md`` and ``.png``; the runs stay in ``DIR/runs/``
(finished stages are loaded, so an interrupted benchmark continues).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .config_io import apply_overrides
from .env import describe_environment
from .latency import LatencyTable, TimingConfig, thread_limit
from .ownership import claim
from .pareto import pareto_indices
from .pipeline import ensure_stage
from .presets import INSTANCE_AWARE_OPTIONS, get_preset
from .rundir import stage_dir
from .stages.awareness import Records, collect_records, level_summary
from .stages.cascade import (
    bootstrap_interval,
    cascade_curve,
    check_budgets,
    interpolation_weights,
    level_oracle_curve,
)
from .train import resolve_device

__all__ = ["SETTINGS", "DATASET_PRESETS", "awareness_config", "bench_instance_awareness", "TARGETS"]

# The preset each data set runs at, and its size for --quick.
DATASET_PRESETS = {"synthetic-difficulty": "difficulty-cpu", "cifar10-jpeg": "cifar10-awareness-cpu"}
QUICK_OVERRIDES = ("experiment.data_size=1000", "experiment.eval_per_class=30", "pretrain.epochs=2", "search.epochs=3")
SETTINGS = {
    "options": INSTANCE_AWARE_OPTIONS,
    "paper": (),
    "shuffled": INSTANCE_AWARE_OPTIONS + ("search.controller_input=shuffled",),
}
# Issue 15's targets per data set, and issue 20's on both: InstaNAS at least the 2-stage cascade.
TARGETS = {
    "synthetic-difficulty": "rho >= 0.5; level-4 latency >= 1.3x level 0; >= 5 architectures with >= 2% of images; "
    "accuracy >= static front + 1 point; shuffled control <= static front; accuracy >= 2-stage cascade",
    "cifar10-jpeg": ">= 20 architectures; accuracy >= static front; accuracy >= 2-stage cascade",
}
RANDOM_CHILDREN = 24
BUDGET_EPOCHS = 5


def awareness_config(dataset: str, setting: str, quick: bool):
    cfg = get_preset(DATASET_PRESETS[dataset])
    extra = QUICK_OVERRIDES if quick and dataset == "synthetic-difficulty" else ()
    return apply_overrides(apply_overrides(cfg, list(SETTINGS[setting])), list(extra))


def _train(cfg, run: Path, share_from: Path | None, shared: tuple[str, ...]) -> None:
    """Pre-train and search in ``run``; the stage folders ``shared`` are copied from ``share_from``
    (the same settings: one latency table per data set, one pre-training for options and control)."""
    for stage in shared if share_from is not None else ():
        if not (run / stage).exists() and (share_from / stage / "summary.json").is_file():
            run.mkdir(parents=True, exist_ok=True)
            shutil.copytree(share_from / stage, run / stage, ignore=shutil.ignore_patterns(".instanas.lock"))
    ensure_stage("pretrain", cfg, run, progress=True)
    ensure_stage("search", cfg, run, progress=True)


def _budget_epochs(epochs: int) -> list[int]:
    """Up to BUDGET_EPOCHS search epochs from the second half, the last one included."""
    first = epochs // 2
    picked = np.unique(np.linspace(first, epochs - 1, BUDGET_EPOCHS).round().astype(int))
    return [int(e) for e in picked]


def _curve_at(lat: np.ndarray, correct: np.ndarray, target: float) -> np.ndarray | None:
    """Per-image scores of the piecewise-linear curve through points (lat (P,), correct (P, N)) at
    ``target``. Beyond the slowest point the curve stays at that point (a budget above it can
    always spend less); below the fastest it is undefined (None)."""
    if len(lat) and target > float(np.max(lat)):
        target = float(np.max(lat))
    found = interpolation_weights(lat, target)
    if found is None:
        return None
    i, j, w = found
    return w * correct[i] + (1.0 - w) * correct[j]


def _judge(rec: Records, quick: bool, stages: tuple[int, ...] = (2, 3), asked: tuple[float, ...] | None = None) -> dict:
    """The report of one run from its records (see the module docstring)."""
    ms = rec.ms  # calibrated latency of every architecture
    routed_ms = {name: ms[e["assign"]] + rec.controller_ms for name, e in rec.routed.items()}
    names = list(rec.routed)
    deployed = names[-1]
    dep = rec.routed[deployed]
    n = len(dep["assign"])
    # ---- the static front, chosen on validation, read on test (rows of conf/correct = candidates)
    static_ms = ms[np.array(rec.static)]
    front = np.array(pareto_indices(static_ms, rec.correct["val"].mean(1)))
    front_lat, front_correct = static_ms[front], rec.correct["test"][front].astype(float)
    # ---- InstaNAS points (one per controller epoch)
    points = [
        {
            "model": name,
            "latency_ms": float(routed_ms[name].mean()),
            "accuracy": float(rec.routed[name]["correct"].mean()),
        }
        for name in names
    ]
    # ---- cascades at >= 5 budgets: InstaNAS's own latencies plus an even spread over the front
    lo, hi = float(front_lat.min()), float(front_lat.max())
    if asked is not None:
        check_budgets(asked, lo, hi, min(stages))
        budgets = sorted(asked)
    else:
        spread = set(np.linspace(lo, hi, 6)[1:].tolist())
        budgets = sorted({float(np.clip(p["latency_ms"], lo, hi)) for p in points} | spread)
    grid = 11 if quick else 21
    val = (rec.conf["val"], rec.correct["val"])
    test = (rec.conf["test"], rec.correct["test"])
    cand = [int(c) for c in front]
    on_front = set(cand)
    cascades = {
        f"cascade-{k}": cascade_curve(val, test, static_ms, cand, k, budgets, grid) for k in stages if len(cand) >= k
    }
    random_scores = dep["random_correct"]
    # ---- the level oracle (synthetic-difficulty): a ceiling for routing by difficulty
    oracle = []
    if rec.level is not None and rec.val_level is not None:
        oracle = level_oracle_curve(
            (rec.val_level, rec.correct["val"]), (rec.level, rec.correct["test"]), static_ms, budgets
        )
    # ---- accuracy at equal mean latency, per InstaNAS point, with bootstrap intervals
    comparisons = []
    for p, name in zip(points, names):
        mine = rec.routed[name]["correct"].astype(float)
        row = {"model": name, "latency_ms": p["latency_ms"], "accuracy": p["accuracy"]}
        row["accuracy_ci"] = bootstrap_interval(mine)
        others = {"static front": _curve_at(front_lat, front_correct, p["latency_ms"])}
        for cname, rows in {**cascades, "level oracle": oracle}.items():
            if rows:
                others[cname] = _curve_at(
                    np.array([r["latency_ms"] for r in rows]),
                    np.stack([r["correct"] for r in rows]).astype(float),
                    p["latency_ms"],
                )
        if name == deployed:
            others["random routing"] = random_scores
        for oname, scores in others.items():
            if scores is None:
                row[oname] = None
                continue
            diff = mine - scores
            row[oname] = {
                "accuracy": float(scores.mean()),
                "instanas_minus_pt": 100 * float(diff.mean()),
                "ci_pt": [100 * v for v in bootstrap_interval(diff)],
            }
        comparisons.append(row)
    # ---- instance-awareness of the deployed controller
    counts = np.bincount(dep["assign"], minlength=len(ms))
    used = np.nonzero(counts)[0]
    shares = sorted(((int(a), counts[a] / n) for a in used), key=lambda t: -t[1])
    report = {
        "deployed": deployed,
        "accuracy": points[-1]["accuracy"],
        "latency_ms": points[-1]["latency_ms"],
        "controller_ms": rec.controller_ms,
        "distinct_architectures": int(len(used)),
        "architectures_over_2pct": int(sum(1 for _, s in shares if s >= 0.02)),
        "shares": [
            {"arch": a, "share": float(s), "ms": float(ms[a]), "measured_ms": rec.measured.get(a)}
            for a, s in shares[:20]
        ],
        "greedy_sampled_gap_ms": dep["gap_ms"],
        "gap_ms_per_epoch": {k: v["gap_ms"] for k, v in rec.routed.items()},
        "latency_calibration": rec.calibration,
        "points": points,
        "static_candidates": [
            {
                "name": rec.names[a],
                "latency_ms": float(ms[a]),
                "measured_ms": rec.measured.get(a),
                "table_ms": float(rec.table_ms[a]),
                "val_accuracy": float(rec.correct["val"][i].mean()),
                "accuracy": float(rec.correct["test"][i].mean()),
                "on_front": i in on_front,
            }
            for i, a in enumerate(rec.static)
        ],
        "cascades": {
            k: [{kk: vv for kk, vv in r.items() if kk != "correct"} for r in rows] for k, rows in cascades.items()
        },
        "random_routing_accuracy": float(random_scores.mean()),
        "level_oracle": [{k: v for k, v in r.items() if k != "correct"} for r in oracle],
        "comparisons": comparisons,
    }
    if rec.level is not None:
        report["levels"] = level_summary(rec.level, routed_ms[deployed])
        report["accuracy_per_level"] = {
            int(v): float(dep["correct"][rec.level == v].mean()) for v in np.unique(rec.level)
        }
    return report


def _targets(dataset: str, reports: dict) -> dict:
    """Each target of issues 15 and 20 with the measured value and whether it is met, for the
    named options' run at its deployed latency (the last compared epoch)."""
    opt = reports.get("options")
    if opt is None:
        return {}
    front = opt["comparisons"][-1]["static front"]
    gain = front["instanas_minus_pt"] if front else float("nan")
    out = {"accuracy minus static front (pt)": {"value": gain}}
    cascade = opt["comparisons"][-1].get("cascade-2")
    cascade_gain = cascade["instanas_minus_pt"] if cascade else float("nan")
    out["accuracy minus 2-stage cascade (pt)"] = {"value": cascade_gain, "met": bool(cascade_gain >= 0.0)}
    if dataset == "synthetic-difficulty":
        lv = opt["levels"]
        per = lv["mean_latency_per_level"]
        out["spearman rho"] = {"value": lv["spearman_rho"], "met": bool(lv["spearman_rho"] >= 0.5)}
        out["level 4 / level 0 latency"] = {
            "value": lv["ratio_hardest_easiest"],
            "met": bool(per[max(per)] >= 1.3 * per[min(per)]),
        }
        out["architectures with >= 2% of images"] = {
            "value": opt["architectures_over_2pct"],
            "met": opt["architectures_over_2pct"] >= 5,
        }
        out["accuracy minus static front (pt)"]["met"] = bool(gain >= 1.0)
        shuf = reports.get("shuffled")
        if shuf is not None:
            s_front = shuf["comparisons"][-1]["static front"]
            s_gain = s_front["instanas_minus_pt"] if s_front else float("nan")
            out["shuffled control minus static front (pt)"] = {"value": s_gain, "met": bool(s_gain <= 0.0)}
    else:
        out["distinct architectures"] = {
            "value": opt["distinct_architectures"],
            "met": opt["distinct_architectures"] >= 20,
        }
        out["accuracy minus static front (pt)"]["met"] = bool(gain >= 0.0)
    return out


def bench_instance_awareness(cfg, out: Path) -> dict:
    """The benchmark (see the module docstring); ``cfg`` is a :class:`~instanas_core.bench.BenchConfig`."""
    datasets = ["synthetic-difficulty"] if cfg.quick else ["synthetic-difficulty", "cifar10-jpeg"]
    if cfg.datasets is not None:
        datasets = list(cfg.datasets)
    device = resolve_device(cfg.device)
    # --quick times each child over 2 blocks instead of 3 (its budget is 10 minutes on 2 cores)
    timing = TimingConfig(min_run_time=0.02, blocks=2 if cfg.quick else 3)
    result = {"config": dataclasses.asdict(cfg), "settings": {k: list(v) for k, v in SETTINGS.items()}, "datasets": {}}
    earlier = _earlier_datasets(out, cfg, datasets)
    t0 = time.time()
    for dataset in datasets:
        t_data = time.time()
        reports = {}
        for setting in SETTINGS:
            run_cfg = awareness_config(dataset, setting, cfg.quick)
            run_cfg = apply_overrides(run_cfg, [f"experiment.device={cfg.device}", f"experiment.seed={cfg.seed}"])
            run = out / "runs" / f"{dataset}-{setting}"
            first = out / "runs" / f"{dataset}-options"
            shared = ("profile", "pretrain") if setting == "shuffled" else ("profile",)
            print(f"== {dataset}, {setting} ({run})")
            _train(run_cfg, run, first if setting != "options" else None, shared)
            table = LatencyTable.load(stage_dir(run, "profile") / "lut.json")
            epochs = _budget_epochs(run_cfg.search.epochs)
            with thread_limit(run_cfg.experiment.threads):
                rec = collect_records(
                    run_cfg,
                    run,
                    table,
                    epochs,
                    RANDOM_CHILDREN // 2 if cfg.quick else RANDOM_CHILDREN,
                    timing,
                    device,
                    progress=True,
                    timed_routed=16 if cfg.quick else 48,
                )
            reports[setting] = _judge(rec, cfg.quick, cfg.cascade_stages, cfg.budgets)
        result["datasets"][dataset] = {
            "measured": {
                "date": describe_environment(cfg.device, 1)["date"],
                "minutes": (time.time() - t_data) / 60,
                # How busy the machine was while this data set's latencies were measured (1-minute
                # load average at the end of its analysis): other processes make every timing noisier.
                "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            },
            "preset": DATASET_PRESETS[dataset],
            "quick_overrides": list(QUICK_OVERRIDES) if cfg.quick and dataset == "synthetic-difficulty" else [],
            "targets_asked": TARGETS[dataset],
            "targets": _targets(dataset, reports),
            "reports": reports,
        }
        # Written after each data set: a long benchmark stopped later keeps what it measured.
        result["pending"] = datasets[len(result["datasets"]) :]
        result["seconds"] = time.time() - t0
        # Data sets measured by an earlier invocation into the same folder and not re-run now are
        # kept, each with its own date (re-running one data set does not discard the others).
        result["datasets"] = {
            d: result["datasets"].get(d) or earlier[d]
            for d in DATASET_PRESETS
            if d in result["datasets"] or d in earlier
        }
        _write_report(result, out)
    result["summary"] = {d: v["targets"] for d, v in result["datasets"].items()}
    return result


def _earlier_datasets(out: Path, cfg, datasets: list[str]) -> dict:
    """The data sets of an earlier full (not ``--quick``) report in ``out`` that this run does not
    re-measure, each labelled with when it was measured."""
    path = out / "instance-awareness.json"
    if cfg.quick or not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if old.get("config", {}).get("quick"):
        return {}
    kept = {}
    for name, entry in old.get("datasets", {}).items():
        if name not in datasets:
            entry.setdefault(
                "measured", {"date": old.get("machine", {}).get("date"), "minutes": None, "load_average": None}
            )
            kept[name] = entry
    return kept


def _write_report(result: dict, out: Path) -> None:
    from .plots.awareness import awareness_markdown, plot_awareness

    result["machine"] = describe_environment(result["config"]["device"], 1)
    claim(out / "instance-awareness.json").write_text(json.dumps(result, indent=1, default=_json))
    claim(out / "instance-awareness.md").write_text(awareness_markdown(result))
    plot_awareness(result, claim(out / "instance-awareness.png"))


def _json(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return str(v)
