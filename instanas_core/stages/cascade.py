"""Budgeted-batch comparators of an instance-aware model (issues 15 and 20), on per-image records.

Everything here works on arrays measured elsewhere (:mod:`instanas_core.stages.awareness`): for
each fixed child of the meta-graph, its correctness and softmax confidence on every image of the
validation and the test split and its measured batch-1 latency; for the controller, the
architecture it deploys on each test image. In the *budgeted batch* setting of early-exit
networks (MSDNet, RANet), a method is judged by its accuracy at a mean latency per image over the
whole test set, spent unevenly on easy and hard images.

* :func:`accuracy_at` -- a front (static children, a cascade's curve) read at a mean latency;
* :func:`run_cascade` / :func:`fit_cascade` -- the confidence cascade: run a cheap child; if its
  top softmax probability is below the stage's threshold, also run the next child and take its
  answer. The latency of an image is the sum of the stages it ran; thresholds and children are
  chosen on the validation split for each budget and then applied, unchanged, to the test split;
* :func:`level_oracle_curve` -- a ceiling for routing by difficulty (synthetic-difficulty only):
  each image's known difficulty level picks its child, one child per level, chosen on the
  validation split for each budget. It shows what instance-aware routing *could* gain on this
  meta-graph, and in which direction (more compute for hard images, or less);
* :func:`bootstrap_interval` -- a percentile bootstrap over test images.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Cascade",
    "accuracy_at",
    "interpolation_weights",
    "run_cascade",
    "fit_cascade",
    "cascade_curve",
    "level_oracle_curve",
    "bootstrap_interval",
    "check_budgets",
]


def interpolation_weights(latency: np.ndarray, target: float) -> tuple[int, int, float] | None:
    """``(i, j, w)`` such that ``w * point_i + (1 - w) * point_j`` lies at ``target`` on the
    piecewise-linear curve through points sorted by ``latency``; None outside the curve's range."""
    lat = np.asarray(latency, float)
    order = np.argsort(lat, kind="stable")
    lo, hi = lat[order[0]], lat[order[-1]]
    if not lo - 1e-12 <= target <= hi + 1e-12:
        return None
    k = int(np.searchsorted(lat[order], target, side="left"))
    if k == 0:
        return int(order[0]), int(order[0]), 1.0
    i, j = int(order[k - 1]), int(order[min(k, len(order) - 1)])
    if lat[j] == lat[i]:
        return j, j, 1.0
    w = (lat[j] - target) / (lat[j] - lat[i])
    return i, j, float(w)


def accuracy_at(latency: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """Accuracy of the piecewise-linear curve through (latency, accuracy) at ``target`` ms (a
    mixture of the two neighbouring points: each image goes to one or the other in that
    proportion); NaN outside the curve's latency range."""
    found = interpolation_weights(latency, target)
    if found is None:
        return float("nan")
    i, j, w = found
    return float(w * accuracy[i] + (1.0 - w) * accuracy[j])


@dataclass(frozen=True)
class Cascade:
    """Children (indices into the candidate list, cheapest first) and the confidence threshold
    after each stage but the last."""

    stages: tuple[int, ...]
    thresholds: tuple[float, ...]


def run_cascade(
    confidence: np.ndarray, correct: np.ndarray, latency: np.ndarray, cascade: Cascade
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (correct, latency ms) of ``cascade``. confidence, correct: (children, N);
    latency: (children,). An image stops at the first stage whose confidence reaches its
    threshold (or at the last stage); a stage that does not run adds no latency."""
    n = confidence.shape[1]
    done = np.zeros(n, bool)
    right = np.zeros(n, bool)
    spent = np.zeros(n, float)
    for s, child in enumerate(cascade.stages):
        active = ~done
        spent[active] += latency[child]
        stop = active & (confidence[child] >= cascade.thresholds[s]) if s < len(cascade.thresholds) else active
        right[stop] = correct[child][stop]
        done |= stop
    return right, spent


def check_budgets(budgets, cheapest_ms: float, largest_ms: float, stages: int) -> None:
    """One paragraph for budgets outside [cheapest, largest] child latency or < 2 stages."""
    if stages < 2:
        raise ValueError(
            f"a cascade needs at least 2 stages (a cheap child and a larger one), got cascade stages={stages}; "
            "valid: 2 or 3."
        )
    bad = [b for b in budgets if not cheapest_ms <= b <= largest_ms]
    if bad:
        raise ValueError(
            f"budgets {', '.join(f'{b:.4g}' for b in bad)} ms lie outside the range of the children compared: "
            f"from the cheapest child's {cheapest_ms:.4g} ms to the largest child's {largest_ms:.4g} ms; "
            "give budgets between the two."
        )


def _threshold_grid(confidence: np.ndarray, points: int) -> np.ndarray:
    # Quantiles of the stage's validation confidences, plus "never stop" (above every confidence).
    qs = np.quantile(confidence, np.linspace(0.0, 1.0, points))
    return np.unique(np.append(qs, np.inf))


def fit_cascade(
    confidence: np.ndarray,
    correct: np.ndarray,
    latency: np.ndarray,
    candidates: list[int],
    stages: int,
    budget: float,
    grid: int = 21,
) -> tuple[Cascade, float, float] | None:
    """The ``stages``-stage cascade over ``candidates`` (children in increasing latency order, on
    the *validation* records given) with the best accuracy whose mean latency is within
    ``budget``: returns (cascade, validation accuracy, validation mean latency), or None when no
    cascade fits. The caller applies the returned cascade to the test records unchanged."""
    ordered = sorted(candidates, key=lambda c: latency[c])
    best = None
    for combo in itertools.combinations(ordered, stages):
        grids = [_threshold_grid(confidence[c], grid) for c in combo[:-1]]
        for thresholds in itertools.product(*grids):
            cascade = Cascade(tuple(combo), tuple(float(t) for t in thresholds))
            right, spent = run_cascade(confidence, correct, latency, cascade)
            mean_ms = float(spent.mean())
            if mean_ms > budget + 1e-12:
                continue
            acc = float(right.mean())
            if best is None or (acc, -mean_ms) > (best[1], -best[2]):
                best = (cascade, acc, mean_ms)
    return best


def cascade_curve(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    latency: np.ndarray,
    candidates: list[int],
    stages: int,
    budgets: list[float],
    grid: int = 21,
) -> list[dict]:
    """For each budget: the cascade fitted on ``val`` = (confidence, correct) and its test
    accuracy and test mean latency (``test`` = (confidence, correct)), with per-image test
    correctness for confidence intervals."""
    rows = []
    for budget in budgets:
        fitted = fit_cascade(val[0], val[1], latency, candidates, stages, budget, grid)
        if fitted is None:
            continue
        cascade, val_acc, val_ms = fitted
        right, spent = run_cascade(test[0], test[1], latency, cascade)
        rows.append(
            {
                "budget_ms": budget,
                "stages": list(cascade.stages),
                "thresholds": list(cascade.thresholds),
                "val_accuracy": val_acc,
                "val_latency_ms": val_ms,
                "accuracy": float(right.mean()),
                "latency_ms": float(spent.mean()),
                "correct": right,
            }
        )
    return rows


def level_oracle_curve(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    latency: np.ndarray,
    budgets: list[float],
    penalties: int = 200,
) -> list[dict]:
    """Routing by the known difficulty level, for each budget: ``val`` and ``test`` are (level (N,),
    correct (children, N)); ``latency`` (children,). One child per level is picked on validation,
    maximising ``accuracy_l(c) - lam * latency(c)`` per level over a sweep of ``lam`` (the convex
    hull of the per-level choices) and keeping the most accurate assignment whose validation mean
    latency is within the budget; it is then applied to the test images unchanged. Rows as
    :func:`cascade_curve`'s, plus the child and latency per level."""
    from scipy.stats import spearmanr

    (v_level, v_correct), (t_level, t_correct) = val, test
    latency = np.asarray(latency, float)
    levels = np.unique(v_level)
    acc = np.stack([v_correct[:, v_level == lv].mean(1) for lv in levels])  # (levels, children)
    share = np.array([(v_level == lv).mean() for lv in levels])  # (levels,)
    span = float(acc.max() - acc.min()) / max(float(np.ptp(latency)), 1e-9)
    assignments = {
        tuple(int(c) for c in np.argmax(acc - lam * latency, 1))
        for lam in np.append(0.0, np.geomspace(1e-4 * span, 1e3 * span, penalties))
    }
    scored = []
    for picks in assignments:
        ms = float((share * latency[list(picks)]).sum())
        scored.append((float((share * acc[np.arange(len(levels)), list(picks)]).sum()), -ms, picks))
    rows = []
    for budget in budgets:
        fits = [t for t in scored if -t[1] <= budget + 1e-12]
        if not fits:
            continue
        val_acc, neg_ms, picks = max(fits)
        child = dict(zip(levels.tolist(), picks))
        per_image = np.array([child[lv] for lv in t_level.tolist()])  # (N,)
        right = t_correct[per_image, np.arange(len(t_level))]
        spent = latency[per_image]
        rho = spearmanr(t_level, spent).statistic if np.ptp(spent) > 0 else 0.0
        rows.append(
            {
                "budget_ms": budget,
                "children_per_level": {int(k): int(v) for k, v in child.items()},
                "latency_per_level_ms": {int(k): float(latency[v]) for k, v in child.items()},
                "spearman_rho": float(rho),
                "val_accuracy": val_acc,
                "val_latency_ms": -neg_ms,
                "accuracy": float(right.mean()),
                "latency_ms": float(spent.mean()),
                "correct": right,
            }
        )
    return rows


def bootstrap_interval(scores: np.ndarray, reps: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image ``scores`` (N,) over test images."""
    scores = np.asarray(scores, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(scores), size=(reps, len(scores)))
    means = scores[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
