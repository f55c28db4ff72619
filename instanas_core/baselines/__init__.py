"""Baselines and comparators (paper Tables 1-3, Figure 6): torchvision MobileNetV2 /
ShuffleNetV2 / ResNet adapted to small images, the in-space MobileNetV2 path, and the OneshotNAS,
BlockDrop and ConvNet-AIG comparators. See :mod:`.registry_models` for the names."""

from .blockdrop import BlockDropNet, PolicyNet, blockdrop_losses, blockdrop_reward, build_blockdrop
from .convnet_aig import ConvNetAIG, Gate, build_convnet_aig, convnet_aig_loss, gumbel_softmax_st, target_rate_loss
from .gated import GATED_EXECUTIONS, GatedMobileNetV2, StaticPath
from .measure import measure_mask_latencies, measure_model_latency
from .oneshot import (
    OneshotRecord,
    batch_statistics_bn,
    frontier_policies,
    oneshot_search,
    pareto_front,
    shared_weight_eval_fn,
)
from .registry_models import (
    BASELINE_NAMES,
    BASELINES,
    COMPARATOR_NAMES,
    BaselineSpec,
    build_baseline,
    build_comparator,
    build_meta_mobilenetv2_path,
)
from .resnet_cifar import adapt_resnet, build_resnet
from .torchvision_models import adapt_mobilenet_v2, adapt_shufflenet_v2, build_mobilenet_v2, build_shufflenet_v2

__all__ = [
    "BASELINE_NAMES",
    "BASELINES",
    "COMPARATOR_NAMES",
    "BaselineSpec",
    "build_baseline",
    "build_comparator",
    "build_meta_mobilenetv2_path",
    "build_mobilenet_v2",
    "build_shufflenet_v2",
    "build_resnet",
    "adapt_mobilenet_v2",
    "adapt_shufflenet_v2",
    "adapt_resnet",
    "GATED_EXECUTIONS",
    "GatedMobileNetV2",
    "StaticPath",
    "BlockDropNet",
    "PolicyNet",
    "blockdrop_reward",
    "blockdrop_losses",
    "build_blockdrop",
    "ConvNetAIG",
    "Gate",
    "gumbel_softmax_st",
    "target_rate_loss",
    "convnet_aig_loss",
    "build_convnet_aig",
    "OneshotRecord",
    "oneshot_search",
    "pareto_front",
    "frontier_policies",
    "shared_weight_eval_fn",
    "batch_statistics_bn",
    "measure_model_latency",
    "measure_mask_latencies",
]
