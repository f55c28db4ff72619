"""instanas_core: a runnable reproduction of InstaNAS (Cheng et al., "InstaNAS: Instance-aware
Neural Architecture Search").

The public names below are a contract used by the notebooks, the command line and the tests.
"""

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
