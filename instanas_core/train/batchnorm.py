"""BatchNorm statistics that fit the policies being judged (a named option, docs/science-options.md).

Cells sum the outputs of the modules they run, so the scale of every activation depends on how
many modules ran: running statistics gathered under drop-path (about 2.5 modules per cell at the
end of §3.2's schedule) misjudge the all-modules path, and those of one policy distribution
misjudge another. Re-estimating the statistics with the policies to be judged, on a few training
batches in train mode and without gradients, is the remedy of once-for-all and BigNAS
("BN recalibration"); the weights are untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..distributed import unwrap
from .data import to_device

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(
    graph: nn.Module,
    loader: Iterable,
    policy_fn: Callable[[torch.Tensor], torch.Tensor],
    batches: int,
    device: torch.device,
    channels_last: bool = True,
    execution: str = "subset",
) -> int:
    """Reset every BatchNorm of ``graph`` (a meta-graph) and re-estimate its running mean and
    variance as the plain average over ``batches`` batches of ``loader`` run with the policies
    ``policy_fn(x)`` (B, T, K). Leaves ``graph`` in eval mode; returns the images used. With
    subset execution a module's BatchNorm sees exactly the images whose policy runs it."""
    graph = unwrap(graph)
    norms = [m for m in graph.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    graph.train()
    seen = 0
    try:
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            x = to_device(batch[0], device, channels_last)  # (B, C, H, W); labels unused
            graph(x, policy_fn(x), execution)
            seen += x.shape[0]
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        graph.eval()
    return seen
