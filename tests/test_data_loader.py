"""Seeded loaders: shuffling from a torch.Generator, seeded workers, pinned memory for CUDA."""

from __future__ import annotations

import torch

from instanas_core.data import build_dataset, build_loader


def _labels_in_order(loader) -> list[int]:
    return [int(y) for _, y in loader for y in y]


def test_same_seed_same_order_other_seed_other_order():
    ds = build_dataset("digits", split="val")
    a = _labels_in_order(build_loader(ds, 32, shuffle=True, seed=7))
    b = _labels_in_order(build_loader(ds, 32, shuffle=True, seed=7))
    c = _labels_in_order(build_loader(ds, 32, shuffle=True, seed=8))
    assert a == b and a != c and sorted(a) == sorted(ds.targets.tolist())
    assert _labels_in_order(build_loader(ds, 32, shuffle=False, seed=0)) == ds.targets.tolist()


def test_worker_augmentation_is_reproducible():
    ds = build_dataset("synthetic-difficulty", split="train", size=40, return_index=True)

    def first_batch(seed):
        images, _, index = next(iter(build_loader(ds, 20, shuffle=True, seed=seed, num_workers=2)))
        return images, index

    (x1, i1), (x2, i2) = first_batch(11), first_batch(11)
    assert torch.equal(i1, i2) and torch.equal(x1, x2)
    x3, i3 = first_batch(12)
    assert not torch.equal(i1, i3)


def test_batches_drop_last_and_pin_memory_only_for_cuda():
    ds = build_dataset("digits", split="test")  # 359 images
    loader = build_loader(ds, 100, shuffle=False, seed=0, drop_last=True)
    assert len(loader) == 3 and not loader.pin_memory
    assert len(build_loader(ds, 100, shuffle=False, seed=0)) == 4
    assert build_loader(ds, 100, shuffle=False, seed=0, device="cuda:0").pin_memory
    assert not build_loader(ds, 100, shuffle=False, seed=0, device=torch.device("cpu")).pin_memory
    images, labels = next(iter(loader))
    assert images.shape == (100, 3, 32, 32) and labels.dtype == torch.int64
