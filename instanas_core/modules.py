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

__all__ = ["BasicBranch", "InvertedResidualBranch", "build_module", "conv_bn_act"]


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
