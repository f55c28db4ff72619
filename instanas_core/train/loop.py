"""The one training loop of every stage (paper §3.1's three stages, the baselines and the
comparators): an epoch loop that re-seeds, trains, validates, checkpoints and logs, and a pass
over the training data that calls a stage's *step function* once per batch.

A stage supplies, as nanoGPT's training loop reads:

* a step function ``step(i, x, y) -> (batch size, statistics)`` per pass, which samples its policy,
  runs forward, checks the loss is finite, and updates (each phase commented where it is written);
* an epoch function ``epoch_fn(epoch) -> EpochResult`` that runs its passes (:func:`run_pass`)
  and its validation and returns the ``metrics.csv`` row and the checkpoint.

:func:`run_epochs` does the rest the same way for every stage: the per-epoch clock, a non-finite
loss or reward turned into the one-paragraph stop that keeps the last good checkpoint, the
checkpoint written before the metrics row, and ``stop_after_epoch``. Statistics are per-sample means
over all ranks (:class:`Meter`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from ..distributed import DistContext, on_main, rank_seed
from ..rundir import (
    MetricsLog,
    RunDirError,
    capture_rng_state,
    epoch_seed,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from .data import make_loader, to_device

__all__ = [
    "StepFn",
    "Meter",
    "NonFiniteError",
    "check_finite",
    "progress_bar",
    "limited",
    "open_metrics",
    "PassInputs",
    "pass_inputs",
    "run_pass",
    "policy_step",
    "resume_training",
    "EpochResult",
    "EpochLoop",
    "run_epochs",
    "end_epoch",
    "non_finite_stop",
]

# step(i, x, y) -> (samples in the batch, per-sample mean statistics of the batch)
StepFn = Callable[[int, torch.Tensor, torch.Tensor], "tuple[int, dict[str, float]]"]


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

    def means(self) -> dict[str, float]:
        return {k: self.mean(k) for k in self.sums}

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


# ---- crash safety: non-finite values ----------------------------------------------------------
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


# ---- one pass over the training data ----------------------------------------------------------
def progress_bar(iterable, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def limited(loader, steps: int) -> Iterator:
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        yield batch


@dataclasses.dataclass
class PassInputs:
    """What one pass of an epoch draws from its seed: the loader (data order and augmentation)
    and the generator of the step's own random choices (policies, drop-path)."""

    loader: object
    generator: torch.Generator


def pass_inputs(exp, stage: str, epoch: int, phase: int, train_set, batch_size: int, device, dist) -> PassInputs:
    """Re-seed everything from (run seed, stage, epoch, phase) and this rank: a run resumed at an
    epoch boundary replays exactly what the uninterrupted run did (:func:`~instanas_core.rundir.epoch_seed`)."""
    rank = dist.rank if dist is not None else 0
    s = epoch_seed(exp.seed, stage, epoch, phase)
    seed_everything(rank_seed(s, rank))
    loader = make_loader(train_set, batch_size, True, s, exp, device, train=True, dist=dist)
    return PassInputs(loader, torch.Generator().manual_seed(rank_seed(s, rank)))


def run_pass(
    step: StepFn,
    loader,
    steps: int,
    device: torch.device,
    channels_last: bool,
    desc: str,
    progress: bool = False,
    dist: DistContext | None = None,
    postfix: tuple[str, ...] = ("loss", "accuracy"),
) -> dict[str, float]:
    """``step`` on the first ``steps`` batches of ``loader``; returns the per-sample means (over
    all ranks) of every statistic the step reports. The caller sets train/eval modes."""
    meter = Meter()
    bar = progress_bar(limited(loader, steps), steps, desc, progress)
    for i, (image, label) in enumerate(bar):
        x = to_device(image, device, channels_last)
        y = label.to(device, non_blocking=True)
        n, stats = step(i, x, y)
        meter.update(n, **stats)
        bar.set_postfix({k: f"{meter.mean(k):.3f}" for k in postfix if k in meter.sums})
    return meter.all_reduced(dist).means()


def policy_step(
    model,
    policy_fn: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    table=None,
    dist: DistContext | None = None,
    execution: str = "subset",
    what: str = "training",
) -> StepFn:
    """The step that trains the meta-graph (``model``, possibly in DDP) on the policies
    ``policy_fn(x)`` gives: drop-path in pre-training (§3.2), the controller's shuffled samples in
    the search's meta-graph epochs (§3.3), its greedy decisions in fine-tuning (§3.1 c). Reports
    loss, accuracy and, with a latency ``table``, the policies' mean table latency. A non-finite
    loss raises before the update.

    ``policy_fn`` may return a list of policies (the sandwich rule of pre-training): the step then
    minimises the mean of their losses in one update and reports that mean loss with the last policy's accuracy."""

    def step(i: int, x: torch.Tensor, y: torch.Tensor) -> tuple[int, dict[str, float]]:
        # ---- policies for this batch
        policy = policy_fn(x)  # (B, T, K), or a list of them
        # ---- forward through the chosen modules only, task loss
        if isinstance(policy, list):
            losses = [F.cross_entropy(model(x, p, execution), y) for p in policy[:-1]]
            policy = policy[-1]
        else:
            losses = []
        logits = model(x, policy, execution)  # (B, classes)
        loss = F.cross_entropy(logits, y)
        if losses:
            loss = (sum(losses) + loss) / (len(losses) + 1)
        loss_value = loss.item()
        check_finite(dist, what, i, loss=loss_value)
        # ---- update
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        stats = {"loss": loss_value, "accuracy": (logits.argmax(1) == y).float().mean().item()}
        if table is not None:
            stats["latency"] = table.estimate(policy).mean().item()
        return len(y), stats

    return step


def resume_training(state: dict | None, parts: dict) -> int:
    """Load a resume checkpoint into ``parts`` (``{checkpoint key: module, optimiser or
    schedule}``) and restore its RNG states; returns the first epoch still to run (0 without a
    checkpoint)."""
    if state is None:
        return 0
    for key, part in parts.items():
        part.load_state_dict(state[key])
    restore_rng_state(state["rng"])
    return state["epoch"] + 1


# ---- the epoch loop ---------------------------------------------------------------------------
def open_metrics(dist: DistContext | None, path: Path, columns: tuple[str, ...], first_epoch: int) -> MetricsLog | None:
    """``metrics.csv`` with the rows of epochs before ``first_epoch`` (a resumed stage redoes the
    others); opened by rank 0 only (None on the other ranks)."""

    def open_log() -> MetricsLog:
        log = MetricsLog(path, columns)
        log.truncate(first_epoch)
        return log

    return on_main(dist, open_log, share=False)


def end_epoch(
    dist,
    out: Path,
    metrics,
    row: dict,
    state: dict,
    epoch: int,
    epochs: int,
    stop_after_epoch: int | None,
    extra_checkpoints: dict[str, dict] | None = None,
) -> bool:
    """Rank 0 writes ``extra_checkpoints`` (``{relative path: state}``, such as the search's
    per-epoch models), then ``RUN/<stage>/last.pt`` (``state`` plus the RNG states and the epoch's
    metrics row), then appends the row to ``metrics.csv``: checkpoints first, so a crash in
    between leaves a row that a resumed run truncates. Returns True when the stage stops after
    this epoch (``stop_after_epoch``, short of the last)."""

    def save() -> None:
        for rel, extra in (extra_checkpoints or {}).items():
            save_checkpoint(out / rel, extra)
        save_checkpoint(out / "last.pt", {**state, "rng": capture_rng_state(), "metrics": row})
        metrics.append(row)

    on_main(dist, save)
    return stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < epochs - 1


@dataclasses.dataclass
class EpochResult:
    """What one epoch of a stage hands the loop: its ``metrics.csv`` row (``seconds`` is added),
    its resume state for ``last.pt``, and checkpoints to write before it."""

    row: dict
    state: dict
    extra_checkpoints: dict[str, dict] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EpochLoop:
    """The settings every stage's epoch loop shares. ``name`` appears in messages; ``lr_hint``
    names the learning-rate settings for the non-finite stop."""

    name: str
    epochs: int
    stop_after_epoch: int | None
    out: Path
    lr_hint: str
    dist: DistContext | None = None


def run_epochs(loop: EpochLoop, first: int, metrics, epoch_fn: Callable[[int], EpochResult]) -> None:
    """Epochs ``first .. loop.epochs - 1`` of a stage: ``epoch_fn(epoch)`` trains and validates;
    a NaN or infinite loss or reward stops the stage with :func:`non_finite_stop` before anything
    of that epoch is written; otherwise the checkpoint and then the row are written
    (:func:`end_epoch`)."""
    for epoch in range(first, loop.epochs):
        t0 = time.time()
        try:
            result = epoch_fn(epoch)
        except NonFiniteError as exc:
            raise non_finite_stop(exc, loop.name, epoch, loop.epochs, loop.out, loop.lr_hint) from None
        result.row["seconds"] = time.time() - t0
        if end_epoch(
            loop.dist,
            loop.out,
            metrics,
            result.row,
            result.state,
            epoch,
            loop.epochs,
            loop.stop_after_epoch,
            result.extra_checkpoints,
        ):
            break
