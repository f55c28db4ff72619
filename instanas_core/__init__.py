"""instanas_core: a runnable reproduction of InstaNAS (Cheng et al., "InstaNAS: Instance-aware
Neural Architecture Search").

The public names below are a contract used by the notebooks, the command line and the tests.
"""

import os as _os

# Subset routing hands every module sub-batches of changing size, and oneDNN (PyTorch's CPU
# convolutions) keeps one compiled primitive per shape in a cache of 1024 by default. Drop-path
# pre-training needs several thousand (85 modules x 3 convolutions x 3 passes x sub-batch sizes),
# so the default cache thrashes and every step recompiles: routed drop-path steps then ran no
# faster than masked ones (3.4 s vs 3.1 s per batch of 32 at width 0.5 on 2 cores; 1.9 s with
# this capacity). oneDNN reads the variable when it first builds a primitive, so it only helps when
# this package is imported before the process's first convolution; a value set by the user wins.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32768")

from .data import (
    DatasetError,
    DatasetInfo,
    balanced_subset,
    build_dataset,
    build_loader,
    dataset_info,
    list_datasets,
)
from .controller import Controller, ControllerConfig, build_controller
from .meta_graph import ChildNetwork, MetaGraph, build_meta_graph
from .policy import (
    enforce_at_least_one,
    encourage,
    greedy_policy,
    is_valid_policy,
    policy_entropy,
    policy_log_prob,
    sample_policy,
    sample_random_policy,
)
from .config import (
    PRESETS,
    Config,
    ConfigError,
    EvaluateConfig,
    ExperimentConfig,
    FinetuneConfig,
    PretrainConfig,
    SearchConfig,
    apply_overrides,
    get_preset,
)
from .latency import LatencyTable
from .reward import RewardBounds, combined_reward, latency_reward, reference_latencies, resolve_bounds
from .stages import pick_variants, run_evaluate, run_finetune, run_pretrain, run_search
from .routing import InstaNASNet
from .search_space import MODULE_NAMES, SearchSpace, make_search_space, space_size

__version__ = "0.1.0"

__all__ = [
    "MODULE_NAMES",
    "SearchSpace",
    "make_search_space",
    "space_size",
    "MetaGraph",
    "ChildNetwork",
    "build_meta_graph",
    "Controller",
    "ControllerConfig",
    "build_controller",
    "enforce_at_least_one",
    "encourage",
    "greedy_policy",
    "is_valid_policy",
    "policy_entropy",
    "policy_log_prob",
    "sample_policy",
    "sample_random_policy",
    "LatencyTable",
    "InstaNASNet",
    "DatasetError",
    "DatasetInfo",
    "balanced_subset",
    "build_dataset",
    "build_loader",
    "dataset_info",
    "list_datasets",
    "PRESETS",
    "Config",
    "ConfigError",
    "EvaluateConfig",
    "ExperimentConfig",
    "FinetuneConfig",
    "PretrainConfig",
    "SearchConfig",
    "apply_overrides",
    "get_preset",
    "RewardBounds",
    "combined_reward",
    "latency_reward",
    "reference_latencies",
    "resolve_bounds",
    "pick_variants",
    "run_evaluate",
    "run_finetune",
    "run_pretrain",
    "run_search",
    "__version__",
]
