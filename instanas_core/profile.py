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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .controller import build_controller
from .latency import (
    LatencyTable,
    TimingConfig,
    correlation_summary,
    fit_calibration,
    measure_children,
    policy_features,
    profile_lookup_table,
    sample_children,
)
from .meta_graph import build_meta_graph
from .ownership import claim, open_output_folder
from .search_space import RESOLUTIONS
from .validation import (
    check_device,
    check_field_types,
    check_finite_floats,
    check_seed,
    check_width_mult,
    is_finite_number,
)

__all__ = ["ProfileConfig", "run_profile", "format_summary"]


@dataclass(frozen=True)
class ProfileConfig:
    resolution: int = 32
    width_mult: float = 1.0
    num_classes: int = 10
    threads: int = 1
    children: int = 0
    fit_fraction: float = 0.25  # share of children used to fit the calibration
    device: str = "cpu"
    seed: int = 0
    min_run_time: float = 0.05
    blocks: int = 5
    # Timing passes over all children (an even number). The measured latency of a child is its
    # minimum over the even-numbered passes, the repeat (the noise floor) its minimum over the
    # odd-numbered ones: interference only ever adds time, and interleaving the two halves in
    # time spreads slow drift over both alike. 2 gives one plain measurement and one repeat.
    passes: int = 2

    def __post_init__(self) -> None:
        check_seed(self, "seed")  # before the type check, so that a float seed hears the range
        check_field_types(self)  # then the range checks below compare numbers
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}.")
        if self.children < 0:
            raise ValueError(f"children must be >= 0, got {self.children}.")
        if self.children and self.children < 8:
            raise ValueError(f"children must be 0 or at least 8 (to fit and judge a calibration), got {self.children}.")
        if not 0.0 < self.fit_fraction < 1.0:
            raise ValueError(f"fit_fraction must lie strictly between 0 and 1, got {self.fit_fraction}.")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}.")
        if self.passes < 2 or self.passes % 2:
            raise ValueError(f"passes must be an even number of at least 2 (measurement and repeat), got {self.passes}.")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}.")
        if self.blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {self.blocks}.")
        if not (is_finite_number(self.min_run_time) and self.min_run_time > 0):
            raise ValueError(f"min_run_time must be a positive, finite number of seconds, got {self.min_run_time!r}.")
        check_width_mult(self)
        check_device(self)
        check_finite_floats(self)

    @property
    def timing(self) -> TimingConfig:
        return TimingConfig(min_run_time=self.min_run_time, blocks=self.blocks)


def run_profile(cfg: ProfileConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Profile, optionally check on children, write the artifacts; returns the summary."""
    out = open_output_folder(out_dir, "profile")
    # Refuse to write over files of someone else's before the minutes of timing, not after.
    for name in ("lut.json", "summary.json") + (("correlation.csv",) if cfg.children else ()):
        claim(out / name)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = build_meta_graph(cfg.resolution, cfg.width_mult, cfg.num_classes).to(device).eval()
    controller = build_controller(graph).to(device).eval()
    table = profile_lookup_table(graph, controller, cfg.threads, cfg.timing, device, progress)
    summary: dict = {
        "config": dataclasses.asdict(cfg),
        "machine": {k: table.meta[k] for k in ("device_name", "cpu_model", "torch", "threads", "date")},
        "all_modules_ms": float(table.raw_estimate(torch.ones(1, graph.num_cells, graph.num_modules))[0]),
    }
    if cfg.children:
        policies = sample_children(graph, cfg.children, cfg.seed)
        passes = measure_children(graph, policies, controller, cfg.threads, cfg.timing, device, cfg.passes, progress)
        # (N, 2): measured, repeat
        measured = np.stack([passes[:, 0::2].min(1), passes[:, 1::2].min(1)], axis=1)
        n_fit = max(4, int(round(cfg.fit_fraction * cfg.children)))
        table.calibration = fit_calibration(table, policies[:n_fit], measured[:n_fit, 0])
        est = table.estimate(policies).numpy()
        raw = table.raw_estimate(policies).numpy()
        _write_correlation(out / "correlation.csv", policies, table, est, raw, measured, n_fit)
        ev = slice(n_fit, None)
        summary["eval"] = correlation_summary(est[ev], measured[ev, 0], measured[ev, 1])
        summary["eval_raw_sum"] = correlation_summary(raw[ev], measured[ev, 0])
        summary["all_children"] = correlation_summary(est, measured[:, 0], measured[:, 1])
        summary["calibration"] = table.calibration
        summary["measurement"] = (
            f"each child's minimum over {cfg.passes // 2} of {cfg.passes} timing passes; the repeat (noise floor) "
            f"its minimum over the other {cfg.passes // 2}"
        )
    table.save(out / "lut.json")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _write_correlation(path: Path, policies, table: LatencyTable, est, raw, measured, n_fit: int) -> None:
    feats = policy_features(table.space, policies)
    macs = table.macs(policies).numpy()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["child", "split", "estimated_ms", "raw_estimate_ms", "measured_ms", "repeat_ms",
             "modules_run", "residual_cells", "macs", "policy"]
        )
        for i in range(len(est)):
            bits = "".join(str(int(b)) for b in policies[i].flatten().tolist())
            w.writerow(
                [i, "fit" if i < n_fit else "eval", f"{est[i]:.5f}", f"{raw[i]:.5f}", f"{measured[i, 0]:.5f}",
                 f"{measured[i, 1]:.5f}", int(feats[i, 0]), int(feats[i, 1]), int(macs[i]), bits]
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
            f"    noise floor (two measurements of the same child within +-10%): "
            f"{100 * e['repeat_within_10pct']:.1f}%",
            f"    plain sum without calibration: r {r['pearson_r']:.4f}, MAPE {r['mape_pct']:.2f}%, "
            f"within +-10%: {100 * r['within_10pct']:.1f}%",
        ]
    return "\n".join(lines)
