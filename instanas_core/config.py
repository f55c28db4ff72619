"""Configuration of the training stages: one frozen dataclass per stage (paper §3.1 stages, §3.2
drop-path, §3.3 search, §4.1 profiling, §4.2 hyper-parameters). Nothing here imports torch.

A :class:`Config` groups an :class:`ExperimentConfig` (data set, width, device, seeds: what every
stage of one run shares) with one section per stage:

* ``profile``  -- :class:`ProfileConfig` (latency look-up table, §4.1); its resolution, width,
  class count, device and seed are taken from the experiment (:func:`stage_profile_config`);
* ``pretrain`` -- :class:`PretrainConfig` (stage a, §3.2);
* ``search``   -- :class:`SearchConfig` (stage b, §3.3, Eq. 1-2);
* ``finetune`` -- :class:`FinetuneConfig` (stage c, §3.1 c and §4.2's re-training);
* ``evaluate`` -- :class:`EvaluateConfig`;
* ``baseline`` -- :class:`BaselineConfig` (the static baselines of Tables 1-3, and the re-training
  of OneshotNAS's frontier points, trained with InstaNAS's re-training budget);
* ``comparator`` -- :class:`ComparatorConfig` (BlockDrop, ConvNet-AIG and OneshotNAS, Figure 6).

Every section checks its own fields (type, range, finite numbers) whether they come from
``--set``, a ``config.json`` or Python.

The named presets (``PRESETS``, ``get_preset``) live in :mod:`instanas_core.presets`, and the
``key=value`` overrides and the ``config.json`` round trip (``apply_overrides``,
``override_target``, ``config_to_dict``, ``config_from_dict``) in :mod:`instanas_core.config_io`;
both build on this module, and both are importable from here too (see ``__getattr__`` below).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

from .ownership import check_folder_name
from .search_space import RESOLUTIONS, SearchSpace, make_search_space, stage_table
from .validation import (
    check_device,
    check_field_types,
    check_finite_floats,
    check_seed,
    check_width_mult,
    is_finite_number,
)

__all__ = [
    "ConfigError",
    "ProfileConfig",
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
    "SECTIONS",
    "VARIANT_NAMES",
    "stage_profile_config",
]

STAGES = ("profile", "pretrain", "search", "finetune", "evaluate", "baseline", "comparator")
SECTIONS = ("experiment",) + STAGES
# The variants picked along the search's accuracy/latency front (§3.1 c): A most accurate, E fastest.
VARIANT_NAMES = ("A", "B", "C", "D", "E")
_SCHEDULES = ("cosine", "step", "constant")
# Named options (docs/science-options.md): the first value of each is the paper's method.
DENSITIES = ("drop-path", "per-sample")
BASELINES = ("self-critical", "loo")
REWARDS = ("eq2", "monotone")
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
class ProfileConfig:
    """The profiling stage (§4.1, Figure 4): the look-up table of every (cell, module) and, with
    ``children``, its calibration and check on sampled children (:func:`instanas_core.profile.run_profile`)."""

    resolution: int = 32
    width_mult: float = 1.0
    num_classes: int = 10
    threads: int = 1
    children: int = 0
    fit_fraction: float = 0.25  # share of children used to fit the calibration
    device: str = "cpu"
    seed: int = 0
    min_run_time: float = 0.05
    blocks: int = 5
    # Timing passes over all children (an even number). The measured latency of a child is its
    # minimum over the even-numbered passes, the repeat (the noise floor) its minimum over the
    # odd-numbered ones: interference only ever adds time, and interleaving the two halves in
    # time spreads slow drift over both alike. 2 gives one plain measurement and one repeat.
    passes: int = 2

    def __post_init__(self) -> None:
        check_seed(self, "seed")  # before the type check, so that a float seed hears the range
        check_field_types(self)  # then the range checks below compare numbers
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}.")
        if self.children < 0:
            raise ValueError(f"children must be >= 0, got {self.children}.")
        if self.children and self.children < 8:
            raise ValueError(f"children must be 0 or at least 8 (to fit and judge a calibration), got {self.children}.")
        if not 0.0 < self.fit_fraction < 1.0:
            raise ValueError(f"fit_fraction must lie strictly between 0 and 1, got {self.fit_fraction}.")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}.")
        if self.passes < 2 or self.passes % 2:
            raise ValueError(
                f"passes must be an even number of at least 2 (measurement and repeat), got {self.passes}."
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}.")
        if self.blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {self.blocks}.")
        if not (is_finite_number(self.min_run_time) and self.min_run_time > 0):
            raise ValueError(f"min_run_time must be a positive, finite number of seconds, got {self.min_run_time!r}.")
        check_width_mult(self)
        check_device(self)
        check_finite_floats(self)

    @property
    def timing(self) -> Any:
        """The :class:`~instanas_core.latency.TimingConfig` of one measurement (imported here, on
        use, so that reading a configuration does not load torch)."""
        from .latency import TimingConfig

        return TimingConfig(min_run_time=self.min_run_time, blocks=self.blocks)


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
        _check(
            self.stage24_stride in (None, 1, 2), f"stage24_stride must be 1, 2 or none, got {self.stage24_stride!r}."
        )
        _optional_positive(self, "train_per_class", "eval_per_class", "data_size", "threads")
        _check(
            self.data_size is None or self.dataset == "synthetic-difficulty",
            f"data_size only applies to the synthetic-difficulty data set, not {self.dataset!r}.",
        )
        _non_negative(self, "num_workers")
        _check(
            self.execution in ("subset", "masked"), f"execution must be 'subset' or 'masked', got {self.execution!r}."
        )
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
    # ---- named options beyond §3.2 (docs/science-options.md); the defaults are the paper's method
    density: str = "drop-path"  # drop-path: one rate for every sample | per-sample: rate ~ U(0, 2 x rate)
    sandwich: bool = False  # every step also trains the largest and the cheapest path (BigNAS, once-for-all)
    recalibrate_bn: int = 0  # training batches that re-estimate BatchNorm before validation (0: off)

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size", "lr")
        _non_negative(self, "momentum", "weight_decay", "recalibrate_bn")
        _check(self.schedule in _SCHEDULES, f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        _check(0.0 <= self.drop_start <= 1.0, f"drop_start must lie in [0, 1], got {self.drop_start}.")
        _check(0.0 <= self.drop_max < 1.0, f"drop_max must lie in [0, 1), got {self.drop_max}.")
        _check(self.density in DENSITIES, _choices("pretrain.density", self.density, DENSITIES))
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
    # ---- named options beyond §3.3 (docs/science-options.md); the defaults are the paper's method
    baseline: str = "self-critical"  # self-critical: R(greedy) (Eq. 1) | loo: leave-one-out over `samples` draws
    samples: int = 1  # policies drawn per image in a controller step
    bound_schedule: str = "epoch"  # epoch: U_t moves once per epoch (§3.3) | step: once per controller step
    bound_end_share: float = 1.0  # U_t reaches its end value after this share of the schedule, then holds
    reward: str = "eq2"  # eq2: quadratic window (Eq. 2) | monotone: linear latency cost, see reward.py
    latency_weight: float = 1.0  # monotone: the cost at z = U_t, in units of reward_correct
    sharpen_share: float = 0.0  # last share of the controller steps: entropy bonus -> -sharpen_weight, alpha -> 1
    sharpen_weight: float = 0.1
    recalibrate_bn: int = 0  # training batches re-estimating BatchNorm for the controller's policies (0: off)
    controller_input: str = "image"  # image | shuffled: a control that sees another image of the batch

    def __post_init__(self) -> None:
        _types(self)
        _positive(self, "epochs", "batch_size", "controller_lr", "graph_lr", "measure_min_run_time", "measure_blocks")
        _non_negative(self, "controller_weight_decay", "graph_momentum", "graph_weight_decay", "measure_samples")
        _non_negative(self, "latency_weight", "sharpen_weight", "recalibrate_bn")
        _check(self.baseline in BASELINES, _choices("search.baseline", self.baseline, BASELINES))
        _check(
            self.bound_schedule in ("epoch", "step"),
            _choices("search.bound_schedule", self.bound_schedule, ("epoch", "step")),
        )
        _check(self.reward in REWARDS, _choices("search.reward", self.reward, REWARDS))
        _check(
            self.controller_input in ("image", "shuffled"),
            _choices("search.controller_input", self.controller_input, ("image", "shuffled")),
        )
        _check(
            self.samples >= (2 if self.baseline == "loo" else 1),
            f"search.samples must be at least {2 if self.baseline == 'loo' else 1} with search.baseline="
            f"{self.baseline!r} (a leave-one-out baseline needs another draw of the same image), got {self.samples}; "
            "valid: 2 to 64 for loo, 1 to 64 otherwise.",
        )
        _check(self.samples <= 64, f"search.samples must be at most 64 (each draw is a forward), got {self.samples}.")
        _check(
            0.0 < self.bound_end_share <= 1.0,
            f"search.bound_end_share must lie in (0, 1]: the share of the schedule over which U_t falls; "
            f"{self.bound_end_share!r} leaves no window to fall in.",
        )
        _check(
            0.0 <= self.sharpen_share < 1.0,
            f"search.sharpen_share must lie in [0, 1): the last share of the search that sharpens the policy; "
            f"{self.sharpen_share!r} leaves no step for the reward.",
        )
        _check(
            self.reward != "monotone" or self.reward_wrong < 0,
            f"search.reward='monotone' needs a negative search.reward_wrong (a wrong answer must cost more than "
            f"any latency saves), got {self.reward_wrong}; try search.reward_wrong=-30.",
        )
        _check(0.0 <= self.alpha <= 1.0, f"alpha must lie in [0, 1], got {self.alpha}.")
        _check(self.reward_correct > 0, f"reward_correct must be positive (Eq. 2), got {self.reward_correct}.")
        _check(
            self.reward_wrong <= 0, f"reward_wrong must be <= 0 (Eq. 2 uses R_T alone then), got {self.reward_wrong}."
        )
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
        _check(
            self.oneshot_bn in ("batch", "running"), f"oneshot_bn must be batch or running, got {self.oneshot_bn!r}."
        )
        _optional_positive(self, "max_steps_per_epoch", "oneshot_eval_batches")
        _check(self.stop_after_epoch is None or self.stop_after_epoch >= 0, "stop_after_epoch must be >= 0 or none.")
        _finite(self)


def _choices(setting: str, value: str, choices: tuple[str, ...]) -> str:
    return f"unknown {setting} {value!r}; valid values: {', '.join(choices)} (the first is the paper's)."


def _valid_variant(v: str) -> bool:
    if v in VARIANT_NAMES or v == "last":
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


# Names that moved out of this module when presets and overrides got modules of their own, still
# importable from here (``from instanas_core.config import get_preset``). Those modules import this
# one, so they are loaded on first use rather than at import (no cycle); not in ``__all__``.
_MOVED = {
    "PRESETS": "presets",
    "get_preset": "presets",
    "apply_overrides": "config_io",
    "override_target": "config_io",
    "config_to_dict": "config_io",
    "config_from_dict": "config_io",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f".{_MOVED[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
