"""Every baseline and comparator by name (paper Tables 1-3, Figure 6).

``build_baseline(name, resolution, num_classes)`` builds a static network; the names are a
contract with the command line and the notebooks:

* ``mobilenetv2-0.4``, ``mobilenetv2-1.0``, ``mobilenetv2-1.4``: torchvision MobileNetV2
  (Tables 1-3), see :mod:`.torchvision_models`;
* ``shufflenetv2-0.5`` ... ``shufflenetv2-2.0``: torchvision ShuffleNetV2 (Tables 1-2, §4.2);
* ``resnet50``, ``resnet101``: torchvision ResNets (Table 1), see :mod:`.resnet_cifar`;
* ``meta-mobilenetv2-path``: the MobileNetV2 path *inside our search space* -- every cell runs
  ``ir_k3_e6`` -- cut out of the meta-graph as a standalone, trainable network: the in-space
  reference that InstaNAS's latency reductions are measured against.

``build_comparator(name, resolution, num_classes)`` builds the gated models of Figure 6:
``blockdrop`` and ``convnet-aig`` (see :mod:`.blockdrop`, :mod:`.convnet_aig`). OneshotNAS is a
search procedure over the meta-graph, not a network: see :mod:`.oneshot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from ..meta_graph import build_meta_graph
from ..policy import module_path_policy
from .blockdrop import build_blockdrop
from .convnet_aig import build_convnet_aig
from .gated import CELL_MODULE, GatedMobileNetV2
from .resnet_cifar import build_resnet
from .torchvision_models import build_mobilenet_v2, build_shufflenet_v2, check_resolution

__all__ = [
    "BaselineSpec",
    "BASELINES",
    "BASELINE_NAMES",
    "COMPARATOR_NAMES",
    "build_baseline",
    "build_comparator",
    "build_meta_mobilenetv2_path",
]


@dataclass(frozen=True)
class BaselineSpec:
    """A named baseline: its family and width (or depth). The paper's rows for it are found
    through the ``our_name`` column of :mod:`instanas_core.paper_numbers`."""

    name: str
    family: str  # "mobilenetv2", "shufflenetv2", "resnet", "meta-path"
    size: float  # width multiplier, or depth for ResNets


def _specs() -> tuple[BaselineSpec, ...]:
    return (
        *(BaselineSpec(f"mobilenetv2-{w}", "mobilenetv2", w) for w in (0.4, 1.0, 1.4)),
        *(BaselineSpec(f"shufflenetv2-{w}", "shufflenetv2", w) for w in (0.5, 1.0, 1.5, 2.0)),
        BaselineSpec("resnet50", "resnet", 50),
        BaselineSpec("resnet101", "resnet", 101),
        BaselineSpec("meta-mobilenetv2-path", "meta-path", 1.0),
    )


BASELINES: MappingProxyType = MappingProxyType({s.name: s for s in _specs()})
BASELINE_NAMES: tuple[str, ...] = tuple(BASELINES)
COMPARATOR_NAMES: tuple[str, ...] = ("blockdrop", "convnet-aig")


def build_meta_mobilenetv2_path(resolution: int, num_classes: int, width_mult: float = 1.0) -> nn.Module:
    """The all-``ir_k3_e6`` child of a freshly built meta-graph (a :class:`ChildNetwork`)."""
    graph = build_meta_graph(resolution, width_mult, num_classes)
    return graph.extract_child(module_path_policy(graph, CELL_MODULE)[0]).train()


def build_baseline(name: str, resolution: int, num_classes: int = 10) -> nn.Module:
    """A freshly initialised baseline network (no pretrained weights) for ``resolution`` px."""
    if name not in BASELINES:
        raise ValueError(f"Unknown baseline {name!r}; known baselines: {', '.join(BASELINE_NAMES)}.")
    check_resolution(resolution)
    spec = BASELINES[name]
    if spec.family == "mobilenetv2":
        return build_mobilenet_v2(spec.size, resolution, num_classes)
    if spec.family == "shufflenetv2":
        return build_shufflenet_v2(spec.size, resolution, num_classes)
    if spec.family == "resnet":
        return build_resnet(int(spec.size), resolution, num_classes)
    return build_meta_mobilenetv2_path(resolution, num_classes, spec.size)


def build_comparator(name: str, resolution: int, num_classes: int = 10, width_mult: float = 1.0) -> GatedMobileNetV2:
    """A gated comparator of Figure 6: ``blockdrop`` or ``convnet-aig``."""
    check_resolution(resolution)
    if name == "blockdrop":
        return build_blockdrop(resolution, num_classes, width_mult)
    if name == "convnet-aig":
        return build_convnet_aig(resolution, num_classes, width_mult)
    raise ValueError(f"Unknown comparator {name!r}; known comparators: {', '.join(COMPARATOR_NAMES)}.")
