"""Routed inference (InstaNASNet): routed == masked reference, batch-1 fast path, child cache."""

import torch

from instanas_core import build_controller, build_meta_graph
from instanas_core.routing import InstaNASNet, policy_key


def _net(cache_size=4):
    torch.manual_seed(0)
    graph = build_meta_graph(32, width_mult=0.25)
    ctrl = build_controller(graph)
    # a spread of logits so that greedy policies differ between images
    torch.nn.init.normal_(ctrl.fc.weight, 0, 1.0)
    return InstaNASNet(ctrl, graph, cache_size=cache_size).eval()


def test_routed_matches_masked_and_fast_path():
    net = _net()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        routed, policy = net(x)
        masked, policy2 = net(x, execution="masked")
        single = torch.cat([net(x[i : i + 1])[0] for i in range(6)])
    assert torch.equal(policy, policy2)
    assert len({policy_key(p) for p in policy}) > 1  # several architectures in one batch
    torch.testing.assert_close(routed, masked, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(single, masked, rtol=1e-4, atol=1e-5)


def test_child_cache_reuses_and_bounds():
    net = _net(cache_size=2)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        policy = net.route(x)
        first = net.child_for(policy[0])
        assert net.child_for(policy[0]) is first
        # the cached view shares the meta-graph's parameters: no copies
        graph_params = {id(p) for p in net.meta_graph.parameters()}
        assert all(id(p) in graph_params for p in first.parameters())
        for row in policy:
            net.child_for(row)
    assert len(net._children) <= 2
    net.train()
    assert len(net._children) == 0
