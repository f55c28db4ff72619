"""The named science options (issue 15, docs/science-options.md) and the budgeted-batch comparators
(issue 20): each option's mechanics, golden values for its formula, and the paper's method kept
as the default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from instanas_core.config import PretrainConfig, SearchConfig
from instanas_core.flops import count_macs
from instanas_core.meta_graph import build_meta_graph
from instanas_core.policy import all_ones_policy, is_valid_policy, policy_entropy, sample_policy
from instanas_core.presets import INSTANCE_AWARE_OPTIONS, PRESETS, get_preset, method_label, named_options
from instanas_core.reward import RewardBounds, combined_reward, monotone_reward, schedule_fraction
from instanas_core.search_space import make_search_space
from instanas_core.stages.awareness import random_routing
from instanas_core.stages.cascade import (
    Cascade,
    accuracy_at,
    bootstrap_interval,
    cascade_curve,
    fit_cascade,
    level_oracle_curve,
    run_cascade,
)
from instanas_core.stages.pretrain import cheapest_macs_policy, per_sample_drop_policy, pretrain_policies, pretrain_step
from instanas_core.stages.search import ControllerSchedule, controller_loss, leave_one_out_advantage
from instanas_core.train import recalibrate_batchnorm


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    return build_meta_graph(32, 0.25).eval()


# ---- the paper's method stays the default --------------------------------------------------------
# The CPU presets of the book search with the named options (issue 15); every other preset, the
# paper's included, runs the paper's exact method.
OPTION_PRESETS = {"cpu", "cifar10-cpu"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_default_to_the_paper_method(preset):
    cfg = get_preset(preset)
    if preset in OPTION_PRESETS:
        assert set(named_options(cfg)) == set(INSTANCE_AWARE_OPTIONS)
        assert method_label(cfg).startswith("named options INSTANCE_AWARE_OPTIONS")
        return
    assert named_options(cfg) == () and method_label(cfg) == "paper-exact method"
    assert (cfg.pretrain.density, cfg.pretrain.sandwich, cfg.pretrain.recalibrate_bn) == ("drop-path", False, 0)
    s = cfg.search
    assert (s.baseline, s.samples, s.bound_schedule, s.bound_end_share, s.reward) == (
        "self-critical",
        1,
        "epoch",
        1.0,
        "eq2",
    )
    assert (s.sharpen_share, s.recalibrate_bn, s.controller_input) == (0.0, 0, "image")


@pytest.mark.parametrize(
    "overrides, label",
    [
        ([], "paper-exact method"),
        (["search.baseline=loo", "search.samples=4"], "named options search.baseline=loo search.samples=4"),
        (
            ["pretrain.sandwich=true", "search.reward_wrong=-30"],
            "named options pretrain.sandwich=true search.reward_wrong=-30",
        ),
        (["search.alpha=0.5", "search.epochs=2"], "paper-exact method"),  # hyperparameters, not named options
    ],
)
def test_method_label_names_each_option_used(overrides, label):
    from instanas_core.config_io import apply_overrides

    assert method_label(apply_overrides(get_preset("smoke"), overrides)) == label


def test_book_figures_are_labelled_with_the_method(tmp_path):
    from instanas_core.book import BookContext

    for preset, method in (("cpu", "INSTANCE_AWARE_OPTIONS"), ("smoke", "paper-exact method")):
        ctx = BookContext("03", get_preset(preset), tmp_path, 0, "a machine")
        assert method in ctx.label and method in ctx.context("estimated")


@pytest.mark.parametrize(
    "preset, counts, raises",
    [
        ("cifar10-cpu", [97, 3], True),  # one architecture over 2%: collapsed
        ("cifar10-cpu", [50, 30, 18, 2], False),  # three over 2%
        (
            "cifar10-cpu",
            [40, 30, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            True,
        ),
        ("smoke", [100], False),  # the smoke preset is exempt
        ("cpu", [100], False),  # and digits, where the options collapse too (docs/science-options.md)
    ],
)
def test_check_spread_counts_architectures_with_two_percent(preset, counts, raises):
    from instanas_core.book import BookError, check_spread

    rng = np.random.default_rng(0)
    archs = [rng.integers(0, 2, size=(17, 5)) for _ in counts]
    policy = np.concatenate([np.repeat(a[None], c, axis=0) for a, c in zip(archs, counts)])  # (N, 17, 5)
    if raises:
        with pytest.raises(BookError, match="Figure 1: the controller routes"):
            check_spread(get_preset(preset), policy, "Figure 1")
        return
    found = check_spread(get_preset(preset), policy, "Figure 1")
    assert found["architectures"] == len(counts) and found["images"] == sum(counts)
    assert found["over_share"] == sum(c >= 0.02 * sum(counts) for c in counts)
    assert found["note"].startswith("collapsed") == (found["over_share"] < 2)


def test_instance_aware_options_are_valid_overrides():
    from instanas_core.config_io import apply_overrides

    cfg = apply_overrides(get_preset("difficulty-cpu"), list(INSTANCE_AWARE_OPTIONS))
    assert cfg.search.baseline == "loo" and cfg.search.samples >= 2 and cfg.pretrain.density == "per-sample"


# ---- the leave-one-out baseline ------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_leave_one_out_advantage_has_zero_mean_per_image(k):
    reward = torch.randn(k, 16, generator=torch.Generator().manual_seed(k)) * 30
    adv = leave_one_out_advantage(reward)
    assert adv.shape == (k, 16)
    torch.testing.assert_close(adv.mean(0), torch.zeros(16), atol=1e-4, rtol=0)


def test_leave_one_out_advantage_golden():
    reward = torch.tensor([[1.0], [2.0], [6.0]])  # three draws of one image
    # R_k - mean of the other two
    torch.testing.assert_close(leave_one_out_advantage(reward), torch.tensor([[-3.0], [-1.5], [4.5]]))


def test_leave_one_out_gradient_is_unbiased_on_average():
    """With a reward that does not depend on the action, the LOO advantage gives a zero expected
    policy gradient (the baseline adds no bias), unlike an unrelated constant offset."""
    probs = torch.full((1, 3, 2), 0.3, requires_grad=True)
    grads = []
    g = torch.Generator().manual_seed(0)
    space = make_search_space(32, 0.25, 10)
    for _ in range(400):
        p4 = probs.repeat(4, 1, 1)
        actions = (torch.rand(p4.shape, generator=g) < p4.detach()).float()
        reward = torch.randn(4, 1, generator=g)  # independent of the actions
        adv = leave_one_out_advantage(reward).reshape(4)
        loss, _ = controller_loss(p4, actions, adv, alpha=1.0, entropy_bonus=0.0)
        grads.append(torch.autograd.grad(loss, probs)[0])
    mean = torch.stack(grads).mean(0)
    assert mean.abs().max() < 0.25, mean
    assert space.num_cells > 0


# ---- reward bounds in controller steps, the monotone reward, sharpening --------------------------
def test_schedule_fraction_epoch_matches_the_paper_bound():
    bounds = RewardBounds(10.0, 4.0, 1.0, 1.0)
    for epoch in range(6):
        assert bounds.at_fraction(schedule_fraction(epoch, 6)) == bounds.at(epoch, 6)


def test_schedule_in_controller_steps_moves_every_step_and_holds():
    cfg = SearchConfig(epochs=2, bound_schedule="step", bound_end_share=0.5)
    sched = ControllerSchedule(RewardBounds(10.0, 2.0, 1.0, 1.0), cfg, steps=5)
    uppers = [sched.at(e, i)[0] for e in range(2) for i in range(5)]
    assert uppers[0] == 10.0
    assert all(a > b for a, b in zip(uppers[:5], uppers[1:6]))  # falls every step until the end share
    assert uppers[-1] == pytest.approx(2.0) and uppers[5] == pytest.approx(2.0)  # 5/9 >= 0.5: held
    paper = ControllerSchedule(RewardBounds(10.0, 2.0, 1.0, 1.0), SearchConfig(epochs=2), steps=5)
    assert len({paper.at(0, i) for i in range(5)}) == 1  # the paper's: one value per epoch


def test_sharpening_reaches_alpha_one_and_entropy_minimisation():
    cfg = SearchConfig(epochs=4, alpha=0.8, entropy_bonus=0.8, sharpen_share=0.5, sharpen_weight=0.1)
    sched = ControllerSchedule(RewardBounds(10.0, 2.0, 1.0, 1.0), cfg, steps=10)
    _, _, alpha0, ent0 = sched.at(0, 0)
    _, _, alpha1, ent1 = sched.at(3, 9)
    assert (alpha0, ent0) == (0.8, 0.8)
    assert alpha1 == pytest.approx(1.0) and ent1 == pytest.approx(-0.1)


def test_sharpening_makes_greedy_decoding_match_samples():
    """Entropy minimisation (the sharpening phase) drives p to 0/1, so the greedy policy and the
    sampled ones run the same modules: their mean module-count gap shrinks."""
    torch.manual_seed(0)
    logits = (torch.randn(64, 17, 5) * 0.3).requires_grad_()
    opt = torch.optim.Adam([logits], lr=0.05)
    space = make_search_space(32, 0.25, 10)
    g = torch.Generator().manual_seed(1)

    def gap():
        p = torch.sigmoid(logits.detach())
        sampled = sample_policy(p, space, 1.0, g).actions
        return float((sampled.sum((1, 2)) - (p > 0.5).float().sum((1, 2))).abs().mean())

    before = gap()
    for _ in range(200):
        p = torch.sigmoid(logits)
        loss, _ = controller_loss(p, torch.zeros_like(p), torch.zeros(64), alpha=1.0, entropy_bonus=-0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() < 0.25 * before
    assert float(policy_entropy(torch.sigmoid(logits.detach())).mean()) < 5.0


@pytest.mark.parametrize("weight", [0.0, 0.2, 1.0])
def test_monotone_reward_golden_and_monotone(weight):
    correct = torch.tensor([True, True, False, False])
    latency = torch.tensor([2.0, 6.0, 2.0, 6.0])
    r = monotone_reward(
        correct, latency, upper=6.0, lower=2.0, reward_correct=30.0, reward_wrong=-30.0, latency_weight=weight
    )
    torch.testing.assert_close(r, torch.tensor([30.0, 30.0 - 30.0 * weight, -30.0, -30.0 - 30.0 * weight]))
    z = torch.linspace(0, 20, 41)
    right = monotone_reward(torch.ones(41, dtype=torch.bool), z, 6.0, 2.0, 30.0, -30.0, 0.5)
    assert bool((right[1:] < right[:-1]).all())  # every millisecond costs, also beyond U_t
    eq2 = combined_reward(torch.ones(41, dtype=torch.bool), z, 6.0, 2.0)
    assert float(eq2[z >= 6.0].abs().max()) == 0.0  # Eq. 2 pays nothing beyond U_t: no gradient there


# ---- pre-training at every density, the sandwich rule ---------------------------------------------
def test_per_sample_density_spans_every_density(graph):
    policy = per_sample_drop_policy(graph, 512, 0.5, torch.Generator().manual_seed(0))
    density = policy.mean((1, 2))
    assert is_valid_policy(policy, graph)
    assert float(density.min()) < 0.15 and float(density.max()) > 0.9  # sparse to full
    assert abs(float(density.mean()) - 0.5) < 0.06  # the schedule's mean rate is kept


def test_cheapest_macs_policy_runs_the_fewest_macs(graph):
    policy = cheapest_macs_policy(graph)
    assert is_valid_policy(policy[None], graph)
    for t, cell in enumerate(graph.cells):
        if not cell.spec.requires_module:
            assert policy[t].sum() == 0
            continue
        shape = (1, cell.spec.in_channels, cell.spec.in_size, cell.spec.in_size)
        macs = [count_macs(b, shape) for b in cell.branches]
        assert policy[t].sum() == 1 and macs[int(policy[t].argmax())] == min(macs)


def test_sandwich_step_trains_the_largest_and_cheapest_paths(graph):
    seen = []

    class Spy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.space, self.cells = inner, inner.space, inner.cells

        def forward(self, x, policy, execution="subset"):
            seen.append(policy.detach().clone())
            return self.inner(x, policy, execution)

    model = Spy(graph).train()
    opt = torch.optim.SGD(graph.parameters(), lr=0.0)
    cfg = PretrainConfig(density="per-sample", sandwich=True)
    step = pretrain_step(model, opt, None, 0.5, torch.Generator().manual_seed(0), cfg=cfg)
    n, stats = step(0, torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    assert n == 4 and np.isfinite(stats["loss"])
    assert len(seen) == 3
    assert torch.equal(seen[0], all_ones_policy(graph, 4))
    assert torch.equal(seen[1], cheapest_macs_policy(graph).expand(4, -1, -1))
    assert len(pretrain_policies(graph, 4, 0.5, PretrainConfig(), torch.Generator(), "cpu")) == 1  # the paper's


# ---- BatchNorm recalibration ---------------------------------------------------------------------
def test_recalibration_restores_a_childs_predictions():
    """Running statistics of another policy distribution misjudge a child; re-estimating them on the
    child's own batches makes eval mode reproduce the batch statistics' predictions."""
    torch.manual_seed(0)
    graph = build_meta_graph(32, 0.25)
    x = torch.randn(256, 3, 32, 32) * 2 + 0.5
    child = cheapest_macs_policy(graph).expand(len(x), -1, -1)
    graph.train()
    with torch.no_grad():
        reference = graph(x, child).argmax(1)  # batch statistics of exactly these images
        for m in graph.modules():  # statistics of something else
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(9.0)
    graph.eval()
    with torch.no_grad():
        before = float((graph(x, child).argmax(1) == reference).float().mean())
    loader = [(x[i : i + 64], torch.zeros(64)) for i in range(0, 256, 64)]
    seen = recalibrate_batchnorm(graph, loader, lambda b: child[: len(b)], 4, torch.device("cpu"), False)
    with torch.no_grad():
        after = float((graph(x, child).argmax(1) == reference).float().mean())
    assert seen == 256 and not graph.training
    assert after >= 0.95 and after > before + 0.2, (before, after)


# ---- the budgeted-batch comparators (issue 20) ---------------------------------------------------
def _two_children(n=400, seed=0):
    rng = np.random.default_rng(seed)
    conf = np.stack([rng.uniform(0.1, 1.0, n), rng.uniform(0.5, 1.0, n)])
    correct = np.stack([rng.uniform(size=n) < conf[0], rng.uniform(size=n) < 0.95])
    return conf, correct, np.array([1.0, 5.0])


def test_cascade_stage_that_does_not_run_adds_no_latency():
    conf, correct, lat = _two_children()
    right, spent = run_cascade(conf, correct, lat, Cascade((0, 1), (0.6,)))
    stopped = conf[0] >= 0.6
    assert np.all(spent[stopped] == 1.0) and np.all(spent[~stopped] == 6.0)
    assert np.array_equal(right[stopped], correct[0][stopped]) and np.array_equal(right[~stopped], correct[1][~stopped])


def test_cascade_threshold_is_picked_on_validation_and_applied_to_test():
    val = _two_children(seed=1)
    test = _two_children(seed=2)
    rows = cascade_curve(val[:2], test[:2], val[2], [0, 1], 2, [3.0])
    fitted, val_acc, val_ms = fit_cascade(val[0], val[1], val[2], [0, 1], 2, 3.0)
    assert rows[0]["thresholds"] == list(fitted.thresholds) and rows[0]["val_accuracy"] == val_acc
    right, spent = run_cascade(test[0], test[1], test[2], fitted)
    assert rows[0]["accuracy"] == float(right.mean()) and rows[0]["latency_ms"] == float(spent.mean())
    # The test records never move the thresholds: other test data, same cascade.
    other = cascade_curve(val[:2], _two_children(seed=3)[:2], val[2], [0, 1], 2, [3.0])
    assert other[0]["thresholds"] == rows[0]["thresholds"]
    assert val_ms <= 3.0


def _levels_and_children(n: int, seed: int):
    """Level 0 (easy): both children right; level 1 (hard): only the slow child (6 ms) is right."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, 2, n)
    correct = np.stack([level == 0, np.ones(n, bool)])  # (children, N): cheap 1 ms, slow 6 ms
    return level, correct


@pytest.mark.parametrize("budget, per_level, accuracy", [(6.0, (1.0, 6.0), 1.0), (1.0, (1.0, 1.0), None)])
def test_level_oracle_picks_children_per_level_on_validation(budget, per_level, accuracy):
    val, test = _levels_and_children(400, 1), _levels_and_children(300, 2)
    (row,) = level_oracle_curve(val, test, np.array([1.0, 6.0]), [budget])
    # The cheapest assignment that is right everywhere: easy images cheap, hard images slow.
    assert tuple(row["latency_per_level_ms"].values()) == per_level
    spent = np.where(test[0] == 0, per_level[0], per_level[1])
    assert row["latency_ms"] == pytest.approx(spent.mean())
    assert row["accuracy"] == pytest.approx(accuracy if accuracy is not None else (test[0] == 0).mean())
    assert row["spearman_rho"] > 0.9 if per_level[0] < per_level[1] else row["spearman_rho"] == 0.0
    # Chosen on validation: other test data, the same children per level.
    (other,) = level_oracle_curve(val, _levels_and_children(300, 3), np.array([1.0, 6.0]), [budget])
    assert other["children_per_level"] == row["children_per_level"]


def test_random_routing_keeps_the_controllers_histogram():
    policy = (torch.rand(200, 17, 5, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    policy[:120] = policy[0]  # a dominant architecture
    shuffled = random_routing(policy, torch.Generator().manual_seed(1))

    def histogram(p):
        keys, counts = torch.unique(p.reshape(len(p), -1), dim=0, return_counts=True)
        return {tuple(k.tolist()): int(c) for k, c in zip(keys, counts)}

    assert histogram(shuffled) == histogram(policy)
    assert not torch.equal(shuffled, policy)


def test_accuracy_at_interpolates_and_refuses_outside():
    lat, acc = np.array([1.0, 3.0, 2.0]), np.array([0.5, 0.9, 0.7])
    assert accuracy_at(lat, acc, 2.5) == pytest.approx(0.8)
    assert np.isnan(accuracy_at(lat, acc, 3.5))


def test_bootstrap_interval_covers_the_mean():
    scores = np.random.default_rng(0).uniform(size=500) < 0.7
    lo, hi = bootstrap_interval(scores.astype(float))
    assert lo < scores.mean() < hi and hi - lo < 0.1
