"""What the training stages left in the run folder (notebooks 02-05 and 07), as the rows, curves and
points that :mod:`instanas_core.plots` and :meth:`~instanas_core.book.context.BookContext.table`
take: per-epoch metrics of pre-training (§3.2) and search (§3.3), the picked variants A-E (§3.1 c)
and their evaluations, the baselines of Tables 1-3 and OneshotNAS's samples (Figure 6). Which
variants and baselines a preset trains is its :class:`~instanas_core.presets.BookSettings`'."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..presets import book_settings
from .errors import BookError
from .preset import book_preset
from .profiling import load_run_table
from .tables import paper_table_for

__all__ = [
    "read_metrics",
    "melt",
    "train_val_curves",
    "stage_rows",
    "search_rows",
    "read_variants",
    "search_tradeoff_points",
    "variant_pick_rows",
    "greedy_latencies",
    "book_variants",
    "variant_rows",
    "variant_points",
    "BOOK_COMPARATORS",
    "book_baselines",
    "baseline_rows",
    "load_oneshot_samples",
]


def read_metrics(run_dir: str | Path, stage: str) -> list[dict]:
    """``RUN/<stage>/metrics.csv`` as rows of floats (an empty field is NaN)."""
    path = Path(run_dir) / stage / "metrics.csv"
    if not path.is_file():
        raise BookError(f"{path} does not exist: the {stage} stage has not run in {run_dir}.")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in rows]


def melt(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str], value: str, key: str, x: str = "epoch"
) -> list[dict]:
    """Wide to long: one row per (row, column) with ``x``, ``key`` (the column's label from
    ``columns``) and ``value``, for :func:`~instanas_core.plots.plot_training_curves`'s ``hue``."""
    return [{x: r[x], key: label, value: r[col]} for col, label in columns.items() for r in rows if col in r]


def train_val_curves(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Pre-training (or fine-tuning) metrics as ``{epoch, split, loss, accuracy (%)}`` rows."""
    out = []
    for split in ("train", "val"):
        for r in rows:
            out.append(
                {
                    "epoch": r["epoch"],
                    "split": split,
                    "loss": r[f"{split}_loss"],
                    "accuracy": 100 * r[f"{split}_accuracy"],
                }
            )
    return out


def stage_rows(summaries: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """One row per stage summary: epochs done, seconds of the call that made or loaded it."""
    rows = []
    for name, s in summaries.items():
        rows.append(
            {
                "stage": name,
                "epochs": f"{s.get('epochs_done', '')}/{s.get('epochs', '')}",
                "finished": s.get("finished", True),
                "seconds_of_the_call_that_ran_it": round(
                    float(s.get("seconds_this_call", s.get("seconds", 0.0)) or 0.0), 1
                ),
            }
        )
    return rows


def search_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The search per epoch: bounds, validation accuracy (%), latency (ms), reward, diversity."""
    keep = {
        "epoch": "epoch",
        "upper_bound": "U_t_ms",
        "lower_bound": "L_t_ms",
        "val_accuracy": "val_accuracy_pct",
        "mean_latency_ms": "val_latency_ms",
        "latency_std_ms": "val_latency_std_ms",
        "measured_latency_ms": "measured_ms",
        "val_reward": "val_reward",
        "ctrl_reward": "sampled_reward",
        "val_distinct_policies": "distinct_architectures",
        "val_modules_per_sample": "modules_per_image",
    }
    out = []
    for r in rows:
        row = {new: r[old] for old, new in keep.items()}
        row["epoch"], row["distinct_architectures"] = int(row["epoch"]), int(row["distinct_architectures"])
        row["val_accuracy_pct"] = 100 * row["val_accuracy_pct"]
        out.append(row)
    return out


def read_variants(run_dir: str | Path) -> dict:
    """``RUN/search/variants.json`` (picked now from the search's checkpoints when missing)."""
    from ..stages import pick_variants

    path = Path(run_dir) / "search" / "variants.json"
    if not path.is_file():
        pick_variants(path.parent)
    return json.loads(path.read_text())


def search_tradeoff_points(rows: Sequence[Mapping[str, Any]], variants: Mapping[str, Any] | None = None) -> list[dict]:
    """Validation accuracy (%) against mean table latency per search epoch, and the picked
    variants (A-E) as a second group, for :func:`~instanas_core.plots.plot_accuracy_vs_latency`."""
    by_epoch: dict[int, list[str]] = {}
    for letter, v in (variants or {}).items():
        by_epoch.setdefault(int(v["epoch"]), []).append(letter)
    points = [  # a picked epoch is named once, by its letters
        {
            "name": "" if int(r["epoch"]) in by_epoch else f"e{int(r['epoch'])}",
            "group": "search epochs (validation)",
            "latency_ms": r["mean_latency_ms"],
            "latency_std_ms": r["latency_std_ms"],
            "accuracy": 100 * r["val_accuracy"],
        }
        for r in rows
    ]
    for epoch, letters in sorted(by_epoch.items()):
        r = next(r for r in rows if int(r["epoch"]) == epoch)
        points.append(
            {
                "name": f"{''.join(letters)} (e{epoch})",
                "group": "picked variants",
                "latency_ms": r["mean_latency_ms"],
                "latency_std_ms": 0.0,
                "accuracy": 100 * r["val_accuracy"],
            }
        )
    return points


def variant_pick_rows(picked: Mapping[str, Any]) -> list[dict]:
    """``variants.json``'s picks as rows: letter, search epoch, validation accuracy and latency."""
    return [
        {
            "variant": k,
            "search_epoch": v["epoch"],
            "val_accuracy_pct": round(100 * v["val_accuracy"], 2),
            "val_latency_ms": round(v["mean_latency_ms"], 4),
            "checkpoint": v["checkpoint"],
        }
        for k, v in picked["variants"].items()
    ]


def greedy_latencies(cfg: Any, run_dir: str | Path, variant: str = "C", split: str = "test") -> dict:
    """Per image of ``split``: the latency (table estimate, ms, controller included) of the
    greedy architecture that the search's controller of ``variant`` assigns, with labels and
    correctness (meta-graph as searched, not fine-tuned). For Figure 1."""
    import torch

    from ..latency import thread_limit
    from ..train import build_split, infer, make_loader, resolve_device
    from ..stages.evaluate import load_trained

    exp = cfg.experiment
    device = resolve_device(exp.device)
    table = load_run_table(cfg, run_dir)
    with thread_limit(exp.threads), torch.no_grad():
        graph, controller, what = load_trained(cfg, run_dir, device, "search", variant)
        data = build_split(exp, split, augment=False)
        loader = make_loader(data, cfg.evaluate.batch_size, False, 0, exp, device, train=False)
        res = infer(
            graph, loader, device, ("image", "label"), controller=controller, channels_last=exp.use_channels_last
        )
    latency = table.estimate(res["policy"].float()).numpy()
    flat = res["policy"].reshape(len(latency), -1)
    return {
        "latency_ms": latency,
        "label": res["label"].numpy(),
        "correct": (res["pred"] == res["label"]).numpy(),
        "model": what,
        "split": split,
        "distinct": int(torch.unique(flat, dim=0).shape[0]),
        "policy": res["policy"].numpy(),  # (N, T, K)
    }


def book_variants(preset: str, variants: Sequence[str] = ()) -> list[str]:
    """``variants`` if given, else the preset's default (smoke: C and E; others: A-E)."""
    from ..stages import VARIANT_NAMES

    chosen = list(variants) if variants else list(book_settings(preset).variants)
    bad = [v for v in chosen if v not in VARIANT_NAMES]
    if bad:
        raise BookError(f"unknown variant(s) {bad}; variants are {', '.join(VARIANT_NAMES)}.")
    return chosen


def variant_rows(results: Sequence[Mapping[str, Any]], reference_ms: float | None = None) -> list[dict]:
    """One row per evaluated variant: the search epoch it came from, how it was trained, test
    accuracy (%), latency estimated by the table (mean +- std, ms) and measured on a sample,
    distinct architectures; with ``reference_ms`` (the in-space MobileNetV2 path, estimated)
    the estimated latency reduction against it."""
    rows = []
    for r in results:
        ft, ev = r["finetune"], r["evaluate"]
        est, mea = ev["latency_estimate_ms"], ev["latency_measured_ms"]
        row = {
            "variant": r["variant"],
            "search_epoch": ft["picked"]["epoch"],
            "val_accuracy_at_search_pct": round(100 * ft["picked"].get("val_accuracy", float("nan")), 2),
            "training": f"{ft['mode']} {ft['epochs_done']} epochs ({ft['optimizer']}, lr {ft['lr']:g})",
            "test_images": ev["n"],
            "test_accuracy_pct": round(100 * ev["accuracy"], 2),
            "latency_estimated_ms": round(est["mean"], 4),
            "latency_estimated_std_ms": round(est["std"], 4),
            "latency_measured_ms": round(mea["mean"], 4) if mea["mean"] is not None else None,
            "measured_on_images": mea["samples"],
            "distinct_architectures": ev["distinct_policies"],
            "modules_per_image": round(ev["modules_per_sample"], 2),
        }
        if reference_ms:
            row["estimated_reduction_vs_mobilenetv2_path_pct"] = round(100 * (1 - est["mean"] / reference_ms), 1)
        rows.append(row)
    return rows


def variant_points(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Test accuracy (%) against estimated latency per variant, for the variants' scatter."""
    return [
        {
            "name": r["variant"],
            "group": "fine-tuned variants (test)",
            "latency_ms": r["evaluate"]["latency_estimate_ms"]["mean"],
            "latency_std_ms": r["evaluate"]["latency_estimate_ms"]["std"],
            "accuracy": 100 * r["evaluate"]["accuracy"],
        }
        for r in results
    ]


# The comparators of Figure 6 that notebook 07 trains, from the run's pre-trained meta-graph.
BOOK_COMPARATORS = ("oneshot", "blockdrop", "convnet-aig")


def book_baselines(preset: str, models: Sequence[str] = ()) -> list[str]:
    """``models`` if given, else the preset's default: smoke MobileNetV2 1.0 and ShuffleNetV2
    1.0; the CPU presets every MobileNetV2 and ShuffleNetV2 width of Tables 1-2; a paper preset
    the baselines its table lists, plus the in-space MobileNetV2 path."""
    from ..baselines import BASELINE_NAMES
    from ..paper_numbers import load_paper_numbers

    defaults = book_settings(preset).baselines
    if models:
        chosen = list(models)
    elif defaults is not None:
        chosen = list(defaults)
    else:
        paper = paper_table_for(book_preset(preset).experiment.dataset)["paper_dataset"]
        chosen = list(
            dict.fromkeys([r.our_name for r in load_paper_numbers(paper) if r.our_name] + ["meta-mobilenetv2-path"])
        )
    bad = [m for m in chosen if m not in BASELINE_NAMES]
    if bad:
        raise BookError(f"unknown baseline(s) {bad}; baselines: {', '.join(BASELINE_NAMES)}.")
    return chosen


def baseline_rows(summaries: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One row per baseline: test accuracy (%), measured latency (ms), parameters, MACs, budget."""
    rows = []
    for s in summaries:
        lat = s.get("latency_ms") or {}
        rows.append(
            {
                "model": s["model"],
                "family": s["family"],
                "width": s["width"],
                "training": f"{s['epochs_done']}/{s['epochs']} epochs ({s['optimizer']}, lr {s['lr']:g})",
                "test_accuracy_pct": round(s.get("accuracy_pct", float("nan")), 2),
                "latency_measured_ms": round(lat.get("mean_ms", float("nan")), 4),
                "latency_std_ms": round(lat.get("std_ms", float("nan")), 4),
                "params_M": round(s.get("params", 0) / 1e6, 3),
                "MACs_M": round(s.get("macs", 0) / 1e6, 2),
            }
        )
    return rows


def load_oneshot_samples(run_dir: str | Path) -> dict:
    """OneshotNAS's sampled architectures (``RUN/comparators/oneshot/samples.npz``): shared-weight
    validation accuracy (%) and table latency without a controller (ms), and which lie on the front."""
    import numpy as np

    folder = Path(run_dir) / "comparators" / "oneshot"
    if not (folder / "samples.npz").is_file():
        raise BookError(f"{folder / 'samples.npz'} does not exist: run the oneshot comparator first (notebook 07).")
    with np.load(folder / "samples.npz") as z:
        acc, lat, index = z["accuracy_pct"].astype(float), z["table_latency_ms"].astype(float), z["index"]
    with (folder / "frontier.csv").open(newline="") as f:
        front = {int(r["index"]) for r in csv.DictReader(f)}
    return {"accuracy_pct": acc, "latency_ms": lat, "index": index, "on_front": np.isin(index, sorted(front))}
