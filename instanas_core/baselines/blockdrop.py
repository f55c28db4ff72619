"""A BlockDrop-style comparator (Wu et al. 2018, "BlockDrop: Dynamic Inference Paths in
Residual Networks"), in the MobileNetV2 space of Figure 6.

A small policy network looks at the image once and outputs, per sample, a keep probability for
every skippable cell of the fixed MobileNetV2 path (:class:`GatedMobileNetV2`); the sampled
keep mask then decides which cells run. As in BlockDrop:

* the policy network is a cheap CNN on a downsampled image -- here the same three 5x5
  stride-2 convolutions as InstaNAS's controller (§3.3), so both decide at the same cost;
* reward: ``1 - usage^2`` for a correct prediction, ``-penalty`` otherwise, where usage is the
  share of skippable cells kept (:func:`blockdrop_reward`);
* REINFORCE with the self-critical baseline of the greedy policy (``p > 0.5``), and BlockDrop's
  encouragement ``p' = alpha * p + (1 - alpha) * (1 - p)`` for exploration; the log-probability
  is taken under the distribution the actions were drawn from (``p'``), which keeps the
  estimator unbiased;
* ``joint=True`` adds the classification loss of the sampled architecture (BlockDrop's joint
  fine-tuning stage); BlockDrop's curriculum (unfreezing blocks one by one) is not reproduced.

At inference :meth:`BlockDropNet.forward` uses the greedy decision and really skips cells
(``execution="subset"``); ``execution="masked"`` is the reference path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..policy import encourage, policy_log_prob
from ..search_space import SearchSpace, make_search_space
from .gated import GatedMobileNetV2, StaticPath

__all__ = [
    "PolicyNet",
    "BlockDropNet",
    "blockdrop_reward",
    "blockdrop_losses",
    "build_blockdrop",
]

# Downsampled input per image resolution: the values InstaNAS's controller uses (controller.py).
POLICY_INPUT = {32: 16, 64: 32, 224: 64}


class PolicyNet(nn.Module):
    """Image -> per-sample keep probabilities (B, S): 3 conv(5x5, s2)-BN-ReLU, pool, linear."""

    def __init__(self, num_outputs: int, input_size: int, channels: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.input_size = input_size
        layers: list[nn.Module] = []
        in_ch = 3
        for ch in channels:
            layers += [nn.Conv2d(in_ch, ch, 5, 2, 2, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
            in_ch = ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_ch, num_outputs)
        # every cell starts near p = 0.5 plus a positive bias: keep most cells early, like a
        # pre-trained network that has never skipped anything
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.constant_(self.fc.bias, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.fc(self.features(x)))  # (B, S)


class BlockDropNet(GatedMobileNetV2):
    """The MobileNetV2 path plus a BlockDrop policy network over its skippable cells."""

    def __init__(self, space: SearchSpace, dropout: float = 0.0, policy_input: int | None = None) -> None:
        super().__init__(space, dropout)
        self.policy_net = PolicyNet(self.num_skippable, policy_input or POLICY_INPUT.get(space.resolution, 32))

    def policy_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Keep probabilities (B, S) from the policy network."""
        return self.policy_net(x)

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        """The inference-time (greedy) keep mask: p > 0.5, (B, S) float."""
        return (self.policy_probs(x).detach() > 0.5).float()

    def forward(
        self, x: torch.Tensor, keep_mask: torch.Tensor | None = None, execution: str = "subset"
    ) -> torch.Tensor:
        """Logits (B, num_classes). Without ``keep_mask`` the policy network decides (greedy)."""
        keep = self.decide(x) if keep_mask is None else keep_mask
        return self.head(self.forward_cells(x, keep, execution))

    def executed_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample executed-cell masks (B, T) bool of the greedy decision."""
        return self.executed_cells(self.decide(x))

    def extract_static(self, mask_row: torch.Tensor, include_policy: bool = True) -> StaticPath:
        """The static network of one keep row (S,) or executed row (T,); with ``include_policy``
        it runs the policy network first, so that its cost is part of the measured latency."""
        return self._extract(mask_row, decider=self.policy_net if include_policy else None)


def blockdrop_reward(correct: torch.Tensor, usage: torch.Tensor, penalty: float) -> torch.Tensor:
    """BlockDrop's reward per sample: ``1 - usage^2`` if correct, else ``-penalty``. (B,)."""
    usage = usage.float()
    return torch.where(correct.bool(), 1.0 - usage**2, torch.full_like(usage, -float(penalty)))


def blockdrop_losses(
    model: BlockDropNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    penalty: float,
    alpha: float = 0.8,
    joint: bool = False,
    execution: str = "subset",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One BlockDrop step's losses: REINFORCE with the greedy (self-critical) baseline.

    Returns ``loss`` (to backpropagate) and detached statistics: ``policy_loss``, ``ce_loss``
    (zero unless ``joint``), ``reward`` (mean of the sampled policy), ``usage`` and ``accuracy``
    (of the sampled policy, fractions of the batch) and ``greedy_usage``.
    """
    probs = model.policy_probs(images)  # (B, S)
    p = encourage(probs, alpha)  # the distribution actions are drawn from (differentiable in probs)
    u = torch.rand(p.shape, generator=generator, device="cpu" if generator is not None else p.device)
    actions = (u.to(p.device) < p.detach()).float()  # (B, S)
    greedy = (probs.detach() > 0.5).float()  # (B, S)

    with torch.set_grad_enabled(joint and torch.is_grad_enabled()):
        logits = model(images, actions, execution)  # (B, num_classes)
    with torch.no_grad():
        greedy_logits = model(images, greedy, execution)
    correct = logits.detach().argmax(1) == labels
    reward = blockdrop_reward(correct, model.usage(actions), penalty)  # (B,)
    baseline = blockdrop_reward(greedy_logits.argmax(1) == labels, model.usage(greedy), penalty)
    advantage = (reward - baseline).detach()
    policy_loss = -(advantage * policy_log_prob(actions, p)).mean()
    ce_loss = F.cross_entropy(logits, labels) if joint else policy_loss.new_zeros(())
    return {
        "loss": policy_loss + ce_loss,
        "policy_loss": policy_loss.detach(),
        "ce_loss": ce_loss.detach(),
        "reward": reward.mean(),
        "usage": model.usage(actions).mean(),
        "greedy_usage": model.usage(greedy).mean(),
        "accuracy": correct.float().mean(),
    }


def build_blockdrop(resolution: int, num_classes: int, width_mult: float = 1.0, dropout: float = 0.0) -> BlockDropNet:
    """BlockDrop over the MobileNetV2 path of the paper's space at ``resolution``."""
    return BlockDropNet(make_search_space(resolution, width_mult, num_classes), dropout)
