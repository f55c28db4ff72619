"""What a stage needs before it trains: the device, the experiment's data splits and seeded
loaders (global batch sizes, sharded under torchrun), and batches on the device in the stage's
memory layout."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..config import ConfigError, ExperimentConfig
from ..data import DatasetError, build_dataset, build_loader, external_test_split
from ..data.loader import seed_worker
from ..distributed import DistContext, contiguous_shard, per_rank_batch, rank_seed

__all__ = [
    "TrainingData",
    "training_data",
    "resolve_device",
    "build_split",
    "make_loader",
    "steps_per_epoch",
    "to_device",
    "unpack_batch",
]


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
    if split == "test" and external_test_split(exp.dataset, exp.data_root):
        per_class = None  # a test file shipped with the data (cifar10-jpeg's test.npz) is used whole
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


class TrainingData(NamedTuple):
    """What every training stage reads: the training split (augmented as configured), the
    validation split and its loader (batches of at least 64), and the steps per epoch."""

    train_set: Any
    val_set: Any
    val_loader: Any
    steps: int


def training_data(exp: ExperimentConfig, batch_size: int, max_steps: int | None, device, dist=None) -> TrainingData:
    """The splits, validation loader and steps per epoch of a stage that trains with ``batch_size``
    (global) for at most ``max_steps`` steps an epoch."""
    train_set = build_split(exp, "train", augment=exp.augment)
    val_set = build_split(exp, "val", augment=False)
    probe = make_loader(train_set, batch_size, True, 0, exp, device, train=True, dist=dist)
    steps = steps_per_epoch(probe, max_steps)
    val_loader = make_loader(val_set, max(batch_size, 64), False, 0, exp, device, train=False, dist=dist)
    return TrainingData(train_set, val_set, val_loader, steps)
