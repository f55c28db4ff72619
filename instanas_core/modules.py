"""The five candidate modules of a cell (paper §4.1, Figure 3).

Each module is a *branch* F(x): the cell adds the identity itself when its shape is kept
(see :mod:`instanas_core.search_space` for the combination rule), so no module carries its
own shortcut. That lets one cell sum several branches and a child network reuse the branch
unchanged.

* ``BasicBranch``: conv3x3(stride)-BN-ReLU-conv3x3-BN, ResNet's basic block (He et al. 2016)
  without its shortcut and without the ReLU after the addition, so that, like MobileNetV2's
  linear bottleneck, the cell's output is a linear sum.
* ``InvertedResidualBranch``: 1x1 expand-BN-ReLU6, kxk depthwise(stride)-BN-ReLU6,
  1x1 project-BN (Sandler et al. 2018).
"""

from __future__ import annotations

import torch
from torch import nn

from .search_space import parse_module_name

__all__ = [
    "BasicBranch",
    "InvertedResidualBranch",
    "build_module",
    "conv_bn_act",
    "build_stem",
    "build_head",
    "init_weights",
]


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class BasicBranch(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_act(in_ch, out_ch, 3, stride, act=nn.ReLU)
        self.conv2 = conv_bn_act(out_ch, out_ch, 3, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))  # (B, C_out, H/s, W/s)


class InvertedResidualBranch(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.expand = conv_bn_act(in_ch, hidden, 1)
        self.depthwise = conv_bn_act(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn_act(hidden, out_ch, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.depthwise(self.expand(x)))  # (B, C_out, H/s, W/s)


def build_module(name: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Build a module branch from its spec name (``basic``, ``ir_k3_e6``, ...)."""
    spec = parse_module_name(name)
    if spec.kind == "basic":
        return BasicBranch(in_ch, out_ch, stride)
    return InvertedResidualBranch(in_ch, out_ch, stride, spec.kernel, spec.expansion)


def build_stem(space) -> nn.Module:
    """The stem every network of the search space starts with: 3x3 conv, BN, ReLU6 (Fig. 3)."""
    return conv_bn_act(3, space.stem_out_channels, 3, space.stem_stride)


def build_head(space, in_channels: int, dropout: float = 0.0) -> nn.Sequential:
    """The head every network of the search space ends with: 1x1 conv to ``head_out_channels``,
    global average pooling, dropout and the linear classifier."""
    return nn.Sequential(
        conv_bn_act(in_channels, space.head_out_channels, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(space.head_out_channels, space.num_classes),
    )


def init_weights(model: nn.Module) -> None:
    """The meta-graph's initialisation: Kaiming fan-out convolutions, unit BatchNorm, a small
    linear classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
