"""Variants A-E out of one search (paper §4.2, Tables 1-2: "all five InstaNAS models are all
obtained within a single search").

The paper picks controllers "by human preference by considering the accuracy and latency
trade-off"; :func:`pick_variants` makes that choice reproducible. Among the search's epoch
checkpoints it keeps the Pareto front of *validation* accuracy (higher is better) against mean
table latency (lower is better), then spreads ``k`` picks along it: A is the most accurate, E the
fastest, B-D the front points nearest to evenly spaced latencies in between. A front with fewer
than ``k`` points gives some letters the same epoch (``variants.json`` says so). The test split is
never looked at.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..pareto import pareto_indices
from ..rundir import RunDirError, save_json

__all__ = ["pareto_front", "pick_variants", "resolve_variant", "VARIANT_NAMES"]

VARIANT_NAMES = ("A", "B", "C", "D", "E")


def pareto_front(points: list[dict], acc: str = "val_accuracy", lat: str = "mean_latency_ms") -> list[dict]:
    """Points not dominated by another (at least as accurate and as fast, better in one), sorted
    from the fastest to the slowest (:func:`~instanas_core.pareto.pareto_indices`). Ties keep the
    earliest epoch."""
    return [points[i] for i in pareto_indices([p[lat] for p in points], [p[acc] for p in points])]


def pick_variants(search_dir: str | Path, k: int = 5) -> dict:
    """Choose ``k`` variants (A, B, ...) from ``search_dir/metrics.csv`` and write
    ``search_dir/variants.json``; returns ``{letter: {epoch, val_accuracy, mean_latency_ms,
    checkpoint}}``."""
    if not 1 <= k <= len(VARIANT_NAMES):
        raise ValueError(f"k must lie in 1..{len(VARIANT_NAMES)}, got {k}.")
    search_dir = Path(search_dir)
    path = search_dir / "metrics.csv"
    if not path.is_file():
        raise RunDirError(f"{path} does not exist: run `instanas search` first.")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    points = []
    for r in rows:
        ckpt = search_dir / "epochs" / f"epoch_{int(r['epoch']):04d}.pt"
        if ckpt.is_file():
            points.append(
                {
                    "epoch": int(r["epoch"]),
                    "val_accuracy": float(r["val_accuracy"]),
                    "mean_latency_ms": float(r["mean_latency_ms"]),
                    "checkpoint": str(ckpt.relative_to(search_dir)),
                }
            )
    if not points:
        raise RunDirError(f"{search_dir} has no epoch checkpoints to pick variants from.")
    front = pareto_front(points)  # fastest first
    fastest, slowest = front[0]["mean_latency_ms"], front[-1]["mean_latency_ms"]
    picks = {}
    for i, name in enumerate(VARIANT_NAMES[:k]):
        # A (i = 0) at the slowest, most accurate end; the last letter at the fastest end.
        target = slowest - (slowest - fastest) * (i / (k - 1) if k > 1 else 0.0)
        best = min(front, key=lambda p: (abs(p["mean_latency_ms"] - target), -p["val_accuracy"]))
        picks[name] = dict(best)
    result = {
        "variants": picks,
        "front": front,
        "rule": "Pareto front of validation accuracy vs mean table latency; A most accurate, last letter fastest",
        "distinct_epochs": len({p["epoch"] for p in picks.values()}),
    }
    save_json(search_dir / "variants.json", result)
    return picks


def resolve_variant(search_dir: str | Path, variant: str) -> dict:
    """The search checkpoint for ``variant``: a letter from ``variants.json`` (picked now if the
    file is missing), ``epoch:N`` or ``last`` (the final epoch)."""
    search_dir = Path(search_dir)
    if variant.startswith("epoch:") or variant == "last":
        if variant == "last":
            ckpts = sorted((search_dir / "epochs").glob("epoch_*.pt"))
            if not ckpts:
                raise RunDirError(f"{search_dir} has no epoch checkpoints: run `instanas search` first.")
            path = ckpts[-1]
        else:
            path = search_dir / "epochs" / f"epoch_{int(variant[6:]):04d}.pt"
        if not path.is_file():
            raise RunDirError(f"{path} does not exist.")
        return {"epoch": int(path.stem.split("_")[1]), "checkpoint": str(path.relative_to(search_dir))}
    vpath = search_dir / "variants.json"
    if vpath.is_file():
        import json

        picks = json.loads(vpath.read_text())["variants"]
    else:
        picks = pick_variants(search_dir)
    if variant not in picks:
        raise RunDirError(f"variant {variant!r} is not in {vpath}; it has {', '.join(picks)}.")
    return picks[variant]
