"""Instance-aware inference that really saves time (paper §3.1, "inference phase").

The paper's latencies come from a look-up table and the original code ran every module on every
sample before masking, so at run time nothing was saved. :class:`InstaNASNet` pairs a controller
with a meta-graph and runs, for each sample, only the modules its policy selects:

* batch > 1: the meta-graph's ``subset`` execution, i.e. each module runs once on exactly the
  samples that selected it (grouped with ``index_select`` / ``index_add``);
* batch 1 in eval mode: a fast path that looks the policy up in a small LRU cache of
  weight-sharing child views (:meth:`MetaGraph.extract_child` with ``share_weights=True``), so
  the cost is the controller plus a static child network, with no per-cell routing logic.

The controller's greedy policy (p > 0.5, made valid) is used at inference, as in §3.3's
self-critical baseline.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .controller import Controller
from .meta_graph import ChildNetwork, MetaGraph
from .policy import greedy_policy

__all__ = ["InstaNASNet", "policy_key"]


def policy_key(policy_row: torch.Tensor) -> bytes:
    """A hashable key of one (T, K) policy row."""
    return (policy_row.detach().to("cpu") > 0.5).numpy().tobytes()


class InstaNASNet(nn.Module):
    """Controller + meta-graph; ``forward(x)`` returns ``(logits, policy)``."""

    def __init__(self, controller: Controller, meta_graph: MetaGraph, cache_size: int = 256) -> None:
        super().__init__()
        self.controller = controller
        self.meta_graph = meta_graph
        self.cache_size = cache_size
        self._children: OrderedDict[bytes, ChildNetwork] = OrderedDict()

    def train(self, mode: bool = True) -> "InstaNASNet":
        # cached views share weights, but BatchNorm/dropout modes follow the parent: drop them
        self._children.clear()
        return super().train(mode)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy policies for a batch: (B, T, K)."""
        return greedy_policy(self.controller(x), self.meta_graph)

    def child_for(self, policy_row: torch.Tensor) -> ChildNetwork:
        key = policy_key(policy_row)
        child = self._children.get(key)
        if child is None:
            child = self.meta_graph.extract_child(policy_row, share_weights=True)
            self._children[key] = child
            if len(self._children) > self.cache_size:
                self._children.popitem(last=False)
        else:
            self._children.move_to_end(key)
        return child

    def forward(self, x: torch.Tensor, execution: str = "routed") -> tuple[torch.Tensor, torch.Tensor]:
        """execution: ``routed`` (subset, with the batch-1 fast path) or ``masked`` (reference)."""
        policy = self.route(x)  # (B, T, K)
        if execution == "masked":
            return self.meta_graph(x, policy, execution="masked"), policy
        if execution != "routed":
            raise ValueError(f"execution must be 'routed' or 'masked', got {execution!r}.")
        if x.shape[0] == 1 and not self.training:
            return self.child_for(policy[0])(x), policy
        return self.meta_graph(x, policy, execution="subset"), policy
