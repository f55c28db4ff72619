"""Meta-graph (§3.2): module shapes, gradients, and the equivalence of the three execution paths
(masked reference, subset routing, extracted child) in eval mode."""

import pytest
import torch

from instanas_core import build_controller, build_meta_graph, sample_random_policy
from instanas_core.modules import build_module
from instanas_core.policy import all_ones_policy, enforce_at_least_one, module_path_policy
from instanas_core.search_space import MODULE_NAMES, make_search_space

RESOLUTIONS = (32, 64, 224)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_shapes_every_cell(resolution, name):
    space = make_search_space(resolution, width_mult=0.25)
    torch.manual_seed(0)
    for cell in space.cells():
        module = build_module(name, cell.in_channels, cell.out_channels, cell.stride).eval()
        x = torch.randn(2, cell.in_channels, cell.in_size, cell.in_size)
        with torch.no_grad():
            y = module(x)
        assert y.shape == (2, cell.out_channels, cell.out_size, cell.out_size)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_controller_shapes(resolution):
    graph = build_meta_graph(resolution, width_mult=0.25)
    probs = build_controller(graph)(torch.randn(3, 3, resolution, resolution))
    assert probs.shape == (3, 17, 5)
    assert bool(((probs > 0) & (probs < 1)).all())


@pytest.mark.parametrize("execution", ["masked", "subset"])
def test_every_parameter_gets_a_gradient(execution):
    graph = build_meta_graph(32, width_mult=0.25).train()
    x = torch.randn(4, 3, 32, 32)
    logits = graph(x, all_ones_policy(graph, 4), execution=execution)
    logits.logsumexp(1).sum().backward()
    params = dict(graph.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("resolution,batch", [(32, 8), (64, 4), (224, 2)])
def test_masked_subset_child_agree(resolution, batch):
    torch.manual_seed(resolution)
    graph = build_meta_graph(resolution, width_mult=0.5).eval()
    _randomise_bn(graph)
    policy = sample_random_policy(graph, batch, torch.Generator().manual_seed(3))
    x = torch.randn(batch, 3, resolution, resolution)
    with torch.no_grad():
        masked = graph(x, policy, execution="masked")
        subset = graph(x, policy, execution="subset")
        child = torch.cat([graph.extract_child(policy[i]).eval()(x[i : i + 1]) for i in range(batch)])
    assert masked.abs().max() > 1e-3  # a non-trivial function, not all zeros
    torch.testing.assert_close(subset, masked, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(child, masked, rtol=1e-4, atol=1e-5)


def test_policies_differ_so_outputs_differ():
    graph = build_meta_graph(32, width_mult=0.5).eval()
    _randomise_bn(graph)
    x = torch.randn(1, 3, 32, 32).expand(2, 3, 32, 32)
    policy = torch.cat([all_ones_policy(graph), module_path_policy(graph, "ir_k3_e6")])
    with torch.no_grad():
        out = graph(x, policy)
    assert not torch.allclose(out[0], out[1])


def test_skipped_cell_is_identity_and_child_drops_it():
    graph = build_meta_graph(32, width_mult=0.5).eval()
    policy = module_path_policy(graph, "ir_k3_e6")[0]
    keep = [c.keeps_shape for c in graph.space.cells()]
    t = keep.index(True)
    policy[t] = 0  # skip one shape-keeping cell
    cell = graph.cells[t]
    x = torch.randn(2, cell.spec.in_channels, cell.spec.in_size, cell.spec.in_size)
    mask = torch.zeros(2, 5)
    with torch.no_grad():
        assert torch.equal(cell.forward_subset(x, mask.bool()), x)
        assert torch.equal(cell.forward_masked(x, mask), x)
    child = graph.extract_child(policy)
    assert len(child.cells) == 16


def test_required_cell_with_no_module_is_refused_not_repaired():
    """forward and extract_child validate a policy and never change it; the at-least-one rule is
    applied where policies are made (enforce_at_least_one runs the default module there)."""
    graph = build_meta_graph(32, width_mult=0.5).eval()
    _randomise_bn(graph)
    empty = torch.zeros(1, 17, 5)
    default_only = torch.zeros(1, 17, 5)
    required = [c.requires_module for c in graph.space.cells()]
    default_only[0, required, graph.space.default_module_index] = 1
    x = torch.randn(1, 3, 32, 32)
    for execution in ("subset", "masked"):
        with pytest.raises(ValueError, match=r"selects no module in cell 0, which changes shape.*enforce_at_least_one"):
            graph(x, empty, execution=execution)
    with pytest.raises(ValueError, match="selects no module"):
        graph.extract_child(empty[0])
    fixed = enforce_at_least_one(empty, graph)
    assert torch.equal(fixed, default_only)
    with torch.no_grad():
        torch.testing.assert_close(graph(x, fixed, execution="masked"), graph(x, default_only))
    child = graph.extract_child(fixed[0])
    assert len(child.cells) == sum(required)
    assert all(len(c.branches) == 1 for c in child.cells)
    assert int(child.policy.sum()) == sum(required)


def test_bad_policy_and_execution_refused():
    graph = build_meta_graph(32, width_mult=0.25)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="policy must have shape"):
        graph(x, torch.ones(2, 16, 5))
    with pytest.raises(ValueError, match="execution must be one of"):
        graph(x, torch.ones(2, 17, 5), execution="fast")


def test_single_row_policy_broadcasts():
    graph = build_meta_graph(32, width_mult=0.25).eval()
    x = torch.randn(3, 3, 32, 32)
    row = sample_random_policy(graph, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(graph(x, row[0]), graph(x, row.expand(3, 17, 5)))


def _randomise_bn(model):
    """Non-trivial running statistics so that eval-mode equivalence means something."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("execution", ["masked", "subset"])
def test_channels_last_survives_every_cell(execution, train):
    """NHWC in, NHWC through every cell (subset sums sub-batches into a buffer of the input's
    layout), and the same numbers as NCHW."""
    torch.manual_seed(0)
    graph = build_meta_graph(32, 0.25).train(train)
    x = torch.randn(6, 3, 32, 32)
    policy = sample_random_policy(graph, 6, torch.Generator().manual_seed(1), density=(0.2, 0.6))
    ref = graph.forward_features(x, policy, execution)  # (6, C_last, h, w), NCHW
    graph = graph.to(memory_format=torch.channels_last)
    h = graph.stem(x.contiguous(memory_format=torch.channels_last))
    mask = policy > 0.5
    for t, cell in enumerate(graph.cells):
        h = cell.forward_subset(h, mask[:, t]) if execution == "subset" else cell.forward_masked(h, policy[:, t])
        assert h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous(), f"cell {t} left NHWC"
    assert torch.allclose(h, ref, atol=1e-3, rtol=1e-3)  # train-mode BatchNorm of 6 samples amplifies rounding
