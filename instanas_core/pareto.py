"""The accuracy/latency Pareto front, the one definition every part uses: variant picking (§3.1 c,
the search's epochs), the OneshotNAS comparator (Figure 6) and the trade-off figures (Figures 5, 6).

A point is on the front when no other point is at least as accurate and at least as fast with one
of the two strictly better. Among exact duplicates the first (in input order) is kept.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["pareto_indices"]


def pareto_indices(latency: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (lower latency and higher accuracy are better), from
    the fastest to the slowest."""
    lat, acc = [float(v) for v in latency], [float(v) for v in accuracy]
    if len(lat) != len(acc):
        raise ValueError(f"latency and accuracy differ in length ({len(lat)} vs {len(acc)}).")
    # Fastest first, the more accurate first among equally fast, then input order (stable).
    order = sorted(range(len(lat)), key=lambda i: (lat[i], -acc[i], i))
    keep, best = [], -math.inf
    for i in order:
        # Everything before i is at least as fast, so i is dominated unless it is more accurate.
        if acc[i] > best:
            keep.append(i)
            best = acc[i]
    return keep
