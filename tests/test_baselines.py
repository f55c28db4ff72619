"""Baselines and comparators (Tables 1-3, Figure 6): output shapes at the three resolutions,
the small-image adaptations, the in-space MobileNetV2 path, the gated comparators' routing
(really fewer MACs, same function as their masked reference and their static extraction), their
losses, the one-shot frontier, and batch-1 latency measurement."""

import pytest
import torch
from torch import nn

from instanas_core import build_meta_graph
from instanas_core.baselines import (
    BASELINE_NAMES,
    COMPARATOR_NAMES,
    OneshotRecord,
    blockdrop_losses,
    blockdrop_reward,
    build_baseline,
    build_blockdrop,
    build_comparator,
    build_convnet_aig,
    frontier_policies,
    gumbel_softmax_st,
    measure_mask_latencies,
    measure_model_latency,
    oneshot_search,
    pareto_front,
    shared_weight_eval_fn,
    target_rate_loss,
)
from instanas_core.flops import count_macs
from instanas_core.latency import TimingConfig
from instanas_core.policy import is_valid_policy, module_path_policy

RESOLUTIONS = (32, 64, 224)
FINAL_MAP = {32: 4, 64: 4, 224: 7}
FAST_TIMING = TimingConfig(min_run_time=0.002, blocks=3, warmup=1)


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode comparisons mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


def _feature_module(model: nn.Module) -> nn.Module:
    """The module whose output is the last feature map before global pooling."""
    for attr in ("features", "conv5", "layer4", "cells"):  # MobileNetV2, ShuffleNetV2, ResNet, child
        if hasattr(model, attr):
            return getattr(model, attr)
    raise AssertionError(f"no feature module in {type(model).__name__}")


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_baseline_shapes_and_final_map(name, resolution):
    torch.manual_seed(0)
    model = build_baseline(name, resolution, num_classes=7).eval()
    maps = []
    handle = _feature_module(model).register_forward_hook(lambda m, i, o: maps.append(o.shape))
    with torch.inference_mode():
        out = model(torch.randn(1, 3, resolution, resolution))  # batch 1: ResNet-101 at 64 px is ~10 GMACs
    handle.remove()
    assert out.shape == (1, 7)
    assert torch.isfinite(out).all()
    # the adaptation's whole point: the same final map as our search space (4x4, 4x4, 7x7)
    assert maps[-1][-2:] == (FINAL_MAP[resolution], FINAL_MAP[resolution])


def test_adaptations_change_the_documented_layers():
    m32, m64, m224 = (build_baseline("mobilenetv2-1.0", r, 10) for r in RESOLUTIONS)
    assert m32.features[0][0].stride == (1, 1) and m32.features[2].conv[1][0].stride == (1, 1)
    assert m64.features[0][0].stride == (1, 1) and m64.features[2].conv[1][0].stride == (2, 2)
    assert m224.features[0][0].stride == (2, 2) and m224.features[2].conv[1][0].stride == (2, 2)
    s32, s64 = build_baseline("shufflenetv2-1.0", 32, 10), build_baseline("shufflenetv2-1.0", 64, 10)
    assert isinstance(s32.maxpool, nn.Identity) and s32.conv1[0].stride == (1, 1)
    assert isinstance(s64.maxpool, nn.MaxPool2d) and s64.conv1[0].stride == (1, 1)
    r32 = build_baseline("resnet50", 32, 10)
    assert r32.conv1.kernel_size == (3, 3) and r32.conv1.stride == (1, 1) and isinstance(r32.maxpool, nn.Identity)
    # widths reach torchvision: more width, more parameters
    n = [sum(p.numel() for p in build_baseline(f"mobilenetv2-{w}", 32, 10).parameters()) for w in (0.4, 1.0, 1.4)]
    assert n[0] < n[1] < n[2]


def test_unknown_names_and_resolutions_are_refused():
    with pytest.raises(ValueError, match="known baselines"):
        build_baseline("mobilenetv3", 32)
    with pytest.raises(ValueError, match="resolution"):
        build_baseline("mobilenetv2-1.0", 96)
    with pytest.raises(ValueError, match="known comparators"):
        build_comparator("skipnet", 32)


def test_meta_path_is_the_ir_k3_e6_child_and_matches_the_gated_backbone():
    torch.manual_seed(1)
    graph = build_meta_graph(32, width_mult=0.25).eval()
    _randomise_bn(graph)
    child = build_baseline("meta-mobilenetv2-path", 32, 10)
    k = graph.space.modules.index("ir_k3_e6")
    assert bool((child.policy.sum(1) == 1).all()) and bool((child.policy[:, k] == 1).all())
    # the comparators' backbone, loaded from the meta-graph, is the same function when it keeps all
    net = build_blockdrop(32, 10, width_mult=0.25).load_from_meta_graph(graph).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = graph(x, module_path_policy(graph, "ir_k3_e6")[0])
        keep_all = torch.ones(3, net.num_skippable)
        torch.testing.assert_close(net(x, keep_all), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(graph.extract_child(module_path_policy(graph, "ir_k3_e6")[0]).eval()(x), ref)


def _conv_macs_of_forward(model: nn.Module, fn) -> int:
    total = 0

    def hook(m, _i, out):
        nonlocal total
        total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        fn()
    for h in handles:
        h.remove()
    return total


def test_blockdrop_routing_skips_and_agrees_with_masked_and_static():
    torch.manual_seed(2)
    net = build_blockdrop(32, 10, width_mult=0.25).eval()
    _randomise_bn(net)
    x = torch.randn(4, 3, 32, 32)
    keep = (torch.rand(4, net.num_skippable, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    keep[0] = 1.0  # one full network, one empty one
    keep[1] = 0.0
    with torch.no_grad():
        routed = net(x, keep, execution="subset")
        masked = net(x, keep, execution="masked")
    assert routed.abs().max() > 1e-3
    torch.testing.assert_close(routed, masked, rtol=1e-4, atol=1e-5)
    # each sample's static network computes the same logits
    statics = [net.extract_static(keep[i], include_policy=False).eval() for i in range(4)]
    with torch.no_grad():
        per_sample = torch.cat([statics[i](x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(per_sample, routed, rtol=1e-4, atol=1e-5)
    # routing really skips: the routed batch costs exactly the sum of the static networks,
    # and the masked path (every cell on every sample) costs 4 full networks
    macs = [count_macs(s, (1, 3, 32, 32)) for s in statics]
    assert macs[1] < min(macs[2], macs[3]) and max(macs[2], macs[3]) < macs[0]
    routed_macs = _conv_macs_of_forward(net.cells, lambda: net(x, keep, execution="subset"))
    masked_macs = _conv_macs_of_forward(net.cells, lambda: net(x, keep, execution="masked"))
    static_cell_macs = sum(_conv_macs_of_forward(s.cells, lambda s=s: s(x[:1])) for s in statics)
    assert routed_macs == static_cell_macs < masked_macs
    # an executed-cell mask (T,) gives the same static network as the keep row (S,)
    executed = net.executed_cells(keep)
    assert executed.shape == (4, 17) and bool(executed[1].sum() == 17 - net.num_skippable)
    assert count_macs(net.extract_static(executed[2], include_policy=False), (1, 3, 32, 32)) == macs[2]
    # the policy network's cost is part of the static network by default
    assert count_macs(net.extract_static(keep[2]), (1, 3, 32, 32)) > macs[2]


def test_blockdrop_losses_train_the_policy_only_unless_joint():
    torch.manual_seed(3)
    net = build_blockdrop(32, 10, width_mult=0.25).train()
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    out = blockdrop_losses(net, x, y, penalty=0.5, alpha=0.7, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and 0.0 <= float(out["usage"]) <= 1.0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.policy_net.parameters())
    assert all(p.grad is None for p in net.cells.parameters())
    net.zero_grad(set_to_none=True)
    out = blockdrop_losses(net, x, y, penalty=0.5, joint=True, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert net.stem[0].weight.grad is not None and net.stem[0].weight.grad.abs().sum() > 0


def test_blockdrop_reward_golden_values():
    correct = torch.tensor([True, True, False, False])
    usage = torch.tensor([0.5, 1.0, 0.2, 0.0])
    torch.testing.assert_close(blockdrop_reward(correct, usage, penalty=0.1), torch.tensor([0.75, 0.0, -0.1, -0.1]))


def test_target_rate_loss_golden_value():
    gates = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])  # rates 0.75, 0.25
    assert float(target_rate_loss(gates, 0.5)) == pytest.approx(0.0625)
    assert float(target_rate_loss(gates, torch.tensor([0.75, 0.25]))) == pytest.approx(0.0)


def test_gumbel_straight_through_is_hard_forward_soft_backward():
    logits = torch.randn(8, 2, requires_grad=True)
    y = gumbel_softmax_st(logits, tau=1.0, generator=torch.Generator().manual_seed(0))
    assert bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())
    (y[:, 1] * torch.arange(8.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def _aig_with_varied_gates(seed: int):
    torch.manual_seed(seed)
    net = build_convnet_aig(32, 10, width_mult=0.25).eval()
    _randomise_bn(net)
    for gate in net.gates:  # decisions that differ between samples (the init keeps every gate open)
        nn.init.normal_(gate.net[-1].weight, 0, 1.0)
        nn.init.zeros_(gate.net[-1].bias)
    return net


def test_convnet_aig_routing_agrees_with_masked_and_static():
    net = _aig_with_varied_gates(4)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        routed, gates = net(x, execution="subset", return_gates=True)
        masked, gates_m = net(x, execution="masked", return_gates=True)
    assert 0 < float(gates.mean()) < 1, "the test needs both skipped and executed cells"
    torch.testing.assert_close(gates, gates_m)
    torch.testing.assert_close(routed, masked, rtol=1e-4, atol=1e-5)
    executed = net.executed_masks(x)
    assert executed.shape == (5, 17) and torch.equal(net.keep_from_executed(executed), gates)
    with torch.no_grad():
        per_sample = torch.cat([net.extract_static(executed[i]).eval()(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(per_sample, routed, rtol=1e-4, atol=1e-5)
    full = torch.ones(net.num_skippable)
    fewest = gates[gates.sum(1).argmin()]
    assert count_macs(net.extract_static(fewest), (1, 3, 32, 32)) < count_macs(net.extract_static(full), (1, 3, 32, 32))
    # forced masks override the gates, on both paths
    keep = torch.zeros(5, net.num_skippable)
    with torch.no_grad():
        torch.testing.assert_close(
            net(x, "subset", keep_mask=keep), net(x, "masked", keep_mask=keep), rtol=1e-4, atol=1e-5
        )


def test_convnet_aig_every_parameter_gets_a_gradient_in_training():
    torch.manual_seed(5)
    net = build_convnet_aig(32, 10, width_mult=0.25).train()
    logits, gates = net(torch.randn(4, 3, 32, 32), return_gates=True, generator=torch.Generator().manual_seed(0))
    loss = logits.logsumexp(1).sum() + target_rate_loss(gates, 0.5)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_pareto_front_on_hand_made_records():
    pol = torch.zeros(17, 5)
    points = [(90.0, 10.0), (85.0, 5.0), (80.0, 6.0), (90.0, 12.0), (95.0, 20.0), (85.0, 5.0), (70.0, 4.0)]
    records = [OneshotRecord(i, pol + i, acc, lat) for i, (acc, lat) in enumerate(points)]
    front = pareto_front(records)
    assert [r.index for r in front] == [6, 1, 0, 4]  # by latency; 2, 3 dominated, 5 duplicates 1
    assert frontier_policies(front)[:, 0, 0].tolist() == [6.0, 1.0, 0.0, 4.0]


class _SumTable:
    """A stand-in latency table: latency = number of modules run."""

    def estimate(self, policy):
        return policy.flatten(1).sum(1)


def test_oneshot_search_is_seeded_and_scores_each_architecture():
    graph = build_meta_graph(32, width_mult=0.25)
    eval_fn = lambda p: float(p[:, 0].sum())  # noqa: E731 -- a deterministic stand-in accuracy
    a = oneshot_search(graph, eval_fn, _SumTable(), n_samples=20, seed=7)
    b = oneshot_search(graph, eval_fn, _SumTable(), n_samples=20, seed=7)
    assert len(a) == 20 and all(torch.equal(r.policy, s.policy) for r, s in zip(a, b))
    assert is_valid_policy(torch.stack([r.policy for r in a]), graph)
    assert all(r.latency_ms == float(r.policy.sum()) and r.accuracy == float(r.policy[:, 0].sum()) for r in a)
    front = pareto_front(a)
    assert all(x.latency_ms < y.latency_ms and x.accuracy < y.accuracy for x, y in zip(front, front[1:]))


def test_shared_weight_eval_keeps_running_statistics():
    torch.manual_seed(6)
    graph = build_meta_graph(32, width_mult=0.25)
    loader = [(torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,)))]
    before = graph.stem[1].running_mean.clone()
    row = module_path_policy(graph, "ir_k3_e6")[0]
    for bn in ("running", "batch"):
        acc = shared_weight_eval_fn(graph, loader, bn=bn)(row)
        assert 0.0 <= acc <= 100.0
    assert torch.equal(graph.stem[1].running_mean, before) and graph.stem[1].momentum == 0.1


def test_measure_model_latency_and_mask_latencies():
    stats = measure_model_latency(build_baseline("shufflenetv2-0.5", 32, 10), 32, timing=FAST_TIMING)
    assert stats["blocks"] == 3 and 0 < stats["min_ms"] <= stats["median_ms"]
    assert stats["min_ms"] <= stats["mean_ms"] and stats["std_ms"] >= 0
    net = build_comparator("blockdrop", 32, 10, width_mult=0.25)
    masks = torch.stack([torch.ones(net.num_skippable)] * 3 + [torch.zeros(net.num_skippable)])
    lat = measure_mask_latencies(net, masks, 32, timing=FAST_TIMING)
    assert lat["n_images"] == 4 and lat["n_distinct"] == 2
    ms = {tuple(p["mask"]): p["ms"] for p in lat["per_mask"]}
    expected = (3 * ms[(1,) * net.num_skippable] + ms[(0,) * net.num_skippable]) / 4
    assert lat["mean_ms"] == pytest.approx(expected)
    assert set(COMPARATOR_NAMES) == {"blockdrop", "convnet-aig"}
