"""synthetic-difficulty: determinism from (seed, split, index), difficulty labels, item formats,
and a short calibration run in which hard images are misclassified more often than easy ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instanas_core.data import DatasetError, SyntheticDifficulty, build_dataset, dataset_info
from instanas_core.data.calibrate import calibrate_synthetic
from instanas_core.data.synthetic import LEVELS, SHAPES, render


def test_same_seed_gives_identical_tensors():
    a = build_dataset("synthetic-difficulty", split="train", seed=3, size=60, augment=False)
    b = build_dataset("synthetic-difficulty", split="train", seed=3, size=60, augment=False)
    c = build_dataset("synthetic-difficulty", split="train", seed=4, size=60, augment=False)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(0, 60, 7))
    assert not torch.equal(a.images, c.images)


def test_training_items_are_not_augmented_unless_asked():
    a = build_dataset("synthetic-difficulty", split="train", seed=3, size=40)
    b = build_dataset("synthetic-difficulty", split="train", seed=3, size=40)
    assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(40))
    torch.manual_seed(0)
    augmented = build_dataset("synthetic-difficulty", split="train", seed=3, size=40, augment=True)
    assert any(not torch.equal(a[i][0], augmented[i][0]) for i in range(40))


def test_each_item_depends_only_on_seed_split_and_index():
    small = build_dataset("synthetic-difficulty", split="val", seed=5, size=13, augment=False)
    large = build_dataset("synthetic-difficulty", split="val", seed=5, size=40, augment=False)
    assert torch.equal(small.images, large.images[:13])
    image, label, level = render(5, "val", 12)
    assert np.array_equal(image, large.images[12].permute(1, 2, 0).numpy())
    assert (label, level) == (int(large.targets[12]), int(large.difficulty[12]))
    other_split = build_dataset("synthetic-difficulty", split="test", seed=5, size=13, augment=False)
    assert not torch.equal(small.images, other_split.images)


def test_labels_and_levels_are_balanced_and_exposed():
    ds = build_dataset("synthetic-difficulty", split="train", seed=0, size=500)
    assert ds.images.shape == (500, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.targets).tolist() == [50] * len(SHAPES)
    assert torch.bincount(ds.difficulty).tolist() == [100] * LEVELS
    assert torch.equal(ds.difficulty, (torch.arange(500) // 10) % 5)
    image, label = ds[17]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 7
    assert len(build_dataset("synthetic-difficulty", split="val")) == dataset_info("synthetic-difficulty").splits["val"]


def test_return_difficulty_and_index_order():
    ds = build_dataset("synthetic-difficulty", split="test", size=30, return_difficulty=True, return_index=True)
    image, label, level, index = ds[23]
    assert (label, level, index) == (3, 2, 23) and image.shape == (3, 32, 32)
    assert int(ds.difficulty[23]) == 2  # read through the index wrapper
    sub = build_dataset("synthetic-difficulty", split="train", size=100, n_per_class=3, seed=1, return_difficulty=True)
    assert isinstance(sub, SyntheticDifficulty) and len(sub) == 30
    for i in range(len(sub)):
        assert sub[i][2] == int(sub.difficulty[i]) == (int(sub.source_indices[i]) // 10) % 5


def test_harder_levels_carry_more_nuisance():
    # Pixel noise grows with the level: the mean absolute difference between horizontal
    # neighbours over flat regions rises from level 0 to level 4.
    ds = build_dataset("synthetic-difficulty", split="train", seed=0, size=500)
    images = ds.images.float() / 255  # (N, 3, 32, 32)
    roughness = (images[..., 1:] - images[..., :-1]).abs().mean(dim=(1, 2, 3))  # (N,)
    by_level = [float(roughness[ds.difficulty == lvl].mean()) for lvl in range(LEVELS)]
    assert all(a < b for a, b in zip(by_level, by_level[1:])), by_level


def test_bad_size_and_seed_are_refused():
    with pytest.raises(DatasetError, match="size must be >= 0"):
        build_dataset("synthetic-difficulty", size=-1)
    with pytest.raises(DatasetError, match="seed must be >= 0"):
        build_dataset("synthetic-difficulty", seed=-2, size=3)


def test_short_calibration_finds_hard_images_harder():
    # A quarter of the default calibration budget: the CNN is far from converged, but the ladder
    # must already show (the full run is quoted in synthetic.py's docstring).
    result = calibrate_synthetic(seed=0, n_train=2000, n_test=500, epochs=4)
    assert result.count_by_level == (100,) * LEVELS
    errors = result.error_by_level
    assert errors[4] > errors[0] + 0.15, errors
    assert errors[3] > errors[1] and errors[2] > errors[0], errors
