"""Evaluation of a trained controller + meta-graph (paper §4.2 Tables 1-3, §4.3 Figures 1, 7, 8).

Every sample of the chosen split is routed through its greedy policy. Written to
``RUN/evaluate/``:

* ``summary.json``: accuracy; per-sample latency mean +- std from the table (the controller
  included, as in the paper) and the *real routed latency* (controller, then the extracted
  child, batch 1, timed) on a seeded sample of ``measure_samples`` images; the number of
  distinct architectures; each cell's module selection rates; with difficulty levels
  (``synthetic-difficulty``) the correlation between level and assigned latency;
* ``records.csv``: one row per sample (index, label, prediction, correct, latency estimate,
  measured latency where timed, difficulty, policy bits);
* ``records.npz``: the same plus the controller's probabilities (N, T, K), for the notebooks;
* ``selection_rates.csv``: (cell, module) selection rates.

On the test split it also appends ``InstaNAS-<variant>`` rows to ``RUN/results.csv``
(:mod:`instanas_core.results`): one with the table estimate (``latency_kind="estimated"``) and,
when samples were timed, one with the measured routed latency (``"measured"``); parameters and
MACs are those of each sample's child network plus the controller, averaged over samples.

Evaluation is not distributed: under torchrun rank 0 evaluates while the other ranks wait
(:func:`~instanas_core.distributed.on_main`). A checkpoint made with another latency table than
``RUN/profile/lut.json`` holds now is refused (its ``lut_hash``).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..config import Config, config_from_dict
from ..distributed import distributed_session, on_main, single_process
from ..flops import count_macs, count_params
from ..latency import TimingConfig, thread_limit
from ..ownership import claim
from ..policy import enforce_at_least_one
from ..results import ResultRow, append_result
from ..reward import reference_latencies
from ..rundir import RunDirError, load_checkpoint, load_json, save_json, seed_everything, stage_dir
from ..train import (
    begin_stage,
    build_models,
    build_split,
    check_latency_table_hash,
    ensure_latency_table,
    infer,
    make_loader,
    measure_routed_latency,
    policy_bits,
)
from .variants import resolve_variant

__all__ = ["run_evaluate", "load_trained", "difficulty_correlation", "instanas_costs", "format_evaluate_summary"]


def load_trained(cfg: Config, run_dir: str | Path, device: torch.device, source: str, variant: str):
    """(meta-graph, controller, description) of ``RUN/<source>`` (a fine-tune folder's
    ``last.pt``) or, for ``source="search"``, of ``variant``'s search checkpoint."""
    meta_graph, controller = build_models(cfg.experiment, device, seed=cfg.experiment.seed)
    src = stage_dir(run_dir, source)
    if source == "search":
        picked = resolve_variant(src, variant)
        ckpt = load_checkpoint(src / picked["checkpoint"], map_location=device)
        graph_sd = ckpt.get("meta_graph") or load_checkpoint(src / "last.pt", map_location=device)["meta_graph"]
        what = f"search variant {variant} (epoch {picked['epoch']})"
    else:
        path = src / "last.pt"
        if not path.is_file():
            raise RunDirError(f"{path} does not exist: run `instanas finetune` first (or evaluate source=search).")
        ckpt = load_checkpoint(path, map_location=device)
        graph_sd = ckpt["meta_graph"]
        what = f"{source} (variant {ckpt.get('variant', '?')}, epoch {ckpt['epoch']})"
    if ckpt.get("space_hash") != meta_graph.space.space_hash():
        raise RunDirError(f"the checkpoint in {src} belongs to another search space than this run's.")
    lut = stage_dir(run_dir, "profile") / "lut.json"
    if lut.is_file():
        check_latency_table_hash(ckpt, lut, f"the checkpoint of {what}")
    meta_graph.load_state_dict(graph_sd)
    controller.load_state_dict(ckpt["controller"])
    return meta_graph.eval(), controller.eval(), what


def difficulty_correlation(difficulty: np.ndarray, latency: np.ndarray) -> dict:
    """Pearson and Spearman correlation between difficulty level and assigned latency, and the
    mean latency per level (NaN correlations when the latency does not vary)."""
    from scipy import stats

    d, z = np.asarray(difficulty, float), np.asarray(latency, float)
    constant = np.allclose(z, z[0]) or np.allclose(d, d[0])
    return {
        "pearson_r": float("nan") if constant else float(stats.pearsonr(d, z)[0]),
        "spearman_rho": float("nan") if constant else float(stats.spearmanr(d, z)[0]),
        "mean_latency_per_level": {int(level): float(z[d == level].mean()) for level in np.unique(d)},
    }


def run_evaluate(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    results_dir: str | Path | None = None,
    out_name: str | None = None,
) -> dict:
    """Evaluate ``cfg.evaluate.source`` on ``cfg.evaluate.split``; returns the summary. The
    stage is short and is simply redone with ``resume``. Test rows go to ``results_dir``'s
    ``results.csv`` (default: the run's own); ``out_name`` (a path inside the run folder) replaces
    ``evaluate.out_dir`` as the output folder (a re-evaluation nests its folders)."""
    with distributed_session(cfg.experiment.device) as dist:
        # One process evaluates: rank 0 (its device), the others wait for its summary.
        return on_main(
            dist,
            lambda: _evaluate(cfg, run_dir, overwrite, progress and dist.is_main, dist.device, results_dir, out_name),
        )


def _evaluate(
    cfg: Config,
    run_dir: str | Path,
    overwrite: bool,
    progress: bool,
    device: torch.device,
    results_dir: str | Path | None = None,
    out_name: str | None = None,
) -> dict:
    exp, evaluate_cfg = cfg.experiment, cfg.evaluate
    # Evaluation is cheap and has no resume state: re-running it replaces its outputs.
    with (
        begin_stage(
            cfg,
            run_dir,
            "evaluate",
            resume=True,
            overwrite=overwrite,
            out_name=out_name or evaluate_cfg.out_dir,
            dist=single_process(device),
        ) as start,
        thread_limit(exp.threads),
    ):
        table, _ = ensure_latency_table(cfg, run_dir, device, progress)
        meta_graph, controller, what = load_trained(cfg, run_dir, device, evaluate_cfg.source, evaluate_cfg.variant)
        variant = _source_variant(cfg, run_dir)  # read (and checked) before the work, not after
        t0 = time.time()
        seed_everything(exp.seed)
        has_difficulty = exp.dataset == "synthetic-difficulty"
        fields = ("image", "label") + (("difficulty",) if has_difficulty else ()) + ("index",)
        data = build_split(exp, evaluate_cfg.split, augment=False, return_index=True, return_difficulty=has_difficulty)
        loader = make_loader(data, evaluate_cfg.batch_size, False, 0, exp, device, train=False)
        res = infer(
            meta_graph,
            loader,
            device,
            fields,
            controller=controller,
            channels_last=exp.use_channels_last,
            keep_probs=True,
        )
        policy = res["policy"].float()  # (N, T, K)
        correct = (res["pred"] == res["label"]).numpy()
        latency = table.estimate(policy).numpy()  # (N,)
        raw = table.raw_estimate(policy).numpy()
        n = len(correct)

        # Real routed latency on a seeded sample of images (distinct policies timed once).
        k = min(evaluate_cfg.measure_samples, n)
        measured = np.full(n, np.nan)
        if k:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(exp.seed))[:k]
            timing = TimingConfig(
                min_run_time=evaluate_cfg.measure_min_run_time, blocks=evaluate_cfg.measure_blocks, warmup=2
            )
            measured[idx.numpy()] = measure_routed_latency(
                meta_graph, controller, policy[idx], timing, device, evaluate_cfg.measure_threads
            )
        timed = measured[~np.isnan(measured)]

        flat = res["policy"].reshape(n, -1)
        distinct = int(torch.unique(flat, dim=0).shape[0])
        rates = res["policy"].float().mean(0).numpy()  # (T, K)
        space = meta_graph.space
        summary = {
            "stage": "evaluate",
            "model": what,
            "dataset": exp.dataset,
            "split": evaluate_cfg.split,
            "n": n,
            "accuracy": float(correct.mean()),
            "error_pct": float(100 * (1 - correct.mean())),
            "latency_estimate_ms": {"mean": float(latency.mean()), "std": float(latency.std())},
            "latency_raw_sum_ms": {"mean": float(raw.mean()), "std": float(raw.std())},
            "latency_measured_ms": {
                "mean": float(timed.mean()) if len(timed) else float("nan"),
                "std": float(timed.std()) if len(timed) else float("nan"),
                "samples": int(len(timed)),
                "threads": evaluate_cfg.measure_threads,
                "device": str(device),
            },
            "latency_estimate_on_measured_ms": float(latency[~np.isnan(measured)].mean())
            if len(timed)
            else float("nan"),
            "distinct_policies": distinct,
            "modules_per_sample": float(flat.sum(1).float().mean()),
            "selection_rates": {"modules": list(space.modules), "cells": rates.tolist()},
            "reference_latencies": reference_latencies(table),
        }
        if has_difficulty:
            summary["difficulty"] = difficulty_correlation(res["difficulty"].numpy(), latency)
            summary["difficulty"]["accuracy_per_level"] = {
                int(level): float(correct[res["difficulty"].numpy() == level].mean())
                for level in np.unique(res["difficulty"].numpy())
            }
        _write_records(start.out, res, correct, latency, measured, has_difficulty)
        _write_rates(start.out / "selection_rates.csv", rates, space.modules)
        costs = instanas_costs(meta_graph, controller, table, policy, device)
        summary.update({"params_mean": float(costs["params"].mean()), "macs_mean": float(costs["macs"].mean())})
        if evaluate_cfg.split == "test":  # reported numbers only; validation runs are for selection
            summary["results_appended"] = _append_results(
                cfg, results_dir or run_dir, summary, costs, str(device), variant
            )
        summary["seconds"] = time.time() - t0
        save_json(start.out / "summary.json", summary)
    return summary


def instanas_costs(meta_graph, controller, table, policy: torch.Tensor, device) -> dict:
    """Per-sample parameters and MACs (N,) of the routed network: stem, head and controller plus
    the selected modules' table entries (``policy``: (N, T, K))."""
    space = meta_graph.space
    res = space.resolution
    last = space.cells()[-1]
    fixed_macs = (
        count_macs(meta_graph.stem, (1, 3, res, res), device)
        + count_macs(meta_graph.head, (1, last.out_channels, last.out_size, last.out_size), device)
        + count_macs(controller, (1, 3, res, res), device)
    )
    fixed_params = count_params(meta_graph.stem) + count_params(meta_graph.head) + count_params(controller)
    p = enforce_at_least_one(policy.detach().cpu(), space).double()  # (N, T, K)
    cell_macs = torch.as_tensor(table.cell_module_macs, dtype=torch.float64)  # (T, K)
    cell_params = torch.as_tensor(table.cell_module_params, dtype=torch.float64)
    return {
        "macs": (p * cell_macs).flatten(1).sum(1).numpy() + fixed_macs,
        "params": (p * cell_params).flatten(1).sum(1).numpy() + fixed_params,
    }


def _source_variant(cfg: Config, run_dir) -> str:
    """The variant letter of the evaluated model: the fine-tuning's (from its saved config.json)
    or, for ``source=search``, ``evaluate.variant``."""
    evaluate_cfg = cfg.evaluate
    if evaluate_cfg.source == "search":
        return evaluate_cfg.variant
    saved = stage_dir(run_dir, evaluate_cfg.source) / "config.json"
    return config_from_dict(load_json(saved), source=saved).finetune.variant if saved.is_file() else "?"


def _append_results(cfg: Config, run_dir, summary: dict, costs: dict, device: str, variant: str) -> list[str]:
    """``InstaNAS-<variant>`` rows: the table estimate and, if timed, the measured latency."""
    evaluate_cfg = cfg.evaluate
    name = f"InstaNAS-{variant}"
    common = dict(
        name=name,
        dataset=summary["dataset"],
        preset=cfg.preset,
        seed=cfg.experiment.seed,
        accuracy=100.0 * summary["accuracy"],
        params=int(round(float(costs["params"].mean()))),
        flops=int(round(float(costs["macs"].mean()))),
        device=device,
    )
    extra = {
        "stage": "evaluate",
        "source": evaluate_cfg.source,
        "variant": variant,
        "model": summary["model"],
        "split": evaluate_cfg.split,
        "test_n": summary["n"],
        "distinct_policies": summary["distinct_policies"],
        "macs_std": float(costs["macs"].std()),
        "params_std": float(costs["params"].std()),
        "latency_std": "over images",
        "controller_included": True,
    }
    est = summary["latency_estimate_ms"]
    append_result(
        run_dir,
        ResultRow(
            **common,
            latency_mean_ms=est["mean"],
            latency_std_ms=est["std"],
            latency_kind="estimated",
            extra={**extra, "latency_images": summary["n"]},
        ),
    )
    kinds = ["estimated"]
    m = summary["latency_measured_ms"]
    if m["samples"]:
        append_result(
            run_dir,
            ResultRow(
                **common,
                latency_mean_ms=m["mean"],
                latency_std_ms=m["std"],
                latency_kind="measured",
                extra={**extra, "latency_images": m["samples"], "threads": m["threads"]},
            ),
        )
        kinds.append("measured")
    return kinds


def _write_records(out: Path, res: dict, correct, latency, measured, has_difficulty: bool) -> None:
    bits = policy_bits(res["policy"])
    cols = ["index", "label", "prediction", "correct", "latency_ms", "measured_latency_ms"]
    cols += ["difficulty"] if has_difficulty else []
    cols += ["policy"]
    # Recorded in the stage folder's manifest, so that --overwrite (and the book re-evaluating a
    # model trained again) may replace them: begin_stage already made this folder the stage's own.
    with claim(out / "records.csv", force=True).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(len(correct)):
            row = [
                int(res["index"][i]),
                int(res["label"][i]),
                int(res["pred"][i]),
                int(correct[i]),
                f"{latency[i]:.5f}",
            ]
            row.append("" if math.isnan(measured[i]) else f"{measured[i]:.5f}")
            if has_difficulty:
                row.append(int(res["difficulty"][i]))
            row.append(bits[i])
            w.writerow(row)
    arrays = {
        "index": res["index"].numpy(),
        "label": res["label"].numpy(),
        "prediction": res["pred"].numpy(),
        "correct": np.asarray(correct, bool),
        "latency_ms": np.asarray(latency, np.float32),
        "measured_latency_ms": np.asarray(measured, np.float32),
        "policy": res["policy"].numpy(),
        "probs": res["probs"].numpy().astype(np.float32),
    }
    if has_difficulty:
        arrays["difficulty"] = res["difficulty"].numpy()
    np.savez_compressed(claim(out / "records.npz", force=True), **arrays)


def _write_rates(path: Path, rates: np.ndarray, modules) -> None:
    with claim(path, force=True).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", *modules])
        for t, row in enumerate(rates):
            w.writerow([t, *(f"{v:.4f}" for v in row)])


def format_evaluate_summary(s: dict) -> str:
    m, e = s["latency_measured_ms"], s["latency_estimate_ms"]
    text = (
        f"evaluate: {s['model']} on {s['dataset']} {s['split']} (n={s['n']}): accuracy {s['accuracy']:.4f}, "
        f"latency {e['mean']:.3f} +- {e['std']:.3f} ms (table), {m['mean']:.3f} +- {m['std']:.3f} ms "
        f"(measured, {m['samples']} samples), {s['distinct_policies']} distinct architectures"
    )
    if "difficulty" in s:
        text += f", difficulty-latency Spearman {s['difficulty']['spearman_rho']:.3f}"
    return text
