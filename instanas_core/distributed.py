"""Data-parallel training on PyTorch's distributed engine (issue 8, "Scale-out"): every training
stage runs unchanged under ``torchrun``.

Launch::

    torchrun --standalone --nproc-per-node=N -m instanas_core pretrain --preset P --run-dir RUN
    torchrun --nnodes=M --nproc-per-node=N --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT -m instanas_core ...

Each process finds its place in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (torchrun sets them,
with ``MASTER_ADDR`` / ``MASTER_PORT``). Without them, or with ``WORLD_SIZE=1``, nothing here
does anything: a single process computes bit for bit what it computed before this module existed.

How the stages use it (:mod:`instanas_core.stages`):

* **process groups.** gloo on CPU, NCCL on CUDA, where a process's device is ``cuda:LOCAL_RANK``
  (a ``cuda:N`` in the configuration is replaced). A second, gloo group with a long timeout
  (:data:`CONTROL_TIMEOUT`) carries the small control messages -- reduced metrics, broadcast
  objects, errors -- so that ranks can wait for rank 0's latency profiling or test evaluation
  without hitting NCCL's watchdog.
* **gradients.** :class:`~torch.nn.parallel.DistributedDataParallel` wraps the meta-graph
  (pre-training, search, fine-tuning), the controller (search) and the trained network
  (baselines, comparators); gradients are averaged over ranks. With equal per-rank batches the
  mean of per-rank mean losses is the global mean loss, so a step computes the gradient of the
  global batch. ``subset`` execution skips the modules that no sample of a rank chose, so the
  parameters used differ between ranks: ``find_unused_parameters=True``. DDP then all-reduces a
  zero for a parameter unused on one rank, and leaves a parameter that *no* rank used with
  ``grad is None``, so SGD's momentum and weight decay skip it exactly as in one process.
* **batches.** Batch sizes in the configuration are *global*: each of N ranks loads
  ``batch_size / N`` samples per step (:func:`per_rank_batch`; a size that does not divide is
  refused), so a run's optimisation -- learning rate, steps per epoch, schedule -- does not depend
  on the number of processes, and a checkpoint resumes with any number of them. Training data
  come from a :class:`~torch.utils.data.DistributedSampler` over the epoch's seeded permutation;
  every epoch builds its loader from its own seed (:func:`~instanas_core.rundir.epoch_seed`),
  which is what ``set_epoch`` does for a sampler that lives across epochs.
* **randomness.** Augmentation, drop-path and policy sampling draw from per-rank seeds
  (:func:`rank_seed`: rank 0 keeps the run's seed, others get a distinct, reproducible one), so
  ranks explore different policies and a resumed run replays exactly.
* **BatchNorm.** DDP's default, as timm's and torchvision's reference scripts without
  ``--sync-bn``: batch statistics are per rank in training, running statistics are broadcast
  from rank 0 before every forward -- and, here, after every training epoch
  (:meth:`DistContext.sync_buffers`), so that validation, the controller's epoch and the
  checkpoint see one model on every rank. SyncBatchNorm is not used: it is a collective inside
  every BatchNorm call, and with instance-aware routing a module can run on one rank and be
  skipped on another in the same step, which would leave the other ranks waiting forever.
* **metrics and validation.** Meter sums and counts are all-reduced, and validation runs on a
  contiguous shard per rank that is gathered in order (:meth:`DistContext.gather_concat`), so
  every rank computes the same numbers.
* **files and timing.** Only rank 0 writes (``config.json``, checkpoints, ``metrics.csv``,
  ``summary.json``, ``results.csv``), profiles the latency table and times real latency; the
  others wait (:func:`on_main`), and an error on rank 0 is raised on every rank. Checkpoints hold
  the unwrapped module's ``state_dict()``. Every process must therefore see the same run folder
  (one machine, or a file system shared by the nodes): the others read the checkpoints and the
  latency table that rank 0 wrote. The evaluate stage is not distributed: rank 0 runs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "CONTROL_TIMEOUT",
    "DistContext",
    "env_world",
    "is_main_process",
    "single_process",
    "distributed_session",
    "on_main",
    "per_rank_batch",
    "rank_seed",
    "contiguous_shard",
    "unwrap",
]

# How long a rank waits for rank 0 in the control group: rank 0 alone profiles the latency table,
# scores and times models; at the paper's scale that takes minutes, not the default 30.
CONTROL_TIMEOUT = timedelta(hours=4)

T = TypeVar("T")


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment, or None for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if world <= 1:
        return None
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world, local


def is_main_process() -> bool:
    """True in a single process and on rank 0 (reads the environment; needs no process group)."""
    return int(os.environ.get("RANK", "0") or "0") == 0


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device.

    ``control`` is the gloo process group of control messages (None in one process). Every
    collective method is a no-op returning its input when ``world_size == 1``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    control: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    # ---- collectives over the control group (CPU, gloo) -----------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self.control)

    def all_reduce(self, values: Sequence[float], op: str = "sum") -> list[float]:
        """Element-wise sum (or ``max``, ``min``) of ``values`` over ranks, in float64."""
        if not self.enabled:
            return [float(v) for v in values]
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)  # (n,)
        dist.all_reduce(t, op=ops[op], group=self.control)
        return t.tolist()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def gather_concat(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Concatenate every rank's CPU tensors key by key, in rank order: the results of a
        contiguous shard per rank come back in the data set's order."""
        if not self.enabled:
            return parts
        gathered = [p for p in self.all_gather(parts) if p]
        if not gathered:
            return {}
        return {k: torch.cat([p[k] for p in gathered]) for k in gathered[0]}

    # ---- models ------------------------------------------------------------------------------
    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` in :class:`DistributedDataParallel` (itself in one process). The wrapper
        broadcasts rank 0's parameters and buffers once, at construction."""
        if not self.enabled:
            return module
        if not any(p.requires_grad for p in module.parameters()):
            return module  # nothing to synchronise (a frozen network); DDP would refuse it
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if not self.enabled:
            return
        for buf in unwrap(module).buffers():
            dist.broadcast(buf, src=0)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``module`` itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def single_process(device: torch.device | str = "cpu") -> DistContext:
    return DistContext(device=torch.device(device))


def _resolve(device_name: str, local_rank: int | None) -> torch.device:
    # Imported here: config imports the data layer, which this low-level module need not load.
    from .config import ConfigError

    device = torch.device(device_name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device_name!r} was asked for, but CUDA is not available here; use --device cpu."
            )
        if local_rank is not None:
            device = torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def distributed_session(device_name: str = "cpu") -> Iterator[DistContext]:
    """The :class:`DistContext` of this process for a stage that trains on ``device_name``.

    Under torchrun it joins the default process group (initialising it from the environment
    unless it already is: a caller that set it up keeps it), creates the control group, and on
    exit destroys what it created. In one process it yields a context that does nothing.
    """
    world = env_world()
    if world is None:
        yield single_process(_resolve(device_name, None))
        return
    rank, size, local = world
    device = _resolve(device_name, local)
    owner = not dist.is_initialized()
    if owner:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=size)
    if dist.get_world_size() != size or dist.get_rank() != rank:
        raise RuntimeError(
            f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, but the environment says "
            f"rank {rank} of {size}."
        )
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    ctx = DistContext(rank, size, local, device, dist.get_backend(), control)
    try:
        yield ctx
    finally:
        dist.destroy_process_group(control)
        if owner:
            dist.destroy_process_group()


def on_main(ctx: DistContext | None, fn: Callable[[], T], share: bool = True) -> T | None:
    """``fn()`` on rank 0 only, while the other ranks wait; returns its result on every rank
    (``share=False``: on rank 0 only, None elsewhere). An exception on rank 0 is raised on every
    rank, so that no rank waits for one that has failed."""
    if ctx is None or not ctx.enabled:
        return fn()
    outcome: tuple[str, Any] | None = None
    error: BaseException | None = None
    result: Any = None
    if ctx.is_main:
        try:
            result = fn()
            outcome = ("ok", result if share else None)
        except Exception as exc:  # re-raised below, after the other ranks have heard of it
            error = exc
            outcome = ("error", _picklable(exc))
    kind, value = ctx.broadcast(outcome)
    if kind == "error":
        if error is not None:
            raise error
        raise value
    return result if ctx.is_main else value


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"on rank 0: {type(exc).__name__}: {exc}")


def per_rank_batch(batch_size: int, world_size: int, setting: str = "batch_size") -> int:
    """The per-rank share of a global batch; refuses a batch that does not split evenly (ranks
    with unequal batches would weigh their samples unequally in the averaged gradient)."""
    from .config import ConfigError

    if batch_size % world_size:
        raise ConfigError(
            f"{setting}={batch_size} is the global batch (summed over processes) and cannot be split evenly over "
            f"{world_size} processes; choose a batch size divisible by {world_size} or another --nproc-per-node."
        )
    return batch_size // world_size


def rank_seed(seed: int, rank: int) -> int:
    """A distinct, reproducible seed per rank; rank 0 keeps ``seed`` (so one process is unchanged)."""
    return seed if rank == 0 else (seed + rank * 0x9E3779B97F4A7C15) % 2**63


def contiguous_shard(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s slice of ``range(n)``: contiguous, sizes differing by at most one, so
    concatenating the shards in rank order gives ``range(n)`` back."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
