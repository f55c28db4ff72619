"""MAC counts (flops.py): PyTorch's FlopCounterMode against an independent count by forward hooks
on every convolution and linear layer, on torchvision's MobileNetV2 and ShuffleNetV2 and on a
child of the meta-graph, and against MobileNetV2's published cost."""

import pytest
import torch
from torch import nn
from torchvision import models

from instanas_core import build_meta_graph, sample_random_policy
from instanas_core.flops import count_macs, count_params


def _hook_macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    total = 0

    def conv(m, _inp, out):
        nonlocal total
        total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)

    def linear(m, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    module.eval()
    with torch.no_grad():
        module(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: models.mobilenet_v2(), (1, 3, 224, 224)),
        (lambda: models.mobilenet_v2(width_mult=0.5, num_classes=10), (2, 3, 32, 32)),
        (lambda: models.shufflenet_v2_x1_0(num_classes=10), (1, 3, 32, 32)),
    ],
)
def test_flop_counter_agrees_with_hooks_on_torchvision_models(make, shape):
    model = make()
    assert count_macs(model, shape) == _hook_macs(model, shape)


def test_mobilenetv2_matches_its_published_cost():
    # MobileNetV2 1.0 at 224 px: about 300 M multiply-adds (Sandler et al., Table 3; torchvision: 0.30 GFLOPS).
    macs = count_macs(models.mobilenet_v2(), (1, 3, 224, 224))
    assert 295e6 < macs < 305e6
    assert count_params(models.mobilenet_v2()) == 3_504_872


def test_flop_counter_agrees_with_hooks_on_a_meta_graph_child():
    graph = build_meta_graph(32, width_mult=0.5, num_classes=10)
    child = graph.extract_child(sample_random_policy(graph, 1, torch.Generator().manual_seed(0))[0])
    assert count_macs(child, (1, 3, 32, 32)) == _hook_macs(child, (1, 3, 32, 32))
