"""A seeded DataLoader: the same ``seed`` gives the same batches, and -- because each worker's
torch seed derives from the loader's generator -- the same random augmentation (§4.2) in every
worker process. With ``num_workers=0`` augmentation draws from the global torch RNG, so seed it
(``torch.manual_seed``) for a reproducible run."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["build_loader", "seed_worker"]


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs in a worker from its torch seed (which DataLoader sets to
    the loader's base seed + worker id); otherwise forked workers share one NumPy state."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose shuffling and worker seeds come from a ``torch.Generator`` seeded with
    ``seed``; memory is pinned when ``device`` is a CUDA device (faster host-to-GPU copies)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    pin = device is not None and torch.device(device).type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        persistent_workers=False,
    )
