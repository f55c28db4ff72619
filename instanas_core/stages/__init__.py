"""The training procedure of InstaNAS (paper §3.1): pre-train the meta-graph (§3.2), search
controller and meta-graph jointly (§3.3), fine-tune or re-train under a picked controller
(§3.1 c, §4.2), and evaluate; plus the baselines of Tables 1-3 and the comparators of Figure 6,
trained and measured the same way. Each stage is one function taking its config and the run folder,
usable from a notebook as from the command line."""

from .baseline import BASELINE_COLUMNS, format_baseline_summary, run_baseline
from .comparators import (
    COMPARATOR_STAGE_NAMES,
    format_comparator_summary,
    run_blockdrop,
    run_comparator,
    run_convnet_aig,
)
from .oneshot import run_oneshot
from .evaluate import difficulty_correlation, format_evaluate_summary, load_trained, run_evaluate
from .finetune import FINETUNE_COLUMNS, format_finetune_summary, routed_step, run_finetune
from .pretrain import PRETRAIN_COLUMNS, drop_rate_at, format_pretrain_summary, pretrain_step, run_pretrain
from .search import (
    SEARCH_COLUMNS,
    controller_loss,
    controller_step,
    format_search_summary,
    meta_graph_step,
    run_search,
    validate,
)
from .variants import VARIANT_NAMES, pareto_front, pick_variants, resolve_variant

STAGE_RUNNERS = {
    "pretrain": (run_pretrain, format_pretrain_summary),
    "search": (run_search, format_search_summary),
    "finetune": (run_finetune, format_finetune_summary),
    "evaluate": (run_evaluate, format_evaluate_summary),
}

__all__ = [
    "STAGE_RUNNERS",
    "run_pretrain",
    "run_search",
    "run_finetune",
    "run_evaluate",
    "run_baseline",
    "run_blockdrop",
    "run_convnet_aig",
    "run_oneshot",
    "run_comparator",
    "format_baseline_summary",
    "format_comparator_summary",
    "COMPARATOR_STAGE_NAMES",
    "BASELINE_COLUMNS",
    "format_pretrain_summary",
    "format_search_summary",
    "format_finetune_summary",
    "format_evaluate_summary",
    "pretrain_step",
    "drop_rate_at",
    "controller_loss",
    "controller_step",
    "meta_graph_step",
    "routed_step",
    "validate",
    "load_trained",
    "difficulty_correlation",
    "pareto_front",
    "pick_variants",
    "resolve_variant",
    "VARIANT_NAMES",
    "PRETRAIN_COLUMNS",
    "SEARCH_COLUMNS",
    "FINETUNE_COLUMNS",
]
