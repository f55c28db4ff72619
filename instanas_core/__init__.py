"""instanas_core: a runnable reproduction of InstaNAS (Cheng et al., "InstaNAS: Instance-aware
Neural Architecture Search").

The public names below are a contract used by the notebooks, the command line and the tests.
"""

import importlib as _importlib
import os as _os

# Subset routing hands every module sub-batches of changing size, and oneDNN (PyTorch's CPU
# convolutions) keeps one compiled primitive per shape in a cache of 1024 by default. Drop-path
# pre-training needs several thousand (85 modules x 3 convolutions x 3 passes x sub-batch sizes),
# so the default cache thrashes and every step recompiles: routed drop-path steps then ran no
# faster than masked ones (3.4 s vs 3.1 s per batch of 32 at width 0.5 on 2 cores; 1.9 s with
# this capacity). oneDNN reads the variable when it first builds a primitive, so it only helps when
# this package is imported before the process's first convolution; a value set by the user wins.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32768")

# The public names below load their module on first use (PEP 562), so that importing one light
# module (``instanas_core.config``, the book's runner) does not load torch, the meta-graph and the
# stages with it.
_EXPORTS = {
    "DatasetError": "data",
    "DatasetInfo": "data",
    "balanced_subset": "data",
    "build_dataset": "data",
    "build_loader": "data",
    "dataset_info": "data",
    "list_datasets": "data",
    "load_pretrained": "weights",
    "list_pretrained": "weights",
    "publish_weights": "weights",
    "Controller": "controller",
    "ControllerConfig": "controller",
    "build_controller": "controller",
    "ChildNetwork": "meta_graph",
    "MetaGraph": "meta_graph",
    "build_meta_graph": "meta_graph",
    "enforce_at_least_one": "policy",
    "encourage": "policy",
    "greedy_policy": "policy",
    "is_valid_policy": "policy",
    "policy_entropy": "policy",
    "policy_log_prob": "policy",
    "sample_policy": "policy",
    "sample_random_policy": "policy",
    "PRESETS": "presets",
    "get_preset": "presets",
    "Config": "config",
    "ConfigError": "config",
    "EvaluateConfig": "config",
    "ExperimentConfig": "config",
    "FinetuneConfig": "config",
    "PretrainConfig": "config",
    "SearchConfig": "config",
    "apply_overrides": "config_io",
    "LatencyTable": "latency",
    "RewardBounds": "reward",
    "combined_reward": "reward",
    "latency_reward": "reward",
    "reference_latencies": "reward",
    "resolve_bounds": "reward",
    "pick_variants": "stages",
    "run_evaluate": "stages",
    "run_finetune": "stages",
    "run_pretrain": "stages",
    "run_search": "stages",
    "InstaNASNet": "routing",
    "MODULE_NAMES": "search_space",
    "SearchSpace": "search_space",
    "make_search_space": "search_space",
    "space_size": "search_space",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


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
    "load_pretrained",
    "list_pretrained",
    "publish_weights",
    "__version__",
]
