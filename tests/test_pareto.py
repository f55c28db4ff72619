"""The one Pareto-front definition (instanas_core/pareto.py) and the three places that use it."""

import pytest

from instanas_core.pareto import pareto_indices
from instanas_core.plots import pareto_frontier
from instanas_core.stages import pareto_front


@pytest.mark.parametrize(
    "latency, accuracy, front",
    [
        ([], [], []),
        ([1.0], [0.5], [0]),
        ([5, 8, 9, 3], [94.8, 95.7, 95.5, 93.0], [3, 0, 1]),  # 9 ms is slower and less accurate than 8 ms
        ([2, 2, 1], [0.7, 0.9, 0.7], [2, 1]),  # equally fast: the more accurate one; 2 ms at 0.7 is dominated
        ([1, 1, 3], [0.5, 0.5, 0.6], [0, 2]),  # exact duplicates keep the first
        ([3, 2, 1], [0.9, 0.9, 0.9], [2]),  # equally accurate: only the fastest
    ],
)
def test_pareto_indices(latency, accuracy, front):
    assert pareto_indices(latency, accuracy) == front


def test_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        pareto_indices([1, 2], [0.5])


def test_every_front_agrees():
    lat, acc = [4.0, 2.0, 3.0, 2.0, 5.0], [0.8, 0.6, 0.7, 0.6, 0.79]
    want = pareto_indices(lat, acc)
    assert pareto_frontier(lat, [1 - a for a in acc]).tolist() == want
    points = [{"epoch": i, "mean_latency_ms": t, "val_accuracy": a} for i, (t, a) in enumerate(zip(lat, acc))]
    assert [p["epoch"] for p in pareto_front(points)] == want
