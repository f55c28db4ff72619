"""Timing-free costs: multiply-accumulates (MACs) and parameter counts (paper §4.1 uses
latency; FLOPs and parameters are the device-agnostic proxies of Elsken et al. / Zhou et al.,
§2). Counted by PyTorch's FlopCounterMode at the real input shape."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_macs", "count_params"]


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: tuple[int, ...], device="cpu") -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included), in eval mode:
    PyTorch's own :class:`~torch.utils.flop_counter.FlopCounterMode` counts the FLOPs of every
    convolution and matrix product the forward pass dispatches (2 per multiply-accumulate; element-
    wise operations, BatchNorm and pooling are not counted, as in the papers' MAC counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            module(torch.zeros(input_shape, device=device))
    finally:
        module.train(was_training)
    return int(counter.get_total_flops()) // 2
