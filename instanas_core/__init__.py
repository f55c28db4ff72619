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
from .latency import LatencyTable
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
    "__version__",
]
