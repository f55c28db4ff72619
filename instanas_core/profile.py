"""The profiling stage: build the latency look-up table and check it against real latency
(paper §4.1, "Module Latency Profiling", Figure 4).

``run_profile(cfg, out_dir)`` writes

* ``lut.json`` -- the table (:class:`~instanas_core.latency.LatencyTable`) with its metadata;
* with ``cfg.children > 0``: ``correlation.csv`` (one row per sampled child: ``estimated_ms``,
  ``raw_estimate_ms``, ``measured_ms``, ``repeat_ms``, ``split``, ...) and ``summary.json``.

Children are split: the first ``fit`` share calibrates the table (see
:mod:`instanas_core.latency`), the rest (``split == "eval"``) judge it. The summary reports the
judged metrics and the machine's own noise floor (how often two measurements of the same child
agree within +-10%).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .config import ProfileConfig
from .controller import build_controller
from .env import describe_environment
from .latency import (
    LatencyTable,
    correlation_summary,
    fit_calibration,
    measure_children,
    policy_features,
    profile_lookup_table,
    sample_children,
    thread_limit,
)
from .meta_graph import MetaGraph
from .ownership import claim, open_output_folder
from .search_space import SearchSpace, make_search_space

__all__ = [
    "ProfileConfig",
    "run_profile",
    "profile_space",
    "check_table",
    "format_summary",
    "load_profile_panel",
    "stack_panels",
]


def run_profile(cfg: ProfileConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Profile the paper's space at ``cfg``'s resolution and width (:func:`profile_space`);
    returns the summary."""
    space = make_search_space(cfg.resolution, cfg.width_mult, cfg.num_classes)
    return profile_space(space, cfg, out_dir, progress)[1]


def profile_space(
    space: SearchSpace, cfg: ProfileConfig, out_dir: str | Path, progress: bool = True
) -> tuple[LatencyTable, dict]:
    """The one profiler (§4.1): time every (cell, module) of ``space`` at batch 1
    (:func:`~instanas_core.latency.profile_lookup_table`); with ``cfg.children``, time that many
    sampled children end to end in ``cfg.passes`` interleaved passes, fit the affine calibration on
    the first ``fit_fraction`` and judge it on the rest. Writes ``lut.json``, ``summary.json`` (and
    ``correlation.csv``) into ``out_dir``; a stage's run table (``RUN/profile``) and ``instanas
    profile`` both come from here. Returns the table and the summary."""
    out = open_output_folder(out_dir, "profile")
    # Refuse to write over files of someone else's before the minutes of timing, not after.
    for name in ("lut.json", "summary.json") + (("correlation.csv",) if cfg.children else ()):
        claim(out / name)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = MetaGraph(space).to(device).eval()
    controller = build_controller(graph).to(device).eval()
    table = profile_lookup_table(graph, controller, cfg.threads, cfg.timing, device, progress)
    summary: dict = {
        "config": dataclasses.asdict(cfg),
        "space": space.to_dict(),
        "machine": {k: table.meta[k] for k in ("device_name", "cpu_model", "torch", "threads", "date")},
        "all_modules_ms": float(table.raw_estimate(torch.ones(1, graph.num_cells, graph.num_modules))[0]),
    }
    if cfg.children:
        policies = sample_children(graph, cfg.children, cfg.seed)
        measured = _measure(graph, controller, policies, cfg, device, cfg.passes, progress, summary)  # (N, 2)
        n_fit = max(4, int(round(cfg.fit_fraction * cfg.children)))
        table.calibration = fit_calibration(table, policies[:n_fit], measured[:n_fit, 0])
        summary.update(_judge(table, policies, measured, n_fit, out / "correlation.csv"))
        summary["all_children"] = correlation_summary(table.estimate(policies).numpy(), measured[:, 0], measured[:, 1])
        summary["calibration"] = table.calibration
        summary["measurement"] = (
            f"each child's minimum over {cfg.passes // 2} of {cfg.passes} timing passes; the repeat (noise floor) "
            f"its minimum over the other {cfg.passes // 2}"
        )
    table.save(out / "lut.json")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return table, summary


def check_table(
    table: LatencyTable,
    cfg: ProfileConfig,
    children: int,
    out_dir: str | Path,
    progress: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Judge a finished table on ``children`` freshly sampled children (seed ``cfg.seed + 1``, not
    the calibration's), each timed end to end with the controller in ``cfg.passes`` passes, with
    the same measurement and files as :func:`profile_space` (every child judged, none fitted).
    Writes ``correlation.csv`` and ``summary.json`` (with ``extra``) into ``out_dir``; returns the
    summary."""
    out = open_output_folder(out_dir, "profile")
    for name in ("correlation.csv", "summary.json"):
        claim(out / name)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = MetaGraph(table.space).to(device).eval()
    controller = build_controller(graph).to(device).eval()
    policies = sample_children(graph, children, cfg.seed + 1)  # (N, T, K)
    timing: dict = {}
    measured = _measure(graph, controller, policies, cfg, device, cfg.passes, progress, timing)  # (N, 2)
    summary = {
        **(extra or {}),
        **timing,
        "config": {"resolution": table.space.resolution, "width_mult": table.space.width_mult},
        "space": table.space.to_dict(),
        "machine": describe_environment(device, cfg.threads),
        **_judge(table, policies, measured, 0, out / "correlation.csv"),
        "calibration": table.calibration,
        "mean_modules_run": float(np.mean(policy_features(table.space, policies)[:, 0])),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _measure(
    graph, controller, policies, cfg: ProfileConfig, device, passes: int, progress: bool, summary: dict
) -> np.ndarray:
    """(N, 2): each child's measured latency (minimum over the even passes) and its repeat (the
    minimum over the odd ones, the noise floor). Records in ``summary["load"]`` the machine's
    1-minute load average before and after, so that a figure can say when it was timed under load
    (other processes on the cores make every measurement noisier and the correlation lower)."""
    before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with thread_limit(cfg.threads):
        times = measure_children(graph, policies, controller, cfg.threads, cfg.timing, device, passes, progress)
    after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    summary["load"] = {"load_average_1min": max(before, after), "cpu_count": os.cpu_count(), "threads": cfg.threads}
    return np.stack([times[:, 0::2].min(1), times[:, 1::2].min(1)], axis=1)


def load_note(summary: Mapping[str, Any]) -> str:
    """How loaded the machine was while the children were timed: "" when it was quiet (load at
    most the timing's own threads + 0.5), else a warning for the figure."""
    load = summary.get("load")
    if not load or not np.isfinite(load["load_average_1min"]):
        return ""
    if load["load_average_1min"] <= load["threads"] + 0.5:
        return f"timed on a quiet machine (load {load['load_average_1min']:.1f})"
    return f"TIMED UNDER LOAD ({load['load_average_1min']:.1f} on {load['cpu_count']} cores):\nr is lower than on a quiet machine"


def _judge(table: LatencyTable, policies, measured: np.ndarray, n_fit: int, csv_path: Path) -> dict:
    """Write ``correlation.csv`` and return the summary entries of the children after ``n_fit``."""
    est, raw = table.estimate(policies).numpy(), table.raw_estimate(policies).numpy()
    _write_correlation(csv_path, policies, table, est, raw, measured, n_fit)
    ev = slice(n_fit, None)
    return {
        "eval": correlation_summary(est[ev], measured[ev, 0], measured[ev, 1]),
        "eval_raw_sum": correlation_summary(raw[ev], measured[ev, 0]),
    }


def _write_correlation(path: Path, policies, table: LatencyTable, est, raw, measured, n_fit: int) -> None:
    feats = policy_features(table.space, policies)
    macs = table.macs(policies).numpy()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "child",
                "split",
                "estimated_ms",
                "raw_estimate_ms",
                "measured_ms",
                "repeat_ms",
                "modules_run",
                "residual_cells",
                "macs",
                "policy",
            ]
        )
        for i in range(len(est)):
            bits = "".join(str(int(b)) for b in policies[i].flatten().tolist())
            w.writerow(
                [
                    i,
                    "fit" if i < n_fit else "eval",
                    f"{est[i]:.5f}",
                    f"{raw[i]:.5f}",
                    f"{measured[i, 0]:.5f}",
                    f"{measured[i, 1]:.5f}",
                    int(feats[i, 0]),
                    int(feats[i, 1]),
                    int(macs[i]),
                    bits,
                ]
            )


def format_summary(summary: dict) -> str:
    cfg = summary["config"]
    m = summary["machine"]
    lines = [
        f"Latency look-up table: {cfg['resolution']} px, width {cfg['width_mult']}, "
        f"{m['threads']} thread(s), {cfg['device']} ({m['device_name']}), torch {m['torch']}",
        f"  all-modules path (raw sum): {summary['all_modules_ms']:.3f} ms",
    ]
    if "eval" in summary:
        e, r, c = summary["eval"], summary["eval_raw_sum"], summary["calibration"]
        lines += [
            f"  calibration fitted on {c['fit_children']} children, judged on {e['n']} others:",
            f"    Pearson r {e['pearson_r']:.4f}   Spearman rho {e['spearman_rho']:.4f}   "
            f"MAPE {e['mape_pct']:.2f}%   within +-10%: {100 * e['within_10pct']:.1f}%",
            f"    noise floor (two measurements of the same child within +-10%): {100 * e['repeat_within_10pct']:.1f}%",
            f"    plain sum without calibration: r {r['pearson_r']:.4f}, MAPE {r['mape_pct']:.2f}%, "
            f"within +-10%: {100 * r['within_10pct']:.1f}%",
        ]
    return "\n".join(lines)


# ---- Figure 4 panels from profile folders ------------------------------------------------------------
def load_profile_panel(folder: str | Path) -> dict:
    """One Figure 4 panel (§4.1) from a profile folder (:func:`run_profile`'s, or the book's check
    of a run's table, ``RUN/profile/check``): per child ``estimated``, ``measured`` and ``split``;
    the judged ``r`` and ``within10``; a ``title``; the paper's ``paper_r`` at that resolution."""
    from .paper_numbers import load_paper_claims

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    if "eval" not in summary:
        raise ValueError(f"{folder} was profiled without children (children=0): nothing to correlate.")
    with (folder / "correlation.csv").open() as f:
        rows = list(csv.DictReader(f))
    res, width = summary["config"]["resolution"], summary["config"]["width_mult"]
    paper = [c.value for c in load_paper_claims() if c.metric == "correlation" and c.subject.endswith(f"{res} px")]
    return {
        "estimated": np.array([float(r["estimated_ms"]) for r in rows]),
        "measured": np.array([float(r["measured_ms"]) for r in rows]),
        "split": np.array([r["split"] for r in rows]),
        "r": summary["eval"]["pearson_r"],
        "within10": summary["eval"]["within_10pct"],
        "resolution": res,
        "title": f"{res} px, width {width}" + (": this run's table" if folder.name == "check" else ": paper's space"),
        "paper_r": paper[0] if paper else None,
        "load_note": load_note(summary),
        "summary": summary,
    }


def stack_panels(panels: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Figure 4 panels as the per-panel lists :func:`~instanas_core.plots.plot_latency_correlation` takes."""
    keys = ("estimated", "measured", "r", "within10", "resolution", "split", "paper_r")
    out = {k: [p[k] for p in panels] for k in keys}
    out["panel_titles"] = [p["title"] for p in panels]
    out["load_notes"] = [p.get("load_note", "") for p in panels]
    return out
