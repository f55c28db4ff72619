"""Configuration of the training stages: one frozen dataclass per stage, named presets, and
``key=value`` overrides (paper §3.1 stages, §3.2 drop-path, §3.3 search, §4.2 hyper-parameters).

A :class:`Config` groups an :class:`ExperimentConfig` (data set, width, device, seeds: what every
stage of one run shares) with one section per stage:

* ``profile``  -- :class:`~instanas_core.profile.ProfileConfig` (latency look-up table, §4.1);
  its resolution, width, class count, device and seed are taken from the experiment;
* ``pretrain`` -- :class:`PretrainConfig` (stage a, §3.2);
* ``search``   -- :class:`SearchConfig` (stage b, §3.3, Eq. 1-2);
* ``finetune`` -- :class:`FinetuneConfig` (stage c, §3.1 c and §4.2's re-training);
* ``evaluate`` -- :class:`EvaluateConfig`;
* ``baseline`` -- :class:`BaselineConfig` (the static baselines of Tables 1-3, and the re-training
  of OneshotNAS's frontier points, trained with InstaNAS's re-training budget);
* ``comparator`` -- :class:`ComparatorConfig` (BlockDrop, ConvNet-AIG and OneshotNAS, Figure 6).

Presets (:data:`PRESETS`, :func:`get_preset`):

* ``smoke``       -- digits, width 0.25, a few batches: seconds per stage, for tests;
* ``cpu``         -- digits (embedded data), width 0.5, the 24-channel stage at stride 2:
  all stages well under 30 minutes on 2 cores;
* ``cifar10-cpu`` -- CIFAR-10 (JPEG q75), width 0.5, 24-channel stage at stride 2, 300 training
  and 100 validation/test images per class (3,000 / 1,000 / 1,000), 15/15/8 epochs: a
  reduced-scale run for the notebook book on 2 cores, *not* the paper's scale;
* ``cifar10``, ``cifar100``, ``tinyimagenet``, ``imagenet`` -- the paper's settings (§4.2 and the
  original code's published commands; fields the paper does not state follow the original code
  and are marked as such below).

Overrides: ``apply_overrides(cfg, ["search.epochs=3", "seed=1"], section="search")`` converts each
string to the field's type and refuses unknown keys, a setting given twice and bad values with one
paragraph that lists the valid keys. An unqualified key is looked up in ``section`` first, then in
``experiment``. Every section checks its own fields (type, range, finite numbers) whether they come
from ``--set``, a ``config.json`` (:func:`config_from_dict`) or Python.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from .ownership import check_folder_name
from .profile import ProfileConfig
from .search_space import SearchSpace, make_search_space, stage_table
from .validation import (
    SEED_MAX,
    check_device,
    check_field_types,
    check_finite_floats,
    check_seed,
    check_width_mult,
    is_finite_number,
    json_kind,
)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "PretrainConfig",
    "SearchConfig",
    "FinetuneConfig",
    "EvaluateConfig",
    "BaselineConfig",
    "ComparatorConfig",
    "baseline_like_retrain",
    "Config",
    "STAGES",
    "PRESETS",
    "get_preset",
    "apply_overrides",
    "override_target",
    "config_to_dict",
    "config_from_dict",
    "stage_profile_config",
]

STAGES = ("profile", "pretrain", "search", "finetune", "evaluate", "baseline", "comparator")
_SCHEDULES = ("cosine", "step", "constant")
_VARIANTS = ("A", "B", "C", "D", "E")
_OTHER_STAGE_FOLDERS = ("profile", "pretrain", "search", "evaluate", "baselines", "comparators")


class ConfigError(ValueError):
    """A configuration value or override that cannot be used; the message lists what can."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


# The range checks below run after check_field_types, so every value they see is a number (or None
# where the field allows it); NaN fails every comparison, and infinity is refused by name here.
def _positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        ok = is_finite_number(v) and v > 0
        _check(ok, f"{type(obj).__name__}.{n} must be positive (and finite), got {v!r}.")


def _non_negative(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        ok = is_finite_number(v) and v >= 0
        _check(ok, f"{type(obj).__name__}.{n} must be >= 0 (and finite), got {v!r}.")


def _optional_positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        ok = v is None or (is_finite_number(v) and v > 0)
        _check(ok, f"{type(obj).__name__}.{n} must be positive (and finite) or none, got {v!r}.")


def _types(obj: Any) -> None:
    """First check of every section: each field holds a value of its declared type."""
    check_field_types(obj, ConfigError)


def _finite(obj: Any) -> None:
    """Last check of every section: no float field is NaN or infinite (whatever its range check)."""
    check_finite_floats(obj, ConfigError)


@dataclass(frozen=True)
class ExperimentConfig:
    """What every stage of one run shares: data, search space, device, seeds."""

    dataset: str = "digits"
    data_root: str | None = None  # None: the data layer's default ($INSTANAS_DATA or ./data)
    width_mult: float = 1.0  # 0.1 to 4.0 (validation.WIDTH_MULT_MIN, WIDTH_MULT_MAX)
    # 24-channel stage stride: None keeps the paper's (1 at 32 px, 2 at 64/224 px). 2 at 32 px
    # computes cells 1-16 on 4x fewer pixels (about 7x faster training on 2 CPU cores).
    stage24_stride: int | None = None
    train_per_class: int | None = None  # class-balanced subset of the training split
    eval_per_class: int | None = None  # ... of the validation and test splits
    data_size: int | None = None  # synthetic-difficulty only: images generated per split
    data_seed: int = 0  # subsets and synthetic images (independent of the training seed); seeds: 0 to 2**32 - 1
    seed: int = 0  # model initialisation, data order, augmentation, policy sampling
    device: str = "cpu"  # cpu, cuda or cuda:N
    augment: bool = True  # the §4.2 training augmentation (crop, flip, Cutout) of the data set
    download: bool = False  # cifar10/cifar100 only: fetch the files into data_root when missing
    num_workers: int = 0
    threads: int | None = None  # torch intra-op threads while training (None: torch's default)
    # NHWC tensors. None: on for CPU, off for CUDA. On CPU depthwise-convolution backward is >10x
    # faster in NHWC (oneDNN). On CUDA NCHW is the layout measured to work (H200,
    # benchmarks/gpu/README.md); NHWC there is untested since a layout bug was fixed.
    channels_last: bool | None = None
    # Freshly built meta-graphs start every residual cell as the identity: the last BatchNorm of
    # each branch of a shape-keeping cell gets weight 0 (Goyal et al. 2017; timm's zero_init_last).
    # Summing five branches over 17 cells otherwise starts with exploding activations.
    zero_init_residual: bool = True
    # How training steps run the meta-graph (MetaGraph.forward's ``execution``): "subset" computes
    # each module on the samples that chose it; "masked" runs every module on every sample and
    # masks the outputs, as the original code did (BatchNorm then sees the whole batch). Subset is
    # faster on CPU; on CUDA at 32 px the kernel launches, not the arithmetic, set the pace, and
    # masked drop-path steps were 3-5x faster on an H200 (benchmarks/gpu/README.md).
    execution: str = "subset"

    def __post_init__(self) -> None:
        from .data import list_datasets

        check_seed(self, "seed", ConfigError)  # before the type check, so that a float seed hears the range
        check_seed(self, "data_seed", ConfigError)
        _types(self)
        known = list_datasets()
        _check(self.dataset in known, f"unknown dataset {self.dataset!r}; known: {', '.join(known)}.")
        check_width_mult(self, "width_mult", ConfigError)
        _check(self.stage24_stride in (None, 1, 2), f"stage24_stride must be 1, 2 or none, got {self.stage24_stride!r}.")
        _optional_positive(self, "train_per_class", "eval_per_class", "data_size", "threads")
        _check(
            self.data_size is None or self.dataset == "synthetic-difficulty",
            f"data_size only applies to the synthetic-difficulty data set, not {self.dataset!r}.",
        )
        _non_negative(self, "num_workers")
        _check(self.execution in ("subset", "masked"), f"execution must be 'subset' or 'masked', got {self.execution!r}.")
        check_device(self, "device", ConfigError)
        _finite(self)

    @property
    def use_channels_last(self) -> bool:
        """Whether stages keep images and weights in NHWC (``channels_last``, resolved by device)."""
        return self.device == "cpu" if self.channels_last is None else self.channels_last

    @property
    def info(self):
        from .data import dataset_info

        return dataset_info(self.dataset)

    def space(self) -> SearchSpace:
        """The search space this run trains (resolution and classes come from the data set)."""
        info = self.info
        overrides = {}
        if self.stage24_stride is not None:
            stages = list(stage_table(info.resolution))
            stages[1] = dataclasses.replace(stages[1], stride=self.stage24_stride)
            overrides["stages"] = tuple(stages)
        return make_search_space(info.resolution, self.width_mult, info.num_classes, **overrides)


@dataclass(frozen=True)
class PretrainConfig:
    """Stage (a), §3.2: the meta-graph on the task loss with drop-path.

    The drop-path rate is 0 for the first ``drop_start`` share of the epochs, then rises linearly
    (per epoch) to ``drop_max`` at the last epoch; the at-least-one rule is kept and dropped
    modules are not computed. Paper: SGD, lr 0.1, batch 32; the original code's defaults for what
    the paper does not state: momentum 0.9 with Nesterov, weight decay 1e-4, 164 epochs, lr x0.1 at
    1/2 and 3/4 of training (``schedule="step"``).
    """

    epochs: int = 164
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: str = "step"  # cosine (per step) | step (x0.1 at 1/2 and 3/4) | constant
    drop_start: float = 0.5
    drop_max: float = 0.5
    max_steps_per_epoch: int | None = None  # debug / smoke: stop each epoch early
    stop_after_epoch: int | None = None  # debug: stop (as if interrupted) once this epoch is done

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size", "lr")
        _non_negative(self, "momentum", "weight_decay")
        _check(self.schedule in _SCHEDULES, f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        _check(0.0 <= self.drop_start <= 1.0, f"drop_start must lie in [0, 1], got {self.drop_start}.")
        _check(0.0 <= self.drop_max < 1.0, f"drop_max must lie in [0, 1), got {self.drop_max}.")
        _optional_positive(self, "max_steps_per_epoch")
        _check(self.stop_after_epoch is None or self.stop_after_epoch >= 0, "stop_after_epoch must be >= 0 or none.")
        _finite(self)


@dataclass(frozen=True)
class SearchConfig:
    """Stage (b), §3.3: alternate a controller epoch (meta-graph fixed, policy gradient, Eq. 1)
    and a meta-graph epoch (controller fixed, policy random shuffling).

    Controller loss per batch (A3C's sign convention, which is also the original code's)::

        loss = -mean[(R(sampled) - R(greedy)) * log P(sampled | p')] - entropy_bonus * mean[H(p')]

    where ``p' = alpha * p + (1 - alpha) * (1 - p)`` is the distribution actually sampled and
    ``H`` the Bernoulli entropy summed over cells and modules. A positive ``entropy_bonus``
    *maximises* entropy (more exploration: the effect the paper describes, "improves
    exploration", and what the original code did with beta = 0.8); a negative value minimises it,
    the paper's literal wording "entropy minimization ... more deterministic policy".

    Reward (Eq. 2): ``R = R_T * R_A`` if ``R_T > 0`` else ``R_T``, with ``R_T = reward_correct``
    for a correct prediction and ``reward_wrong`` otherwise, and ``R_A`` the quadratic latency
    reward between ``L_t`` and ``U_t``. Bounds default to the look-up table's latencies like the
    original code: ``U`` from ``upper_start_factor`` x the all-modules latency down to
    ``upper_end_factor`` x the MobileNetV2 path (every cell ``ir_k3_e6``), linearly over the
    epochs; ``L`` at the cheapest valid path. ``*_ms`` fields override them in milliseconds.

    Paper/original code: Adam lr 5e-4, batch 32, alpha 0.8, entropy 0.8, reward +30/0, 500 epochs
    on CIFAR-10; the meta-graph's optimiser in the search is SGD at the controller's lr without
    momentum (the original code's default, ``net_lr = lr``).
    """

    epochs: int = 500
    batch_size: int = 32
    controller_lr: float = 5e-4
    controller_weight_decay: float = 0.0
    controller_lr_step: int | None = None  # lr x0.1 every N epochs (None: constant)
    graph_lr: float = 5e-4
    graph_momentum: float = 0.0
    graph_weight_decay: float = 0.0
    alpha: float = 0.8
    entropy_bonus: float = 0.8
    reward_correct: float = 30.0
    reward_wrong: float = 0.0
    upper_start_factor: float = 0.7
    upper_end_factor: float = 0.5
    upper_start_ms: float | None = None
    upper_end_ms: float | None = None
    lower_start_ms: float | None = None  # None: the cheapest valid path's latency
    lower_end_ms: float | None = None
    train_meta_graph: bool = True  # the meta-graph epoch of each cycle (off: controller only)
    policy_shuffle: bool = True
    keep_graph_checkpoints: bool = True  # meta-graph in every epoch's checkpoint (controller always)
    measure_samples: int = 8  # validation samples whose routed latency is timed each epoch (0: off)
    measure_min_run_time: float = 0.01
    measure_blocks: int = 2
    max_steps_per_epoch: int | None = None
    stop_after_epoch: int | None = None

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size", "controller_lr", "graph_lr", "measure_min_run_time", "measure_blocks")
        _non_negative(self, "controller_weight_decay", "graph_momentum", "graph_weight_decay", "measure_samples")
        _check(0.0 <= self.alpha <= 1.0, f"alpha must lie in [0, 1], got {self.alpha}.")
        _check(self.reward_correct > 0, f"reward_correct must be positive (Eq. 2), got {self.reward_correct}.")
        _check(self.reward_wrong <= 0, f"reward_wrong must be <= 0 (Eq. 2 uses R_T alone then), got {self.reward_wrong}.")
        _positive(self, "upper_start_factor", "upper_end_factor")
        _optional_positive(self, "upper_start_ms", "upper_end_ms", "controller_lr_step", "max_steps_per_epoch")
        for n in ("lower_start_ms", "lower_end_ms"):
            _check(getattr(self, n) is None or getattr(self, n) >= 0, f"{n} must be >= 0 or none.")
        if self.upper_end_ms is not None and self.lower_end_ms is not None:
            _check(self.upper_end_ms > self.lower_end_ms, "upper_end_ms must exceed lower_end_ms.")
        if self.upper_start_ms is not None and self.upper_end_ms is not None:
            _check(self.upper_start_ms >= self.upper_end_ms, "upper_start_ms must be >= upper_end_ms (U_t shrinks).")
        _check(self.stop_after_epoch is None or self.stop_after_epoch >= 0, "stop_after_epoch must be >= 0 or none.")
        _finite(self)


@dataclass(frozen=True)
class FinetuneConfig:
    """Stage (c): train the meta-graph on the greedy policies of a fixed, picked controller.

    ``mode="finetune"`` starts from the search's meta-graph (the picked epoch's, when kept) and
    by default uses the original code's fine-tuning optimiser (SGD, Nesterov momentum 0.9, lr 1e-3,
    weight decay 4e-5, cosine); ``mode="retrain"`` starts from freshly initialised weights, as the
    paper did for its reported numbers (§4.2: Adam, lr 0.01, cosine annealing). ``optimizer``,
    ``lr`` and ``weight_decay`` left at ``None`` take the mode's defaults.

    ``variant``: ``A``..``E`` (picked from the search's checkpoints along the validation
    accuracy/latency front, A most accurate, E fastest), ``epoch:N`` or ``last``.
    ``out_dir``: the stage folder inside the run (``finetune`` by default; use e.g.
    ``finetune-B`` to keep several variants).
    """

    variant: str = "C"
    mode: str = "finetune"
    epochs: int = 300
    batch_size: int = 32
    optimizer: str | None = None  # sgd | adam
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    schedule: str = "cosine"
    out_dir: str = "finetune"
    max_steps_per_epoch: int | None = None
    stop_after_epoch: int | None = None

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size")
        _optional_positive(self, "lr", "max_steps_per_epoch")
        _non_negative(self, "momentum")
        _check(self.weight_decay is None or self.weight_decay >= 0, "weight_decay must be >= 0 or none.")
        _check(self.mode in ("finetune", "retrain"), f"mode must be 'finetune' or 'retrain', got {self.mode!r}.")
        _check(self.optimizer in (None, "sgd", "adam"), f"optimizer must be sgd, adam or none, got {self.optimizer!r}.")
        _check(self.schedule in _SCHEDULES, f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        _check(_valid_variant(self.variant), f"variant must be one of A-E, 'epoch:N' or 'last', got {self.variant!r}.")
        # A name, never a path: --overwrite deletes the files recorded in that folder (ownership.py).
        check_folder_name(self.out_dir, "finetune.out_dir")
        _check(
            "/" not in self.out_dir and self.out_dir not in _OTHER_STAGE_FOLDERS,
            f"finetune.out_dir must be a new sub-folder of the run folder: one plain folder name other than another "
            f"stage's ({', '.join(_OTHER_STAGE_FOLDERS)}), got {self.out_dir!r}.",
        )
        _check(self.stop_after_epoch is None or self.stop_after_epoch >= 0, "stop_after_epoch must be >= 0 or none.")
        _finite(self)

    @property
    def resolved_optimizer(self) -> str:
        return self.optimizer or ("sgd" if self.mode == "finetune" else "adam")

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.resolved_optimizer == "sgd" else 0.01

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 4e-5 if self.resolved_optimizer == "sgd" else 0.0


@dataclass(frozen=True)
class EvaluateConfig:
    """Accuracy, per-sample latency (table estimate and real routed latency, controller
    included), architecture statistics and per-sample records.

    ``source``: the stage folder whose model is evaluated (``finetune``, any fine-tune
    ``out_dir``, or ``search``, which evaluates ``variant``'s search checkpoint as is).
    ``split``: ``test`` for reported numbers (never used for selection), or ``val``.
    ``out_dir``: the stage folder inside the run (``evaluate`` by default; the book writes
    ``evaluate-<variant>``).
    """

    source: str = "finetune"
    variant: str = "C"  # only for source="search"
    split: str = "test"
    batch_size: int = 128
    measure_samples: int = 32  # samples whose routed latency is timed at batch 1 (0: off)
    measure_min_run_time: float = 0.05
    measure_blocks: int = 3
    measure_threads: int = 1
    out_dir: str = "evaluate"

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "batch_size", "measure_min_run_time", "measure_blocks", "measure_threads")
        _non_negative(self, "measure_samples")
        _check(self.split in ("val", "test", "train"), f"split must be val, test or train, got {self.split!r}.")
        _check(_valid_variant(self.variant), f"variant must be one of A-E, 'epoch:N' or 'last', got {self.variant!r}.")
        check_folder_name(self.source, "evaluate.source")
        check_folder_name(self.out_dir, "evaluate.out_dir")
        _check(
            "/" not in self.out_dir and self.out_dir not in _OTHER_STAGE_FOLDERS or self.out_dir == "evaluate",
            f"evaluate.out_dir must be a new sub-folder of the run folder: one plain folder name other than another "
            f"stage's, got {self.out_dir!r}.",
        )
        _finite(self)


@dataclass(frozen=True)
class BaselineConfig:
    """Training of one static network from scratch: a baseline of Tables 1-3 (``instanas
    baseline``) or a OneshotNAS frontier point (Figure 6).

    "The meta-graph needs to re-train from scratch with respect to the picked policy. We use
    Adam optimizer with learning rate 0.01 and decays with cosine annealing" (§4.2): the presets
    give the baselines that re-training budget -- the preset's ``finetune`` epochs, batch size and
    step limit, with the optimiser, learning rate and weight decay that the finetune section
    resolves to in ``retrain`` mode (:func:`baseline_like_retrain`) -- so that InstaNAS and the
    baselines are trained alike. The defaults are the paper presets' values.

    Augmentation, data splits, seeds and threads come from the experiment; the latency is timed
    with the evaluate section's ``measure_*`` settings, the same as InstaNAS's measured latency.
    """

    epochs: int = 300
    batch_size: int = 32
    optimizer: str = "adam"  # sgd | adam
    lr: float = 0.01
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only (Nesterov)
    schedule: str = "cosine"
    max_steps_per_epoch: int | None = None
    stop_after_epoch: int | None = None  # debug: stop (as if interrupted) once this epoch is done

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size", "lr")
        _non_negative(self, "weight_decay", "momentum")
        _check(self.optimizer in ("sgd", "adam"), f"optimizer must be sgd or adam, got {self.optimizer!r}.")
        _check(self.schedule in _SCHEDULES, f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        _optional_positive(self, "max_steps_per_epoch")
        _check(self.stop_after_epoch is None or self.stop_after_epoch >= 0, "stop_after_epoch must be >= 0 or none.")
        _finite(self)


def baseline_like_retrain(finetune: FinetuneConfig) -> BaselineConfig:
    """The baselines' budget: ``finetune``'s epochs, batch size, schedule and step limit, with
    the optimiser settings it resolves to in ``retrain`` mode (Adam, lr 0.01 unless set)."""
    retrain = dataclasses.replace(finetune, mode="retrain")
    return BaselineConfig(
        epochs=finetune.epochs,
        batch_size=finetune.batch_size,
        optimizer=retrain.resolved_optimizer,
        lr=retrain.resolved_lr,
        weight_decay=retrain.resolved_weight_decay,
        momentum=finetune.momentum,
        schedule=finetune.schedule,
        max_steps_per_epoch=finetune.max_steps_per_epoch,
    )


@dataclass(frozen=True)
class ComparatorConfig:
    """The comparators of Figure 6, all starting from this run's pre-trained meta-graph.

    * BlockDrop (Wu et al. 2018) and ConvNet-AIG (Veit & Belongie 2018) gate the cells of the
      MobileNetV2 path of our search space, initialised from the meta-graph's ``ir_k3_e6``
      branches. They train for ``epochs`` -- in the presets, the search's plus the fine-tuning's
      epochs, the training InstaNAS gets after pre-training.
      BlockDrop: Adam on the policy network at ``blockdrop_lr`` (BlockDrop's default 1e-4),
      REINFORCE with the greedy baseline, encouragement ``blockdrop_alpha`` (0.8, as InstaNAS),
      reward ``1 - usage^2`` or ``-blockdrop_penalty``; with ``blockdrop_joint`` the backbone is
      fine-tuned on the sampled paths at ``blockdrop_backbone_lr`` (BlockDrop's joint stage).
      ConvNet-AIG: SGD (Nesterov, momentum 0.9) on backbone and gates, cross-entropy plus
      ``aig_rate_weight`` (ConvNet-AIG's 2) x the target-rate loss towards ``aig_target_rate``,
      straight-through Gumbel gates at temperature ``aig_tau``.
    * OneshotNAS (Bender et al. 2018; §4.2: "sample 10,000 models from the meta-graph and train
      the trade-off frontier points from scratch"): ``oneshot_samples`` architectures scored with
      the shared weights on the validation split (``oneshot_bn``: ``batch`` statistics as Bender
      et al., or the ``running`` ones; ``oneshot_eval_batches`` limits the batches), then up to
      ``oneshot_retrain_top`` frontier points, spread along the latency axis, re-trained from
      scratch with the ``baseline`` section's budget.

    Learning rates, penalty and target rate are this reproduction's settings (the paper states
    none for the comparators).
    """

    epochs: int = 800
    batch_size: int = 32
    schedule: str = "cosine"
    max_steps_per_epoch: int | None = None
    stop_after_epoch: int | None = None
    blockdrop_lr: float = 1e-4
    blockdrop_joint: bool = True
    blockdrop_backbone_lr: float = 1e-4
    blockdrop_penalty: float = 5.0
    blockdrop_alpha: float = 0.8
    aig_lr: float = 0.01
    aig_weight_decay: float = 5e-4
    aig_target_rate: float = 0.6
    aig_rate_weight: float = 2.0
    aig_tau: float = 1.0
    oneshot_samples: int = 10000
    oneshot_bn: str = "batch"
    oneshot_eval_batches: int | None = None
    oneshot_retrain_top: int = 5

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size", "blockdrop_lr", "blockdrop_backbone_lr", "aig_lr", "aig_tau")
        _positive(self, "oneshot_samples")
        _non_negative(self, "blockdrop_penalty", "aig_weight_decay", "aig_rate_weight", "oneshot_retrain_top")
        _check(self.schedule in _SCHEDULES, f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        _check(0.0 <= self.blockdrop_alpha <= 1.0, f"blockdrop_alpha must lie in [0, 1], got {self.blockdrop_alpha}.")
        _check(0.0 <= self.aig_target_rate <= 1.0, f"aig_target_rate must lie in [0, 1], got {self.aig_target_rate}.")
        _check(self.oneshot_bn in ("batch", "running"), f"oneshot_bn must be batch or running, got {self.oneshot_bn!r}.")
        _optional_positive(self, "max_steps_per_epoch", "oneshot_eval_batches")
        _check(self.stop_after_epoch is None or self.stop_after_epoch >= 0, "stop_after_epoch must be >= 0 or none.")
        _finite(self)


def _valid_variant(v: str) -> bool:
    if v in _VARIANTS or v == "last":
        return True
    if v.startswith("epoch:"):
        return v[6:].isdigit()
    return False


@dataclass(frozen=True)
class Config:
    """One experiment: the shared settings plus one section per stage."""

    preset: str = "custom"
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    comparator: ComparatorConfig = field(default_factory=ComparatorConfig)


_SECTIONS = ("experiment",) + STAGES


def stage_profile_config(cfg: Config) -> ProfileConfig:
    """The profile section with resolution, width, classes, device and seed of the experiment."""
    exp = cfg.experiment
    info = exp.info
    return dataclasses.replace(
        cfg.profile,
        resolution=info.resolution,
        width_mult=exp.width_mult,
        num_classes=info.num_classes,
        device=exp.device,
        seed=exp.seed,
    )


# ---- presets -----------------------------------------------------------------------------------
def _smoke() -> Config:
    finetune = FinetuneConfig(epochs=2, batch_size=32, max_steps_per_epoch=2)
    return Config(
        preset="smoke",
        experiment=ExperimentConfig(dataset="digits", width_mult=0.25, train_per_class=10, eval_per_class=5, threads=1),
        profile=ProfileConfig(min_run_time=0.005, blocks=2),
        pretrain=PretrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine", max_steps_per_epoch=3),
        search=SearchConfig(
            epochs=3, batch_size=32, controller_lr=5e-3, graph_lr=0.01, graph_momentum=0.9,
            max_steps_per_epoch=2, measure_samples=2, measure_min_run_time=0.002, measure_blocks=1,
        ),
        finetune=finetune,
        evaluate=EvaluateConfig(batch_size=64, measure_samples=2, measure_min_run_time=0.002, measure_blocks=1),
        baseline=baseline_like_retrain(finetune),
        comparator=ComparatorConfig(
            epochs=2, max_steps_per_epoch=2, blockdrop_lr=1e-3, blockdrop_backbone_lr=1e-3,
            oneshot_samples=20, oneshot_eval_batches=1, oneshot_retrain_top=2,
        ),
    )


def _cpu() -> Config:
    # Digits at width 0.5 with the 24-channel stage at stride 2, one intra-op thread (at these
    # sizes a second thread gains little and, on a shared machine, can cost a lot). Measured on
    # the 2-core build machine: pretrain 4.8 min, search 4.8 min, finetune 0.5, evaluate 0.1. Reduced
    # scale: 12 search epochs instead of 500, so U_t falls ~40x faster per step; alpha 0.9 and
    # U_end = 0.8 x the MobileNetV2 path keep the end of the schedule reachable by sampled
    # policies, and a small entropy bonus lets the policy sharpen within the short search.
    # Baselines: the finetune budget as re-training from scratch (Adam, lr 0.01, 6 epochs);
    # comparators: search + finetune epochs after the same pre-training.
    finetune = FinetuneConfig(epochs=6, batch_size=32, lr=0.01)
    return Config(
        preset="cpu",
        experiment=ExperimentConfig(dataset="digits", width_mult=0.5, stage24_stride=2, threads=1),
        profile=ProfileConfig(min_run_time=0.02, blocks=3, children=40),
        pretrain=PretrainConfig(epochs=12, batch_size=32, lr=0.05, weight_decay=5e-4, schedule="cosine"),
        search=SearchConfig(
            epochs=12, batch_size=32, controller_lr=5e-3, graph_lr=0.01, graph_momentum=0.9, alpha=0.9,
            entropy_bonus=0.05, upper_end_factor=0.8, measure_samples=8, measure_min_run_time=0.01, measure_blocks=2,
        ),
        finetune=finetune,
        evaluate=EvaluateConfig(measure_samples=16, measure_min_run_time=0.02, measure_blocks=2),
        baseline=baseline_like_retrain(finetune),
        comparator=ComparatorConfig(
            epochs=12 + finetune.epochs, blockdrop_lr=1e-3, oneshot_samples=200, oneshot_retrain_top=3
        ),
    )


def _cifar10_cpu() -> Config:
    # CIFAR-10 (JPEG q75), 300 training and 100 validation/test images per class (3,000 / 1,000 /
    # 1,000), width 0.5, 24-channel stage at stride 2, one thread. Measured on the 2-core build
    # machine: 62 s per pre-training epoch, 93 s per search epoch (+ ~50 s profiling), so about
    # 16 + 24 + 7 minutes for the three stages.
    finetune = FinetuneConfig(epochs=8, batch_size=32, lr=0.01)
    return Config(
        preset="cifar10-cpu",
        experiment=ExperimentConfig(
            dataset="cifar10-jpeg", width_mult=0.5, stage24_stride=2, train_per_class=300, eval_per_class=100, threads=1
        ),
        profile=ProfileConfig(min_run_time=0.02, blocks=3, children=40),
        pretrain=PretrainConfig(epochs=15, batch_size=32, lr=0.05, weight_decay=5e-4, schedule="cosine"),
        search=SearchConfig(
            epochs=15, batch_size=32, controller_lr=5e-3, graph_lr=0.01, graph_momentum=0.9, alpha=0.9,
            entropy_bonus=0.05, upper_end_factor=0.8, measure_samples=8, measure_min_run_time=0.01, measure_blocks=2,
        ),
        finetune=finetune,
        evaluate=EvaluateConfig(measure_samples=32, measure_min_run_time=0.02, measure_blocks=2),
        baseline=baseline_like_retrain(finetune),
        comparator=ComparatorConfig(
            epochs=15 + finetune.epochs, blockdrop_lr=1e-3, oneshot_samples=200, oneshot_retrain_top=3
        ),
    )


def _paper(dataset: str) -> Config:
    # §4.2 and the original code's published commands; 'retrain' is what the paper reports.
    finetune = FinetuneConfig(mode="retrain", epochs=300, batch_size=32)
    return Config(
        preset=dataset,
        # the paper's scale needs a GPU; `--device cpu` (or `--set device=cpu`) overrides it
        experiment=ExperimentConfig(dataset=dataset, width_mult=1.0, num_workers=4, device="cuda"),
        profile=ProfileConfig(min_run_time=0.05, blocks=5, children=64),
        pretrain=PretrainConfig(),
        search=SearchConfig(keep_graph_checkpoints=False, measure_samples=16),
        finetune=finetune,
        evaluate=EvaluateConfig(measure_samples=100),
        baseline=baseline_like_retrain(finetune),  # §4.2's re-training: Adam, lr 0.01, cosine, 300 epochs
        comparator=ComparatorConfig(epochs=SearchConfig().epochs + finetune.epochs),  # 10,000 one-shot samples
    )


PRESETS: dict[str, Any] = {
    "smoke": _smoke,
    "cpu": _cpu,
    "cifar10-cpu": _cifar10_cpu,
    "cifar10": lambda: _paper("cifar10"),
    "cifar100": lambda: _paper("cifar100"),
    "tinyimagenet": lambda: _paper("tinyimagenet"),
    "imagenet": lambda: _paper("imagenet"),
}


def get_preset(name: str) -> Config:
    """A fresh :class:`Config` for preset ``name`` (see the module docstring)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}.")
    return PRESETS[name]()


# ---- overrides ---------------------------------------------------------------------------------
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_NONE = ("none", "null")


def _convert(text: str, hint: Any, key: str) -> Any:
    """``text`` as a value of type ``hint`` (bool, int, float, str, or X | None). Ranges, and
    finiteness of floats, are checked by the section's ``__post_init__``."""
    args = typing.get_args(hint)
    if type(None) in args:
        if text.strip().lower() in _NONE:
            return None
        inner = [a for a in args if a is not type(None)]
        hint = inner[0]
    if hint is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key} expects true or false, got {text!r}.")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            # seeds are where a float spelling (1e23) is most likely; say their range with the form
            span = f" from 0 to {SEED_MAX}" if key.rsplit(".", 1)[-1] in ("seed", "data_seed") else ""
            raise ConfigError(f"{key} expects an integer{span}, written in digits (such as 3), got {text!r}.") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} expects a number, got {text!r}.") from None
    if hint is str:
        return text
    raise ConfigError(f"{key} cannot be set from the command line (type {hint}).")


def _hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _valid_keys(cfg: Config, section: str | None) -> str:
    parts = []
    for sec in _SECTIONS:
        names = [f.name for f in dataclasses.fields(getattr(cfg, sec))]
        mark = " (may be given unqualified)" if sec in ("experiment", section) else ""
        parts.append(f"{sec}{mark}: {', '.join(names)}")
    return "; ".join(parts)


def override_target(cfg: Config, item: str, section: str | None = None) -> tuple[str, str, str]:
    """The ``(section, field, value text)`` that one ``key=value`` override sets (see
    :func:`apply_overrides` for how an unqualified key is resolved); unknown keys are refused."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value. Valid keys: {_valid_keys(cfg, section)}.")
    key, text = (s.strip() for s in item.split("=", 1))
    if "." in key:
        sec, name = key.split(".", 1)
        if sec not in _SECTIONS:
            raise ConfigError(f"unknown section {sec!r} in {item!r}. Valid keys: {_valid_keys(cfg, section)}.")
    else:
        sec, name = None, key
        for candidate in ([section] if section else []) + ["experiment"]:
            if name in {f.name for f in dataclasses.fields(getattr(cfg, candidate))}:
                sec = candidate
                break
        if sec is None:
            raise ConfigError(f"unknown setting {key!r}. Valid keys: {_valid_keys(cfg, section)}.")
    if name not in _hints(getattr(cfg, sec)):
        raise ConfigError(f"unknown setting {sec}.{name!r}. Valid keys: {_valid_keys(cfg, section)}.")
    return sec, name, text


# Fields of the profile section that a stage does not read: stage_profile_config takes them from the
# experiment (the data set's resolution and class count, its width, device and seed). A value given
# for one of them that differs from the experiment's would be silently ignored, so it is refused.
_PROFILE_FROM_EXPERIMENT = ("resolution", "num_classes", "width_mult", "device", "seed")


def _check_profile_overrides(cfg: Config, given: dict[str, Any]) -> None:
    derived = stage_profile_config(cfg)
    info = cfg.experiment.info
    for name in _PROFILE_FROM_EXPERIMENT:
        if name not in given or given[name] == getattr(derived, name):
            continue
        if name == "num_classes":
            raise ConfigError(
                f"profile.num_classes={given[name]!r} does not match the data set: {cfg.experiment.dataset} has "
                f"{info.num_classes} classes, and a run's latency table is profiled for the data set's class count "
                "(the size of the classifier). Leave profile.num_classes out (stages take it from experiment.dataset) "
                f"or choose a data set with {given[name]!r} classes."
            )
        if name == "resolution":
            raise ConfigError(
                f"profile.resolution={given[name]!r} does not match the data set: {cfg.experiment.dataset}'s images "
                f"are {info.resolution} px, and a run's latency table is profiled at the data set's resolution. "
                "Leave profile.resolution out (stages take it from experiment.dataset)."
            )
        raise ConfigError(
            f"profile.{name}={given[name]!r} differs from experiment.{name}={getattr(derived, name)!r}, which stages "
            f"profile with (a profile.{name} of its own would be ignored). Set experiment.{name} instead."
        )


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...], section: str | None = None) -> Config:
    """Apply ``key=value`` strings; ``key`` is ``section.field`` or a bare field of ``section``
    or of ``experiment``. Returns a new Config; values are validated by each section's
    ``__post_init__``. A setting given twice (also once qualified and once not) is refused rather
    than silently taking the last value."""
    if section is not None and section not in STAGES:
        raise ConfigError(f"unknown stage {section!r}; stages: {', '.join(STAGES)}.")
    changes: dict[str, dict[str, Any]] = {}
    given_as: dict[tuple[str, str], str] = {}
    for item in overrides:
        sec, name, text = override_target(cfg, item, section)
        if (sec, name) in given_as:
            raise ConfigError(
                f"{sec}.{name} is set twice ({given_as[sec, name]!r} and {item!r}); give each setting once."
            )
        given_as[sec, name] = item
        changes.setdefault(sec, {})[name] = _convert(text, _hints(getattr(cfg, sec))[name], f"{sec}.{name}")
    new = {}
    for sec, values in changes.items():
        try:
            new[sec] = dataclasses.replace(getattr(cfg, sec), **values)
        except ConfigError:
            raise
        except ValueError as exc:  # ProfileConfig's own checks
            raise ConfigError(str(exc)) from None
    out = dataclasses.replace(cfg, **new)
    if "profile" in changes:
        _check_profile_overrides(out, changes["profile"])
    return out


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


_SECTION_KINDS: dict[str, type] = {
    "experiment": ExperimentConfig,
    "profile": ProfileConfig,
    "pretrain": PretrainConfig,
    "search": SearchConfig,
    "finetune": FinetuneConfig,
    "evaluate": EvaluateConfig,
    "baseline": BaselineConfig,
    "comparator": ComparatorConfig,
}


def config_from_dict(d: Any, source: Any = None) -> Config:
    """Inverse of :func:`config_to_dict`; unknown keys are refused (a config from another
    version of the code should be looked at, not silently half-read).

    ``d`` may be any JSON value (a hand-edited or damaged ``config.json``): whatever is wrong is
    refused with one :class:`ConfigError` that names ``source`` (the file, when given), the section
    and the setting.
    """
    where = f"the configuration {source}" if source is not None else "the saved configuration"
    fix = (
        "Restore the file from a copy, or start from a preset instead (--preset, with --overwrite for a stage folder)."
    )

    def refuse(what: str) -> ConfigError:
        return ConfigError(f"{where} {what}. {fix}")

    if not isinstance(d, dict):
        raise refuse(
            f"is {json_kind(d)}, not a JSON object of sections (a config.json that a stage wrote is an object with "
            f"the keys preset, {', '.join(_SECTION_KINDS)})"
        )
    unknown = [k for k in d if k != "preset" and k not in _SECTION_KINDS]
    if unknown:
        raise refuse(f"has unknown sections {', '.join(map(repr, unknown))} (sections: {', '.join(_SECTION_KINDS)})")
    preset = d.get("preset", "custom")
    if not isinstance(preset, str):
        raise refuse(f"has a preset that is {json_kind(preset)}, not a name")
    sections = {}
    for name, kind in _SECTION_KINDS.items():
        if name not in d:
            continue
        values = d[name]
        if not isinstance(values, dict):
            raise refuse(f"has a section {name!r} that is {json_kind(values)}, not a JSON object of settings")
        fields = [f.name for f in dataclasses.fields(kind)]
        extra = [k for k in values if k not in fields]
        if extra:
            raise refuse(
                f"has settings in section {name!r} that this version of the code does not know: "
                f"{', '.join(map(repr, extra))} (valid: {', '.join(fields)})"
            )
        try:
            sections[name] = kind(**values)
        except (ValueError, TypeError) as exc:  # the section's own checks (ProfileConfig raises ValueError)
            raise refuse(f"has a bad value in section {name!r}: {str(exc).rstrip('.')}") from None
    return Config(preset=preset, **sections)
