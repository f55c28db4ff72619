"""Eq. 2 and the dynamic bounds (paper §3.3): golden values."""

import math

import pytest
import torch

from instanas_core.reward import (
    RewardBounds,
    combined_reward,
    dynamic_bound,
    latency_reward,
    resolve_bounds,
    task_reward,
)

U, L = 10.0, 2.0


def test_latency_reward_is_one_at_the_centre():
    assert latency_reward(torch.tensor([(U + L) / 2]), U, L).item() == pytest.approx(1.0)


@pytest.mark.parametrize("z", [L, U, L - 1.0, U + 1.0, 0.0, 100.0])
def test_latency_reward_is_zero_at_and_beyond_the_bounds(z):
    assert latency_reward(torch.tensor([z]), U, L).item() == 0.0


def test_latency_reward_quadratic_inside():
    # A quarter of the way from L to U: -(z - U)(z - L) / ((U - L)/2)^2 = (6 * 2) / 16 = 0.75.
    z = torch.tensor([L + 0.25 * (U - L)])
    assert latency_reward(z, U, L).item() == pytest.approx(0.75)


def test_latency_reward_refuses_empty_interval():
    with pytest.raises(ValueError):
        latency_reward(torch.tensor([1.0]), 2.0, 2.0)


def test_combined_reward_correct_samples_are_discounted_by_latency():
    correct = torch.tensor([True, True, True])
    z = torch.tensor([(U + L) / 2, U, L + 0.25 * (U - L)])
    r = combined_reward(correct, z, U, L, reward_correct=30.0, reward_wrong=0.0)
    assert r.tolist() == pytest.approx([30.0, 0.0, 22.5])


def test_combined_reward_wrong_samples_get_r_t_alone():
    correct = torch.tensor([False, False, False])
    z = torch.tensor([(U + L) / 2, U + 5, 0.0])  # latency does not matter for wrong samples
    assert combined_reward(correct, z, U, L, 30.0, -5.0).tolist() == [-5.0, -5.0, -5.0]
    assert combined_reward(correct, z, U, L, 30.0, 0.0).tolist() == [0.0, 0.0, 0.0]


def test_task_reward_values():
    assert task_reward(torch.tensor([True, False]), 30.0, -1.0).tolist() == [30.0, -1.0]


def test_dynamic_bound_linear_from_start_to_end():
    values = [dynamic_bound(t, 5, 10.0, 2.0) for t in range(5)]
    assert values == pytest.approx([10.0, 8.0, 6.0, 4.0, 2.0])
    assert dynamic_bound(0, 1, 10.0, 2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        dynamic_bound(5, 5, 10.0, 2.0)


def test_bounds_default_like_the_original_code():
    refs = {"all_modules_ms": 10.0, "mobilenetv2_ms": 4.0, "cheapest_ms": 1.0}
    b = resolve_bounds(refs)
    assert (b.upper_start, b.upper_end, b.lower_start, b.lower_end) == pytest.approx((7.0, 2.0, 1.0, 1.0))
    u0, l0 = b.at(0, 3)
    u2, l2 = b.at(2, 3)
    assert (u0, l0, u2, l2) == pytest.approx((7.0, 1.0, 2.0, 1.0))
    absolute = resolve_bounds(refs, upper_start_ms=9.0, upper_end_ms=3.0, lower_start_ms=0.5, lower_end_ms=0.5)
    assert absolute == RewardBounds(9.0, 3.0, 0.5, 0.5)


def test_bounds_refused_when_upper_falls_below_lower():
    refs = {"all_modules_ms": 10.0, "mobilenetv2_ms": 1.0, "cheapest_ms": 0.8}
    with pytest.raises(ValueError, match="upper_end_ms"):
        resolve_bounds(refs)  # 0.5 x 1.0 = 0.5 < 0.8
    assert not math.isnan(resolve_bounds(refs, upper_end_factor=1.0).upper_end)
