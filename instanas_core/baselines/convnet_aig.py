"""A ConvNet-AIG-style comparator (Veit & Belongie 2018, "Convolutional Networks with Adaptive
Inference Graphs"), in the MobileNetV2 space of Figure 6.

Every skippable cell of the fixed MobileNetV2 path (:class:`GatedMobileNetV2`) gets a gate that
looks at the cell's *input* and decides, per sample, whether the cell runs:

    global average pool -> linear(C, 16) -> BN -> ReLU -> linear(16, 2) -> (skip, execute) logits.

* Training: straight-through Gumbel-softmax -- the forward pass uses the hard one-hot decision,
  the backward pass the soft (temperature ``tau``) probabilities. Training runs the
  ``"masked"`` path (``x + gate * F(x)`` for every sample) because a skipped sample's gate needs
  ``F(x)`` for its gradient.
* The target-rate loss pushes each gate's execution rate over the batch towards a target ``t``:
  ``mean_l (mean_b z_{b,l} - t)^2`` (:func:`target_rate_loss`), added to the cross-entropy.
* Inference: hard gates (``execute`` logit larger), and ``"subset"`` execution really skips;
  ``"masked"`` is the reference path.

Because each gate sees the activations so far, the decisions are made on the fly; the executed
cells are returned alongside the logits (``return_gates=True``) for latency measurement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..search_space import SearchSpace, make_search_space
from .gated import GATED_EXECUTIONS, GatedMobileNetV2, StaticPath

__all__ = [
    "Gate",
    "ConvNetAIG",
    "gumbel_softmax_st",
    "target_rate_loss",
    "convnet_aig_loss",
    "build_convnet_aig",
]


class Gate(nn.Module):
    """(B, C, H, W) -> (B, 2) logits for (skip, execute): ConvNet-AIG's gate."""

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2),
        )
        # start every gate open (execute logit +2): training begins from the full network and
        # the target-rate loss then closes gates, instead of starting from a random half
        nn.init.normal_(self.net[-1].weight, 0, 0.01)
        with torch.no_grad():
            self.net[-1].bias.copy_(torch.tensor([0.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gumbel_softmax_st(logits: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through Gumbel-softmax: hard one-hot forward, soft gradient. (B, 2) -> (B, 2).

    Written out (rather than ``F.gumbel_softmax``) so that a ``generator`` makes it reproducible.
    """
    u = torch.rand(logits.shape, generator=generator, device="cpu" if generator is not None else logits.device)
    u = u.to(logits.device).clamp(1e-10, 1.0 - 1e-7)  # keep both logarithms finite
    g = -torch.log(-torch.log(u))  # Gumbel(0, 1)
    soft = F.softmax((logits + g) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def target_rate_loss(gate_rates: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    """ConvNet-AIG's target-rate loss: ``mean over cells of (mean over batch of gates - t)^2``.

    gate_rates: (B, S) gate values (0/1 forward, straight-through gradient); target: a scalar or
    one rate per cell (S,).
    """
    rates = gate_rates.float().mean(0)  # (S,)
    target = torch.as_tensor(target, dtype=rates.dtype, device=rates.device)
    return ((rates - target) ** 2).mean()


def convnet_aig_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gates: torch.Tensor,
    target: float | torch.Tensor,
    rate_weight: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Cross-entropy plus ``rate_weight`` times the target-rate loss (ConvNet-AIG used 2)."""
    ce = F.cross_entropy(logits, labels)
    rate = target_rate_loss(gates, target)
    return {"loss": ce + rate_weight * rate, "ce_loss": ce.detach(), "rate_loss": rate.detach()}


class ConvNetAIG(GatedMobileNetV2):
    """The MobileNetV2 path with a ConvNet-AIG gate before every skippable cell."""

    def __init__(self, space: SearchSpace, dropout: float = 0.0, gate_hidden: int = 16, tau: float = 1.0) -> None:
        super().__init__(space, dropout)
        self.tau = tau
        # built after the backbone's initialisation, so each gate keeps its own (open) init
        self.gates = nn.ModuleList(Gate(c, gate_hidden) for c in self.skippable_channels)

    def gate_values(self, s: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gate ``s`` on the cell input x (B, C, H, W): (B,) execute decisions, 0/1 forward;
        straight-through Gumbel in training, deterministic argmax in eval."""
        logits = self.gates[s](x)  # (B, 2)
        if self.training:
            return gumbel_softmax_st(logits, self.tau, generator)[:, 1]
        return (logits[:, 1] > logits[:, 0]).to(x.dtype)

    def forward(
        self,
        x: torch.Tensor,
        execution: str | None = None,
        keep_mask: torch.Tensor | None = None,
        return_gates: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, num_classes), and with ``return_gates`` the gates (B, S).

        ``execution`` defaults to ``"masked"`` in training (every gate gets a gradient) and
        ``"subset"`` in eval (skipped cells cost nothing). ``keep_mask`` (B, S) overrides the
        gates (they are still evaluated, as a deployed model would).
        """
        execution = execution or ("masked" if self.training else "subset")
        if execution not in GATED_EXECUTIONS:
            raise ValueError(f"execution must be one of {GATED_EXECUTIONS}, got {execution!r}.")
        forced = self.check_keep(keep_mask, x.shape[0]) if keep_mask is not None else None
        x = self.stem(x)  # (B, C_stem, H, W)
        gates: list[torch.Tensor] = []
        s = 0
        for t, cell in enumerate(self.cells):
            if t in self.skippable:
                g = self.gate_values(s, x, generator)  # (B,)
                if forced is not None:
                    g = forced[:, s].to(x.dtype)
                x = self.apply_skippable(t, x, g, execution)
                gates.append(g)
                s += 1
            else:
                x = cell(x)
        logits = self.head(x)
        return (logits, torch.stack(gates, 1)) if return_gates else logits

    @torch.no_grad()
    def executed_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample executed-cell masks (B, T) bool of the hard inference-time gates."""
        was_training = self.training
        self.eval()
        try:
            _, gates = self(x, execution="subset", return_gates=True)
        finally:
            self.train(was_training)
        return self.executed_cells(gates)

    def extract_static(self, mask_row: torch.Tensor, include_gates: bool = True) -> StaticPath:
        """The static network of one keep row (S,) or executed row (T,); with ``include_gates``
        every gate is still evaluated at its position, so its cost is part of the latency."""
        return self._extract(mask_row, gates=self.gates if include_gates else None)


def build_convnet_aig(resolution: int, num_classes: int, width_mult: float = 1.0, dropout: float = 0.0) -> ConvNetAIG:
    """ConvNet-AIG over the MobileNetV2 path of the paper's space at ``resolution``."""
    return ConvNetAIG(make_search_space(resolution, width_mult, num_classes), dropout)
