"""The instance-aware controller (paper §3.3).

"A three-layer convolutional network with large kernels": the image is first downsampled
(bilinear, to ``input_size``) because the controller's latency is part of every inference
(§3.1) and it only needs low-level cues (colour, texture, difficulty). Three 5x5 stride-2
convolutions with BatchNorm and ReLU, global average pooling and one linear layer produce
``T * K`` logits; like the original code, the output is ``sigmoid(...).view(B, T, K)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .search_space import SearchSpace

__all__ = ["ControllerConfig", "Controller", "build_controller", "DEFAULT_CONTROLLER_INPUT"]

# Downsampled input size per image resolution: a quarter of the pixels at 32/64, ~1/12 at 224.
DEFAULT_CONTROLLER_INPUT = {32: 16, 64: 32, 224: 64}


@dataclass(frozen=True)
class ControllerConfig:
    input_size: int = 16
    channels: tuple[int, int, int] = (16, 32, 64)
    kernel: int = 5


class Controller(nn.Module):
    def __init__(self, space: SearchSpace, cfg: ControllerConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ControllerConfig(input_size=DEFAULT_CONTROLLER_INPUT.get(space.resolution, 32))
        self.cfg = cfg
        self.num_cells, self.num_modules = space.num_cells, space.num_modules
        layers: list[nn.Module] = []
        in_ch = 3
        for ch in cfg.channels:
            layers += [
                nn.Conv2d(in_ch, ch, cfg.kernel, 2, cfg.kernel // 2, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_ch, self.num_cells * self.num_modules)
        # Start every module near p = 0.5 with small variation: maximal exploration at the start.
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.cfg.input_size or x.shape[-2] != self.cfg.input_size:
            x = F.interpolate(x, size=(self.cfg.input_size,) * 2, mode="bilinear", align_corners=False)
        logits = self.fc(self.features(x))  # (B, T*K)
        return logits.view(-1, self.num_cells, self.num_modules)  # (B, T, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of selecting each module: (B, T, K) in (0, 1)."""
        return torch.sigmoid(self.forward_logits(x))


def build_controller(space_or_graph, cfg: ControllerConfig | None = None, device=None) -> Controller:
    space = space_or_graph if isinstance(space_or_graph, SearchSpace) else space_or_graph.space
    ctrl = Controller(space, cfg)
    return ctrl.to(device) if device is not None else ctrl
