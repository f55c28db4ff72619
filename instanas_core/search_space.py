"""The InstaNAS search space as data (paper §4.1, Figure 3).

A search space is a stem, 17 cells and a head. The cells follow MobileNetV2's stage table
(expansion, channels, cells, stride); each cell offers the same five candidate modules:

* ``basic``    -- a ResNet basic block (two 3x3 convolutions), module (a) of Figure 3;
* ``ir_k3_e3`` -- MobileNetV2 inverted residual, 3x3 depthwise kernel, expansion 3;
* ``ir_k3_e6`` -- kernel 3, expansion 6 (the MobileNetV2 module);
* ``ir_k5_e3`` -- kernel 5, expansion 3;
* ``ir_k5_e6`` -- kernel 5, expansion 6.

The stage table is data: one table per input resolution (32 for CIFAR, 64 for TinyImageNet,
224 for ImageNet), scaled by a width multiplier. A preset may change any stride with
:func:`dataclasses.replace` on :class:`StageSpec` -- there is no class per resolution.

The stage table's ``expansion`` column is MobileNetV2's own (the reference network); in the
search space each module carries its own expansion, so the column only documents the backbone.

Combination rule (documented here because every execution path implements it):

* a cell that keeps its shape (stride 1, same channels) computes ``x + sum_k m_k * F_k(x)``
  where ``F_k`` is module ``k``'s residual branch and ``m_k`` the policy bit; selecting nothing
  skips the cell (identity);
* a cell that changes stride or channels computes ``sum_k m_k * F_k(x)`` and must run at least
  one module; when a policy selects none, the default module (``basic``, the paper's module (a),
  §4.1) runs.

With 5 binary choices per cell there are 2^5 = 32 combinations per cell and 32^17 ~ 10^25
child architectures (the paper's count; the at-least-one rule removes the empty combination
in the shape-changing cells, see :func:`space_size`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from .validation import check_width_mult

__all__ = [
    "MODULE_NAMES",
    "DEFAULT_MODULE",
    "RESOLUTIONS",
    "StageSpec",
    "CellSpec",
    "SearchSpace",
    "ModuleSpec",
    "parse_module_name",
    "stage_table",
    "make_search_space",
    "make_divisible",
    "space_size",
]

MODULE_NAMES: tuple[str, ...] = ("basic", "ir_k3_e3", "ir_k3_e6", "ir_k5_e3", "ir_k5_e6")
DEFAULT_MODULE = "basic"
RESOLUTIONS: tuple[int, ...] = (32, 64, 224)


@dataclass(frozen=True)
class ModuleSpec:
    """A candidate module named by a compact spec, in the spirit of timm's block strings."""

    kind: str  # "basic" or "ir"
    kernel: int
    expansion: int

    @property
    def name(self) -> str:
        return "basic" if self.kind == "basic" else f"ir_k{self.kernel}_e{self.expansion}"


def parse_module_name(name: str) -> ModuleSpec:
    """``"ir_k5_e6"`` -> ModuleSpec("ir", 5, 6); ``"basic"`` -> ModuleSpec("basic", 3, 1)."""
    if name == "basic":
        return ModuleSpec("basic", 3, 1)
    parts = name.split("_")
    if len(parts) == 3 and parts[0] == "ir" and parts[1].startswith("k") and parts[2].startswith("e"):
        try:
            return ModuleSpec("ir", int(parts[1][1:]), int(parts[2][1:]))
        except ValueError:
            pass
    raise ValueError(
        f"Unknown module name {name!r}: use 'basic' or 'ir_k<kernel>_e<expansion>', "
        f"for example one of {', '.join(MODULE_NAMES)}."
    )


@dataclass(frozen=True)
class StageSpec:
    """One row of MobileNetV2's stage table: (expansion t, channels c, cells n, stride s)."""

    expansion: int
    channels: int
    num_cells: int
    stride: int


# MobileNetV2 (Sandler et al. 2018, Table 2); the 24-channel stage's stride depends on resolution.
def stage_table(resolution: int) -> tuple[StageSpec, ...]:
    """The paper's stage table for one input resolution.

    32 (CIFAR): stem stride 1 and the 24-channel stage at stride 1 (final map 4x4);
    64 (TinyImageNet): stem stride 1, the 24-channel stage at stride 2 (final map 4x4);
    224 (ImageNet): stem stride 2 and MobileNetV2's own strides (final map 7x7).
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"Unsupported resolution {resolution}: the paper's search spaces are at "
            f"{', '.join(map(str, RESOLUTIONS))} pixels."
        )
    s24 = 1 if resolution == 32 else 2
    return (
        StageSpec(1, 16, 1, 1),
        StageSpec(6, 24, 2, s24),
        StageSpec(6, 32, 3, 2),
        StageSpec(6, 64, 4, 2),
        StageSpec(6, 96, 3, 1),
        StageSpec(6, 160, 3, 2),
        StageSpec(6, 320, 1, 1),
    )


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (MobileNetV2)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class CellSpec:
    """Shape of one cell: channels in/out, stride and the input's spatial size."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int

    @property
    def keeps_shape(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def requires_module(self) -> bool:
        """Shape-changing cells must run at least one module (§4.1)."""
        return not self.keeps_shape

    @property
    def out_size(self) -> int:
        return (self.in_size + self.stride - 1) // self.stride


@dataclass(frozen=True)
class SearchSpace:
    """Everything needed to build a meta-graph; hashable, serialisable, no tensors."""

    resolution: int
    width_mult: float = 1.0
    num_classes: int = 10
    stem_channels: int = 32
    stem_stride: int = 1
    head_channels: int = 1280
    stages: tuple[StageSpec, ...] = ()
    modules: tuple[str, ...] = MODULE_NAMES
    default_module: str = DEFAULT_MODULE

    def __post_init__(self) -> None:
        check_width_mult(self)  # also from a hand-edited lut.json: inf would overflow the channel rounding
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}.")
        if self.default_module not in self.modules:
            raise ValueError(f"default module {self.default_module!r} is not among {self.modules}.")
        for name in self.modules:
            parse_module_name(name)

    @property
    def num_modules(self) -> int:
        return len(self.modules)

    @property
    def num_cells(self) -> int:
        return sum(s.num_cells for s in self.stages)

    @property
    def stem_out_channels(self) -> int:
        return make_divisible(self.stem_channels * self.width_mult)

    @property
    def head_out_channels(self) -> int:
        return make_divisible(self.head_channels * max(1.0, self.width_mult))

    @property
    def default_module_index(self) -> int:
        return self.modules.index(self.default_module)

    def cells(self) -> tuple[CellSpec, ...]:
        cells = []
        channels = self.stem_out_channels
        size = (self.resolution + self.stem_stride - 1) // self.stem_stride
        for stage in self.stages:
            out = make_divisible(stage.channels * self.width_mult)
            for i in range(stage.num_cells):
                stride = stage.stride if i == 0 else 1
                cell = CellSpec(len(cells), channels, out, stride, size)
                cells.append(cell)
                channels, size = out, cell.out_size
        return tuple(cells)

    @property
    def final_size(self) -> int:
        return self.cells()[-1].out_size

    def required_mask(self) -> list[bool]:
        """Per cell: True where the at-least-one rule applies."""
        return [c.requires_module for c in self.cells()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        d = dict(d)
        d["stages"] = tuple(StageSpec(**s) for s in d["stages"])
        d["modules"] = tuple(d["modules"])
        return cls(**d)

    def space_hash(self) -> str:
        """A short hash of the architecture (cells, modules, stem, head); checkpoints and
        latency tables carry it so that artifacts of another space are refused."""
        payload = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_search_space(
    resolution: int,
    width_mult: float = 1.0,
    num_classes: int = 10,
    **overrides,
) -> SearchSpace:
    """The paper's search space at one resolution. ``overrides`` replace fields (for example
    ``stages=...`` with a changed stride, as a preset may do)."""
    base = SearchSpace(
        resolution=resolution,
        width_mult=width_mult,
        num_classes=num_classes,
        stem_stride=2 if resolution == 224 else 1,
        stages=stage_table(resolution),
    )
    return dataclasses.replace(base, **overrides) if overrides else base


def space_size(space: SearchSpace) -> dict:
    """Count child architectures: the paper's 32^17 and the exact count under the
    at-least-one rule (31 choices in shape-changing cells)."""
    k = space.num_modules
    exact = 1
    for cell in space.cells():
        exact *= 2**k - (1 if cell.requires_module else 0)
    naive = (2**k) ** space.num_cells
    return {
        "num_cells": space.num_cells,
        "num_modules": k,
        "naive": naive,
        "naive_log10": math.log10(naive),
        "exact": exact,
        "exact_log10": math.log10(exact),
    }
