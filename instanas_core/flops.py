"""Timing-free costs: multiply-accumulates (MACs) and parameter counts (paper §4.1 uses
latency; FLOPs and parameters are the device-agnostic proxies of Elsken et al. / Zhou et al.,
§2). Counted with forward hooks on convolutions and linear layers at the real input shape."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_macs", "count_params"]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: tuple[int, ...], device="cpu") -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        module(torch.zeros(input_shape, device=device))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
