"""What the stages share: device and data set-up, models, optimisers and learning-rate schedules,
the latency table of a run, inference over a loader, the stage preamble (run folder, config,
environment, resume state), and the crash-safety checks (non-finite losses and rewards, the
latency table and search space a checkpoint was made with).

Every function takes what it uses as arguments (torchvision's reference-script style), so a
notebook can call the pieces on their own. Functions with a ``dist`` argument also run under
torchrun (:mod:`instanas_core.distributed`); left at None they are single-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..config import Config, ConfigError, ExperimentConfig, config_from_dict, config_to_dict, stage_profile_config
from ..controller import Controller, build_controller
from ..data import DatasetError, build_dataset, build_loader
from ..data.loader import seed_worker
from ..distributed import DistContext, contiguous_shard, on_main, per_rank_batch, rank_seed, single_process, unwrap
from ..latency import (
    LatencyTable,
    LatencyTableError,
    TimingConfig,
    fit_calibration,
    measure_children,
    profile_lookup_table,
    sample_children,
)
from ..meta_graph import MetaGraph
from ..ownership import claim, open_output_folder
from ..policy import greedy_policy
from ..rundir import (
    MetricsLog,
    RunDirError,
    capture_rng_state,
    load_checkpoint,
    load_json,
    StageFolder,
    save_checkpoint,
    save_environment,
    save_json,
    stage_dir,
)

__all__ = [
    "RESUME_FREE_SETTINGS",
    "resolve_device",
    "build_split",
    "make_loader",
    "steps_per_epoch",
    "to_device",
    "unpack_batch",
    "build_models",
    "zero_init_residual_branches",
    "make_optimizer",
    "make_schedule",
    "Meter",
    "open_metrics",
    "progress_bar",
    "end_epoch",
    "ensure_latency_table",
    "infer",
    "measure_routed_latency",
    "begin_stage",
    "StageStart",
    "policy_bits",
    "NonFiniteError",
    "check_finite",
    "non_finite_stop",
    "latency_table_hash",
    "check_latency_table_hash",
    "check_space_hash",
]


# ---- device and data ---------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but CUDA is not available here; use --device cpu.")
    return device


def build_split(
    exp: ExperimentConfig,
    split: str,
    augment: bool,
    return_index: bool = False,
    return_difficulty: bool = False,
):
    """One split of the experiment's data set, subset as configured. Items are
    ``(image, label[, difficulty][, index])``."""
    per_class = exp.train_per_class if split == "train" else exp.eval_per_class
    options: dict[str, Any] = {}
    if exp.dataset == "synthetic-difficulty":
        if exp.data_size is not None:
            options["size"] = exp.data_size
        options["return_difficulty"] = return_difficulty
    elif return_difficulty:
        raise ConfigError(f"{exp.dataset!r} has no difficulty levels (only synthetic-difficulty does).")
    if exp.download:
        options["download"] = True
    try:
        return build_dataset(
            exp.dataset,
            root=exp.data_root,
            split=split,
            augment=augment,
            n_per_class=per_class,
            seed=exp.data_seed,
            return_index=return_index,
            **options,
        )
    except DatasetError as exc:  # surface as the CLI's one-paragraph error
        raise ConfigError(str(exc)) from None


def make_loader(
    dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    exp: ExperimentConfig,
    device,
    train: bool,
    dist: DistContext | None = None,
):
    """A seeded loader; training loaders drop the last partial batch (BatchNorm on a handful of
    samples is noise) unless the data set is smaller than one batch.

    ``batch_size`` is global. Under torchrun (``dist`` with several ranks) a training loader
    gives this rank ``batch_size / world_size`` samples per step from a DistributedSampler shard
    of the permutation that ``seed`` fixes, with the same number of steps on every rank; an
    evaluation loader (``train=False``) reads this rank's contiguous shard in order, for
    :func:`infer` to gather.
    """
    drop_last = train and len(dataset) >= batch_size
    if dist is None or not dist.enabled:
        return build_loader(dataset, batch_size, shuffle, seed, exp.num_workers, device, drop_last)
    if not train:
        shard = Subset(dataset, contiguous_shard(len(dataset), dist.rank, dist.world_size))
        return build_loader(shard, batch_size, False, seed, exp.num_workers, device, False)
    # The sampler's seed is the epoch's: the same permutation on every rank, each taking its share
    # (the sampler is rebuilt every epoch, which stands in for DistributedSampler.set_epoch).
    sampler = DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    # Worker seeds (augmentation with num_workers > 0) differ per rank.
    generator = torch.Generator().manual_seed(rank_seed(seed, dist.rank))
    return DataLoader(
        dataset,
        batch_size=per_rank_batch(batch_size, dist.world_size),
        sampler=sampler,
        num_workers=exp.num_workers,
        pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        persistent_workers=False,
    )


def steps_per_epoch(loader, max_steps: int | None) -> int:
    n = len(loader)
    return min(n, max_steps) if max_steps else n


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def unpack_batch(batch, fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Name the items of a batch: ``fields`` like ("image", "label", "index")."""
    if len(batch) != len(fields):
        raise RuntimeError(f"batch has {len(batch)} items, expected {fields}.")
    return dict(zip(fields, batch))


# ---- models and optimisation -------------------------------------------------------------------
def build_models(exp: ExperimentConfig, device: torch.device, seed: int | None = None) -> tuple[MetaGraph, Controller]:
    """A fresh meta-graph and controller for the experiment's space (seeded when ``seed`` given)."""
    if seed is not None:
        torch.manual_seed(seed)
    space = exp.space()
    graph = MetaGraph(space)
    if exp.zero_init_residual:
        zero_init_residual_branches(graph)
    controller = build_controller(graph)
    if exp.use_channels_last:
        graph = graph.to(memory_format=torch.channels_last)
        controller = controller.to(memory_format=torch.channels_last)
    return graph.to(device), controller.to(device)


def zero_init_residual_branches(graph: MetaGraph) -> None:
    """Zero the weight of the last BatchNorm of every branch in the shape-keeping (residual)
    cells, so that each such cell starts as the identity; shape-changing cells are left alone."""
    with torch.no_grad():
        for cell in graph.cells:
            if not cell.keeps_shape:
                continue
            for branch in cell.branches:
                last_bn = [m for m in branch.modules() if isinstance(m, nn.BatchNorm2d)][-1]
                last_bn.weight.zero_()


def make_optimizer(params, kind: str, lr: float, weight_decay: float, momentum: float = 0.9, nesterov: bool = True):
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
        )
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {kind!r}; use sgd or adam.")


def make_schedule(optimizer, schedule: str, epochs: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step learning-rate factor: cosine annealing to 0 over all steps, ``step`` (x0.1 at
    1/2 and x0.01 at 3/4 of the epochs, the original pre-training schedule) or constant."""
    total = max(1, epochs * steps)
    steps = max(1, steps)

    def cosine(i: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(i, total) / total))

    def step(i: int) -> float:
        epoch = i // steps
        return 0.01 if epoch >= 0.75 * epochs else 0.1 if epoch >= 0.5 * epochs else 1.0

    fns: dict[str, Callable[[int], float]] = {"cosine": cosine, "step": step, "constant": lambda i: 1.0}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fns[schedule])


class Meter:
    """Sums of per-sample quantities; ``mean(name)`` divides by the sample count."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, n: int, **values: float) -> None:
        self.count += n
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n

    def mean(self, name: str) -> float:
        return self.sums.get(name, float("nan")) / self.count if self.count else float("nan")

    def all_reduced(self, dist: DistContext | None) -> "Meter":
        """The meter of all ranks together (sums and counts added), identical on every rank;
        ``self`` in one process."""
        if dist is None or not dist.enabled:
            return self
        keys = sorted(self.sums)
        totals = dist.all_reduce([self.sums[k] for k in keys] + [float(self.count)])
        merged = Meter()
        merged.sums = dict(zip(keys, totals[:-1]))
        merged.count = int(round(totals[-1]))
        return merged


def open_metrics(dist: DistContext | None, path: Path, columns: tuple[str, ...], first_epoch: int) -> MetricsLog | None:
    """``metrics.csv`` with the rows of epochs before ``first_epoch`` (a resumed stage redoes the
    others); opened by rank 0 only (None on the other ranks)."""

    def open_log() -> MetricsLog:
        log = MetricsLog(path, columns)
        log.truncate(first_epoch)
        return log

    return on_main(dist, open_log, share=False)


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def limited(loader, steps: int) -> Iterator:
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        yield batch


# ---- crash safety: non-finite values, the table and space of a checkpoint ---------------------
class NonFiniteError(RunDirError):
    """A loss or reward became NaN or infinite. Raised before anything of the epoch is saved, so
    the stage's ``last.pt`` stays the last good checkpoint."""


def check_finite(dist: DistContext | None, what: str, step: int | None = None, **values: float) -> None:
    """Raise :class:`NonFiniteError` when one of ``values`` (plain floats) is NaN or infinite.

    With several ranks the verdict is all-reduced first, so every rank raises together (a rank
    that raised alone would leave the others waiting in their next collective). ``step`` is
    0-based and reported 1-based.
    """
    names = list(values)
    bad = [0.0 if math.isfinite(float(v)) else 1.0 for v in values.values()]
    if dist is not None and dist.enabled:
        bad = dist.all_reduce(bad, op="max")
    if any(bad):
        hit = [n.replace("_", " ") for n, b in zip(names, bad) if b]
        which = hit[0] if len(hit) == 1 else ", ".join(hit[:-1]) + " and " + hit[-1]
        at = f" at step {step + 1}" if step is not None else ""
        raise NonFiniteError(f"the {what} {which} became NaN or infinite{at}")


def end_epoch(
    dist, out: Path, metrics, row: dict, state: dict, epoch: int, epochs: int, stop_after_epoch: int | None
) -> bool:
    """Rank 0 writes ``RUN/<stage>/last.pt`` (``state`` plus the RNG states and the epoch's
    metrics row), then appends the row to ``metrics.csv``: checkpoint first, so a crash in between
    leaves a row that a resumed run truncates. Returns True when the stage stops after this epoch
    (``stop_after_epoch``, short of the last)."""

    def save() -> None:
        save_checkpoint(out / "last.pt", {**state, "rng": capture_rng_state(), "metrics": row})
        metrics.append(row)

    on_main(dist, save)
    return stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < epochs - 1


def non_finite_stop(
    exc: NonFiniteError, stage: str, epoch: int, epochs: int, out: Path, lr_hint: str
) -> NonFiniteError:
    """The one-paragraph error of a stage stopped by :func:`check_finite` in ``epoch``: what
    happened, where, which checkpoint is intact, and what to try (``lr_hint`` names the stage's
    learning-rate settings and values)."""
    kept = (
        f"{out / 'last.pt'} still holds epoch {epoch - 1}, the last good checkpoint"
        if epoch > 0 and (out / "last.pt").is_file()
        else "no checkpoint of this stage had been written yet"
    )
    return NonFiniteError(
        f"{stage} stopped in epoch {epoch} (numbered 0 to {epochs - 1}, as in metrics.csv): {exc}. Nothing of "
        f"this epoch was saved and metrics.csv has no row for it; {kept}. Try a lower learning rate ({lr_hint}) "
        "and start the stage again with --overwrite, or continue from the last good checkpoint with --resume "
        "(it replays the same steps, so that helps only when the cause was transient, such as faulty hardware)."
    )


def latency_table_hash(path: str | Path) -> str:
    """SHA-256 of a latency table file (``RUN/profile/lut.json``): what a checkpoint was made with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_latency_table_hash(ckpt: dict, lut_path: str | Path, what: str) -> None:
    """Refuse a checkpoint (described by ``what``) made with another latency table than
    ``lut_path`` holds now. Checkpoints older than the ``lut_hash`` entry are accepted."""
    made_with = ckpt.get("lut_hash")
    if made_with is None or made_with == latency_table_hash(lut_path):
        return
    raise RunDirError(
        f"{what} was made with another latency table than {lut_path} holds now (SHA-256 {made_with[:12]}... then, "
        f"{latency_table_hash(lut_path)[:12]}... now): its rewards, policies and latencies belong to the old table. "
        "Put the old lut.json back, or run the stage again from scratch with --overwrite (and the stages after it)."
    )


def check_space_hash(ckpt: dict, space_hash: str, what: str) -> None:
    """Refuse a checkpoint (described by ``what``) made for another search space."""
    made_for = ckpt.get("space_hash")
    if made_for is not None and made_for != space_hash:
        raise RunDirError(
            f"{what} was made for another search space (hash {made_for}) than this configuration's ({space_hash}): "
            "resolution, width, stride or classes differ. Use the preset and --set values it was made with, or "
            "--overwrite to start the stage again."
        )


# ---- latency table -----------------------------------------------------------------------------
def ensure_latency_table(
    cfg: Config, run_dir: str | Path, device: torch.device, progress: bool = True, dist: DistContext | None = None
) -> tuple[LatencyTable, Path]:
    """``RUN/profile/lut.json`` if present (checked against this run's space and device), else
    profile one with the preset's profile settings (and calibrate it on ``children`` sampled
    children when asked) and write it there. Under torchrun rank 0 alone profiles (timings of
    ranks that share a machine would disturb each other) and the others receive its table."""
    if dist is not None and dist.enabled:
        return on_main(dist, lambda: ensure_latency_table(cfg, run_dir, device, progress and dist.is_main))
    path = stage_dir(run_dir, "profile") / "lut.json"
    space = cfg.experiment.space()
    if path.is_file():
        table = LatencyTable.load(path)
        try:
            table.check_compatible(space, device)
        except LatencyTableError as exc:
            raise RunDirError(f"{path}: {exc} Delete it to profile a new one.") from None
        return table, path
    open_output_folder(path.parent, "profile")
    claim(path)  # never over a lut.json of someone else's (a missing one is profiled here)
    pcfg = stage_profile_config(cfg)
    torch.manual_seed(pcfg.seed)
    graph = MetaGraph(space).to(device).eval()
    controller = build_controller(graph).to(device).eval()
    table = profile_lookup_table(graph, controller, pcfg.threads, pcfg.timing, device, progress)
    summary: dict[str, Any] = {"config": dataclasses.asdict(pcfg), "space": space.to_dict()}
    if pcfg.children:
        policies = sample_children(graph, pcfg.children, pcfg.seed)
        measured = measure_children(graph, policies, controller, pcfg.threads, pcfg.timing, device, 1, progress)
        n_fit = max(4, int(round(pcfg.fit_fraction * pcfg.children)))
        table.calibration = fit_calibration(table, policies[:n_fit], measured[:n_fit, 0])
        est = table.estimate(policies).numpy()
        ev = slice(n_fit, None)
        if len(est[ev]) > 2:
            summary["eval_pearson_r"] = float(np.corrcoef(est[ev], measured[ev, 0])[0, 1])
            summary["eval_mape_pct"] = float(100 * np.mean(np.abs(est[ev] - measured[ev, 0]) / measured[ev, 0]))
        summary["calibration"] = table.calibration
    table.save(path)
    save_json(path.parent / "summary.json", summary)
    return table, path


# ---- inference ---------------------------------------------------------------------------------
@torch.no_grad()
def infer(
    graph: MetaGraph,
    loader,
    device: torch.device,
    fields: tuple[str, ...],
    controller: Controller | None = None,
    fixed_policy: torch.Tensor | None = None,
    channels_last: bool = True,
    max_steps: int | None = None,
    keep_probs: bool = False,
    dist: DistContext | None = None,
) -> dict[str, torch.Tensor]:
    """Run the (controller and) meta-graph in eval mode over ``loader``.

    With a controller, each sample gets its greedy policy (p > 0.5, the deployed rule); else
    every sample gets ``fixed_policy`` (T, K). Returns CPU tensors: ``label``, ``pred``,
    ``loss`` (N,), ``policy`` (N, T, K) bool, ``probs`` (N, T, K) when ``keep_probs``, and any
    extra ``fields`` of the batch (``index``, ``difficulty``). With ``dist``, ``loader`` is this
    rank's shard (:func:`make_loader` with ``train=False``) and every rank gets all shards' rows.
    """
    if (controller is None) == (fixed_policy is None):
        raise ValueError("give either a controller or a fixed policy.")
    graph, controller = unwrap(graph), unwrap(controller) if controller is not None else None
    graph.eval()
    if controller is not None:
        controller.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for i, batch in enumerate(loader):
        if max_steps is not None and i >= max_steps:
            break
        b = unpack_batch(batch, fields)
        x = to_device(b["image"], device, channels_last)
        y = b["label"].to(device)
        if controller is not None:
            probs = controller(x)  # (B, T, K)
            policy = greedy_policy(probs, graph)
        else:
            probs = None
            policy = fixed_policy.to(device).expand(x.shape[0], -1, -1)
        logits = graph(x, policy)  # (B, classes)
        rows = {
            "label": y,
            "pred": logits.argmax(1),
            "loss": F.cross_entropy(logits, y, reduction="none"),
            "policy": policy > 0.5,
        }
        if keep_probs and probs is not None:
            rows["probs"] = probs.float()
        for extra in fields:
            if extra not in ("image", "label"):
                rows[extra] = b[extra]
        for k, v in rows.items():
            out.setdefault(k, []).append(v.detach().cpu())
    local = {k: torch.cat(v) for k, v in out.items()}
    return dist.gather_concat(local) if dist is not None else local


def measure_routed_latency(
    graph: MetaGraph,
    controller: Controller,
    policies: torch.Tensor,
    timing: TimingConfig,
    device: torch.device,
    threads: int | None = 1,
) -> np.ndarray:
    """Real batch-1 latency (controller, then the extracted child) per policy row (N,) in ms;
    identical rows are timed once."""
    if len(policies) == 0:
        return np.zeros(0)
    flat = policies.reshape(len(policies), -1).to(torch.uint8).cpu()
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    uniq_pol = uniq.float().reshape(-1, *policies.shape[1:])
    was_training = graph.training
    ms = measure_children(graph, uniq_pol, controller, threads, timing, device, passes=1, progress=False)[:, 0]
    graph.train(was_training)
    return ms[inverse.numpy()]


def policy_bits(policy: torch.Tensor) -> list[str]:
    """(N, T, K) 0/1 -> N strings of T*K characters (cell-major)."""
    flat = policy.reshape(len(policy), -1).to(torch.uint8).numpy()
    return ["".join("1" if b else "0" for b in row) for row in flat]


# ---- stage preamble ----------------------------------------------------------------------------
@dataclasses.dataclass
class StageStart:
    """What :func:`begin_stage` hands a stage; use it as a context manager (``with begin_stage(...)
    as start:``) so that the stage folder's lock is held until the stage returns or fails."""

    out: Path
    device: torch.device
    resume_state: dict | None  # the checkpoint to continue from, or None
    dist: DistContext = dataclasses.field(default_factory=DistContext)
    folder: StageFolder | None = None  # rank 0's locked folder (None on the other ranks)

    def __enter__(self) -> "StageStart":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.folder is not None:
            self.folder.close(failed=exc_type is not None)


# The setting that names each stage's folder, for the refusal of a name outside the run folder.
_FOLDER_SETTINGS = {"finetune": "finetune.out_dir", "evaluate": "evaluate.out_dir", "baseline": "the baseline's folder",
                    "comparator": "the comparator's folder"}


def begin_stage(
    cfg: Config,
    run_dir: str | Path,
    stage: str,
    resume: bool,
    overwrite: bool,
    out_name: str | None = None,
    sections: tuple[str, ...] = (),
    dist: DistContext | None = None,
) -> StageStart:
    """Open ``RUN/<stage>`` (:class:`~instanas_core.rundir.StageFolder`: a name inside the run
    folder, locked, prepared for a new, resumed or overwritten stage), check a resumed stage's saved
    config and search space against ``cfg``, write the config and environment, and return the
    checkpoint to resume from (if any).

    Under torchrun (``dist``) rank 0 does the checking and writing (and holds the lock) while the
    others wait; then every rank loads the checkpoint.
    """
    name = out_name or stage
    if dist is None:
        dist = single_process(resolve_device(cfg.experiment.device))
    space_hash = cfg.experiment.space().space_hash()

    def prepare() -> tuple[Path, dict | None, StageFolder]:
        folder = StageFolder(run_dir, name, stage, _FOLDER_SETTINGS.get(stage))
        out = folder.open(resume, overwrite)
        try:
            saved = out / "config.json"
            state = None
            if resume and (out / "last.pt").is_file():
                if saved.is_file():
                    saved_cfg = config_from_dict(load_json(saved), source=saved)
                    _check_same(saved_cfg, cfg, ("experiment", stage) + sections, name)
                state = load_checkpoint(out / "last.pt", map_location="cpu")
                check_space_hash(state, space_hash, f"cannot resume {name}: {out / 'last.pt'}")
            _check_experiment_consistent(cfg, Path(run_dir), name)
            save_json(saved, config_to_dict(cfg))
            save_environment(
                out, str(dist.device), cfg.experiment.seed,
                {"stage": stage, "preset": cfg.preset, "world_size": dist.world_size},
            )
        except BaseException:
            folder.close(failed=True)
            raise
        return out, state, folder

    prepared = on_main(dist, prepare, share=False)
    folder = None
    if dist.is_main:
        out, state, folder = prepared
    else:
        out = stage_dir(run_dir, name)
        last = out / "last.pt"
        state = load_checkpoint(last, map_location="cpu") if resume and last.is_file() else None
    return StageStart(out, dist.device, state, dist, folder)


# Settings that may differ between an interrupted run and its resumption (and between a finished
# stage and the configuration a notebook asks for): where and how it runs, not what it computes.
RESUME_FREE_SETTINGS = frozenset({
    "stop_after_epoch", "num_workers", "threads", "device", "data_root", "download", "measure_samples",
    "channels_last",  # a memory layout: the same numbers either way
    "out_dir",  # where a stage writes (a resumed stage is in its own folder anyway)
})


def _check_same(saved: Config, cfg: Config, sections: tuple[str, ...], name: str) -> None:
    diffs = []
    for sec in sections:
        a, b = dataclasses.asdict(getattr(saved, sec)), dataclasses.asdict(getattr(cfg, sec))
        diffs += [f"{sec}.{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RESUME_FREE_SETTINGS and a.get(k) != b.get(k)]
    if diffs:
        raise RunDirError(
            f"cannot resume {name}: its saved configuration differs ({'; '.join(diffs)}). Use the same preset and "
            "--set values, or --overwrite to start the stage again."
        )


# Settings of the experiment that fix the search space and the data: stages of one run must agree.
_SPACE_KEYS = ("dataset", "width_mult", "stage24_stride", "data_size", "data_seed", "train_per_class", "eval_per_class")


def _check_experiment_consistent(cfg: Config, run_dir: Path, name: str) -> None:
    for other in sorted(run_dir.glob("*/config.json")):
        if other.parent.name in (name, "profile"):
            continue
        try:
            exp = load_json(other).get("experiment", {})
        except (OSError, ValueError, AttributeError):  # unreadable, or not a JSON object: not a stage's config
            continue
        if not isinstance(exp, dict):
            continue
        mine = dataclasses.asdict(cfg.experiment)
        diffs = [f"{k}: {exp.get(k)!r} there, {mine[k]!r} here" for k in _SPACE_KEYS if k in exp and exp[k] != mine[k]]
        if diffs:
            raise RunDirError(
                f"{run_dir} holds a {other.parent.name} stage made with other experiment settings ({'; '.join(diffs)}). "
                "Use the same preset and --set values in every stage of a run, or another --run-dir."
            )
