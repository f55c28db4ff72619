"""Policies (§3.3, §4.1): the at-least-one rule on every path, encouragement, entropy, log-prob."""

import math

import pytest
import torch

from instanas_core import build_meta_graph
from instanas_core.policy import (
    drop_path_policy,
    encourage,
    enforce_at_least_one,
    greedy_policy,
    is_valid_policy,
    policy_entropy,
    policy_log_prob,
    required_mask,
    sample_policy,
    sample_random_policy,
)

N = 10_000


@pytest.fixture(scope="module")
def graph():
    return build_meta_graph(32, width_mult=0.25)


def _assert_rule(policy, graph):
    req = required_mask(graph)
    assert policy.shape == (N, 17, 5)
    assert bool((policy.sum(-1)[:, req] >= 1).all())
    assert is_valid_policy(policy, graph)


def test_random_policies_valid_and_varied(graph):
    policy = sample_random_policy(graph, N, torch.Generator().manual_seed(0))
    _assert_rule(policy, graph)
    density = policy.mean((1, 2))
    assert density.min() < 0.2 and density.max() > 0.9  # children span sparse to dense


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9, 1.0])
def test_drop_path_policies_valid(graph, rate):
    policy = drop_path_policy(graph, N, rate, torch.Generator().manual_seed(1))
    _assert_rule(policy, graph)
    if rate == 0.0:
        assert bool((policy == 1).all())
    if rate == 1.0:  # everything dropped: only the default module in required cells remains
        assert int(policy.sum()) == N * int(required_mask(graph).sum())


def test_sampled_and_greedy_policies_valid(graph):
    gen = torch.Generator().manual_seed(2)
    probs = torch.rand(N, 17, 5, generator=gen) ** 3  # mostly small: empty cells are common
    sample = sample_policy(probs, graph, alpha=0.8, generator=gen)
    _assert_rule(sample.policy, graph)
    _assert_rule(greedy_policy(probs, graph), graph)
    # the rule only ever adds the default module, never removes a chosen one
    assert bool((sample.policy >= sample.actions).all())
    changed = sample.policy != sample.actions
    assert bool(changed[..., 1:].logical_not().all())


def test_enforce_sets_default_module_only_where_needed(graph):
    policy = torch.zeros(1, 17, 5)
    fixed = enforce_at_least_one(policy, graph)
    req = required_mask(graph)
    assert bool((fixed[0, req, 0] == 1).all()) and int(fixed.sum()) == int(req.sum())
    assert not is_valid_policy(policy, graph)


@pytest.mark.parametrize(
    "p,alpha,expected",
    [(0.9, 1.0, 0.9), (0.9, 0.8, 0.74), (0.2, 0.8, 0.32), (0.3, 0.5, 0.5), (1.0, 0.0, 0.0)],
)
def test_encouragement_golden(p, alpha, expected):
    assert encourage(torch.tensor(p), alpha).item() == pytest.approx(expected)


def test_encouragement_refuses_bad_alpha():
    with pytest.raises(ValueError):
        encourage(torch.tensor(0.5), 1.5)


def test_entropy_golden():
    probs = torch.full((2, 17, 5), 0.5)
    assert policy_entropy(probs) == pytest.approx(torch.full((2,), 85 * math.log(2)))
    probs = torch.full((1, 17, 5), 0.9)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert policy_entropy(probs).item() == pytest.approx(85 * h, rel=1e-5)
    assert policy_entropy(torch.ones(1, 17, 5)).item() == pytest.approx(0.0, abs=1e-3)


def test_log_prob_golden_and_gradient():
    probs = torch.full((1, 17, 5), 0.8, requires_grad=True)
    actions = torch.zeros(1, 17, 5)
    actions[0, :, 0] = 1  # 17 selected (p=0.8), 68 not selected (1-p=0.2)
    lp = policy_log_prob(actions, probs)
    assert lp.item() == pytest.approx(17 * math.log(0.8) + 68 * math.log(0.2), rel=1e-6)
    lp.sum().backward()
    # d/dp log p = 1/p for chosen, d/dp log(1-p) = -1/(1-p) for the rest
    assert probs.grad[0, 0, 0].item() == pytest.approx(1 / 0.8)
    assert probs.grad[0, 0, 1].item() == pytest.approx(-1 / 0.2)
