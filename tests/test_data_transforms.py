"""§4.2 augmentation: Cutout geometry, crop with padding, flip, normalisation, per-data-set sizes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from instanas_core.data import Cutout, build_transform, cutout, dataset_info


def _zeroed(image: torch.Tensor) -> torch.Tensor:
    return (image == 0).all(dim=0)  # (H, W)


def test_cutout_in_the_middle_erases_the_full_square():
    image = torch.ones(3, 32, 32)
    out = cutout(image, 16, cy=16, cx=16)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:24, 8:24] = True
    assert torch.equal(_zeroed(out), expected)
    assert int((out == 0).sum()) == 3 * 256
    assert bool((image == 1).all())  # the input is left untouched


@pytest.mark.parametrize(
    "cy, cx, rows, cols",
    [(0, 0, (0, 8), (0, 8)), (31, 16, (23, 32), (8, 24)), (5, 30, (0, 13), (22, 32)), (31, 31, (23, 32), (23, 32))],
)
def test_cutout_is_clipped_at_the_border(cy, cx, rows, cols):
    out = cutout(torch.ones(3, 32, 32), 16, cy=cy, cx=cx)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = True
    assert torch.equal(_zeroed(out), expected)


def test_cutout_module_draws_centres_anywhere_and_is_seeded():
    areas = []
    for seed in range(200):
        out = Cutout(16, generator=torch.Generator().manual_seed(seed))(torch.ones(3, 32, 32))
        zero = _zeroed(out)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert int(zero.sum()) == len(rows) * len(cols)  # one axis-aligned rectangle
        assert len(rows) <= 16 and len(cols) <= 16
        areas.append(int(zero.sum()))
    assert max(areas) == 256 and min(areas) < 256  # sometimes whole, sometimes clipped at a border
    a = Cutout(32, generator=torch.Generator().manual_seed(3))(torch.ones(3, 64, 64))
    b = Cutout(32, generator=torch.Generator().manual_seed(3))(torch.ones(3, 64, 64))
    assert torch.equal(a, b) and 0 < int(_zeroed(a).sum()) <= 32 * 32


def test_eval_transform_only_normalises():
    info = dataset_info("cifar10")
    image = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    out = build_transform(info, train=False)(image)
    expected = (200 / 255 - torch.tensor(info.mean)) / torch.tensor(info.std)  # (3,)
    assert out.dtype == torch.float32 and type(out) is torch.Tensor
    assert torch.allclose(out, expected[:, None, None].expand(3, 32, 32), atol=1e-6)


def test_random_crop_pads_with_zeros_and_flip_mirrors():
    info = dataclasses.replace(dataset_info("synthetic-difficulty"), cutout=0, pad=4, flip=False)
    image = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    padded = [build_transform(info, train=True)(image) for _ in range(20)]
    assert all(p.shape == (3, 32, 32) for p in padded)
    assert any((p == -1.0).any() for p in padded)  # a zero pixel normalised by 0.5 / 0.5
    flip_only = dataclasses.replace(info, pad=0, flip=True)
    ramp = torch.arange(32, dtype=torch.uint8).repeat(3, 32, 1)  # (3, 32, 32), x-ramp
    outs = {tuple(build_transform(flip_only, train=True)(ramp)[0, 0, :2].tolist()) for _ in range(30)}
    assert len(outs) == 2  # both the original and the mirrored ramp occur


@pytest.mark.parametrize("name, size", [("tinyimagenet", (64, 64)), ("imagenet", (300, 257))])
def test_pil_images_come_out_at_the_data_sets_resolution(name, size):
    info = dataset_info(name)
    image = Image.new("RGB", size, (10, 120, 250))
    for train in (True, False):
        out = build_transform(info, train)(image)
        assert out.shape == (3, info.resolution, info.resolution) and out.dtype == torch.float32
