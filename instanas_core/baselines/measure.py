"""Batch-1 latency of baselines and of the gated comparators, measured like InstaNAS's
children (paper §4.1; Tables 1-3 report latency as mean +- std).

* :func:`measure_model_latency`: one static network, batch 1, eval mode, fixed threads, using
  :func:`instanas_core.latency.time_callable` one timing block at a time, so that the blocks'
  mean, standard deviation, minimum, median and inter-quartile range are all reported.
* :func:`measure_mask_latencies`: a gated model (BlockDrop / ConvNet-AIG) runs a different
  network per image; each distinct executed-cell mask is cut out with ``extract_static`` and
  timed once, and the per-image latencies give the mean and standard deviation over images --
  the same statistic as the paper's InstaNAS rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from ..latency import TimingConfig, thread_limit, time_callable

__all__ = ["measure_model_latency", "measure_mask_latencies"]


def measure_model_latency(
    model: nn.Module,
    resolution: int,
    threads: int | None = 1,
    timing: TimingConfig = TimingConfig(),
    device: str | torch.device = "cpu",
) -> dict:
    """Batch-1 latency of ``model`` on a (1, 3, resolution, resolution) input, in ms.

    Returns ``mean_ms``, ``std_ms`` (over timing blocks), ``min_ms``, ``median_ms``, ``iqr_ms``,
    ``blocks``, ``threads``, ``device``. The model is moved to ``device`` and timed in eval mode;
    its train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model = model.to(device).eval()
    x = torch.randn(1, 3, resolution, resolution, device=device)
    one_block = dataclasses.replace(timing, blocks=1)
    block_ms = []
    try:
        with thread_limit(threads):
            for b in range(timing.blocks):
                # warm up once, before the first block only
                cfg = one_block if b == 0 else dataclasses.replace(one_block, warmup=0)
                block_ms.append(time_callable(lambda: model(x), cfg)["min_ms"])
    finally:
        model.train(was_training)
    t = np.asarray(block_ms)
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {
        "mean_ms": float(t.mean()),
        "std_ms": float(t.std(ddof=1)) if len(t) > 1 else 0.0,
        "min_ms": float(t.min()),
        "median_ms": float(med),
        "iqr_ms": float(q3 - q1),
        "blocks": int(len(t)),
        "threads": threads,
        "device": str(device),
    }


def measure_mask_latencies(
    model: nn.Module,
    masks: torch.Tensor,
    resolution: int,
    threads: int | None = 1,
    timing: TimingConfig = TimingConfig(),
    device: str | torch.device = "cpu",
    statistic: str = "min_ms",
) -> dict:
    """Per-image latency of a gated model from its per-image masks (N, S) or (N, T).

    Every distinct mask is extracted (``model.extract_static(mask_row)``, decision cost
    included) and timed once; ``statistic`` picks which per-network number stands for it
    (``min_ms`` as in :func:`instanas_core.latency.measure_children`). Returns ``mean_ms`` and
    ``std_ms`` over the N images, ``n_images``, ``n_distinct`` and ``per_mask`` (mask, count, ms).
    """
    if masks.dim() != 2 or masks.shape[0] == 0:
        raise ValueError(f"masks must have shape (N > 0, cells); got {tuple(masks.shape)}.")
    binary = (masks.detach().cpu() > 0.5).to(torch.int8)  # (N, cells)
    unique, inverse, counts = torch.unique(binary, dim=0, return_inverse=True, return_counts=True)
    per_mask_ms = []
    for row in unique:
        static = model.extract_static(row)
        per_mask_ms.append(measure_model_latency(static, resolution, threads, timing, device)[statistic])
    per_image = np.asarray(per_mask_ms)[inverse.numpy()]  # (N,)
    return {
        "mean_ms": float(per_image.mean()),
        "std_ms": float(per_image.std()),
        "n_images": int(len(per_image)),
        "n_distinct": int(len(unique)),
        "per_mask": [
            {"mask": row.tolist(), "count": int(c), "ms": float(ms)} for row, c, ms in zip(unique, counts, per_mask_ms)
        ],
    }
