"""CIFAR-10 (JPEG q75) from its packed file: a small file the test writes, its bad variants, and
(where the shared folder exists beside the repository) the real 50,000-image file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import instanas_core.data.cifar_jpeg as cifar_jpeg
from instanas_core.data import DatasetError, build_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg"
PER_CLASS = 6


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def write_packed(
    folder: Path,
    blobs: list[bytes] | None = None,
    labels: list[int] | None = None,
    name: str = "train.npz",
    per_class: int = PER_CLASS,
) -> tuple[Path, np.ndarray]:
    """A packed file of ``per_class`` flat-coloured 32x32 images per class (colour = class)."""
    rng = np.random.default_rng(0 if name == "train.npz" else 1)
    if blobs is None:
        labels = [c for c in range(10) for _ in range(per_class)]
        pixels = np.stack([np.full((32, 32, 3), 20 * c + 5, np.uint8) for c in labels])
        pixels[:, 8:16, 8:16] = rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
        blobs = [_jpeg(p) for p in pixels]
    folder.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    jpeg = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    np.savez(folder / name, jpeg=jpeg, offsets=offsets, labels=np.asarray(labels, dtype=np.int64))
    return folder, offsets


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    # Each test sees an empty in-process cache, so decoding and the disk cache are exercised.
    monkeypatch.setattr(cifar_jpeg, "_DECODED", {})


def _build(root, split, tmp_path, **options):
    return build_dataset(
        "cifar10-jpeg",
        root=root,
        split=split,
        cache_dir=tmp_path / "cache",
        val_per_class=2,
        test_per_class=1,
        **options,
    )


def test_small_packed_file_is_split_and_decoded(tmp_path):
    folder, _ = write_packed(tmp_path / "packed")
    parts = {s: _build(folder, s, tmp_path) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 30, "val": 20, "test": 10}
    assert torch.bincount(parts["val"].targets).tolist() == [2] * 10
    seen = [set(d.source_indices.tolist()) for d in parts.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    train = parts["train"]
    assert train.info.title == "CIFAR-10 (JPEG q75)" and train.classes[0] == "airplane"
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    # The flat corner (away from the noisy block's JPEG blocks) keeps the colour that encodes the label.
    for i in range(len(train)):
        corner = train.images[i, :, 24:, 24:].float().mean()
        assert abs(float(corner) - (20 * int(train.targets[i]) + 5)) <= 3


def test_decoded_images_are_cached_on_disk(tmp_path, monkeypatch):
    folder, _ = write_packed(tmp_path / "packed")
    first = _build(folder, "train", tmp_path)
    cached = list((tmp_path / "cache").glob("cifar10-jpeg-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (60, 32, 32, 3)
    monkeypatch.setattr(cifar_jpeg, "_DECODED", {})

    def no_decoding(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cifar_jpeg, "_decode", no_decoding)
    again = _build(folder, "train", tmp_path)
    assert torch.equal(first.images, again.images)


def test_env_var_and_data_root_layout_are_found(tmp_path, monkeypatch):
    folder, _ = write_packed(tmp_path / "data" / "cifar10-jpeg")
    monkeypatch.setenv("INSTANAS_CIFAR10_JPEG", str(folder))
    assert len(_build(None, "val", tmp_path)) == 20
    monkeypatch.delenv("INSTANAS_CIFAR10_JPEG")
    assert len(_build(tmp_path / "data", "val", tmp_path)) == 20  # a data root holding cifar10-jpeg/


def test_missing_file_says_where_it_must_be(tmp_path):
    with pytest.raises(DatasetError) as e:
        _build(tmp_path / "nothing", "train", tmp_path)
    assert str((tmp_path / "nothing" / "train.npz").resolve()) in str(e.value)
    assert "INSTANAS_CIFAR10_JPEG" in str(e.value)


def test_corrupt_image_is_named_by_index(tmp_path):
    blobs = [_jpeg(np.full((32, 32, 3), 9, np.uint8)) for _ in range(20)]
    blobs[13] = blobs[13][:40]  # truncated
    folder, _ = write_packed(tmp_path / "packed", blobs, [i % 10 for i in range(20)])
    with pytest.raises(DatasetError, match=r"Image 13 of .*train\.npz.*cannot be decoded"):
        build_dataset("cifar10-jpeg", root=folder, cache_dir=tmp_path / "cache", val_per_class=1, test_per_class=0)


def test_wrong_image_size_is_refused(tmp_path):
    blobs = [_jpeg(np.zeros((32, 32, 3), np.uint8)) for _ in range(20)]
    blobs[7] = _jpeg(np.zeros((48, 40, 3), np.uint8))
    folder, _ = write_packed(tmp_path / "packed", blobs, [i % 10 for i in range(20)])
    with pytest.raises(DatasetError, match=r"Image 7 of .* is 40x48.*32x32.*refusing rather than resizing"):
        build_dataset("cifar10-jpeg", root=folder, cache_dir=tmp_path / "cache", val_per_class=1, test_per_class=0)


def test_grayscale_image_is_converted_to_rgb(tmp_path):
    blobs = [_jpeg(np.full((32, 32, 3), 50, np.uint8)) for _ in range(20)]
    grey = io.BytesIO()
    Image.new("L", (32, 32), 170).save(grey, format="JPEG")
    blobs[3] = grey.getvalue()
    folder, _ = write_packed(tmp_path / "packed", blobs, [i % 10 for i in range(20)])
    ds = build_dataset("cifar10-jpeg", root=folder, cache_dir=tmp_path / "cache", val_per_class=0, test_per_class=0)
    assert ds.images.shape == (20, 3, 32, 32)
    assert (ds.images[3] - 170).abs().max() <= 2


def test_inconsistent_arrays_are_refused(tmp_path):
    folder = tmp_path / "packed"
    folder.mkdir()
    np.savez(folder / "train.npz", jpeg=np.zeros(10, np.uint8), offsets=np.array([0, 5, 10]), labels=np.array([1]))
    with pytest.raises(DatasetError, match="one more entry than 'labels'"):
        _build(folder, "train", tmp_path)
    np.savez(folder / "train.npz", jpeg=np.zeros(10, np.uint8), labels=np.array([1]))
    with pytest.raises(DatasetError, match=r"lacks the array\(s\) 'offsets'"):
        _build(folder, "train", tmp_path)


@pytest.mark.skipif(not (SHARED / "train.npz").is_file(), reason=f"{SHARED} is absent")
def test_the_real_file_holds_50000_images_5000_per_class(tmp_path):
    parts = {
        s: build_dataset("cifar10-jpeg", root=SHARED, split=s, cache_dir=tmp_path) for s in ("train", "val", "test")
    }
    assert {s: len(d) for s, d in parts.items()} == {"train": 40_000, "val": 5_000, "test": 5_000}
    labels = torch.cat([d.targets for d in parts.values()])
    assert torch.bincount(labels).tolist() == [5_000] * 10
    indices = torch.cat([d.source_indices for d in parts.values()])
    assert torch.equal(indices.sort().values, torch.arange(50_000))
    image, label = parts["train"][0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < 10
    assert parts["test"].images.float().mean() > 50  # real images, not zeros


# ---- a test split of its own: test.npz beside train.npz (issue 16) -------------------------------
def test_a_test_file_is_the_whole_test_split(tmp_path):
    from instanas_core.data import dataset_title, external_test_split

    root, _ = write_packed(tmp_path / "data")
    assert not external_test_split("cifar10-jpeg", root)
    assert dataset_title("cifar10-jpeg", root) == "CIFAR-10 (JPEG q75)"
    write_packed(root, name="test.npz", per_class=3)
    assert external_test_split("cifar10-jpeg", root)
    assert dataset_title("cifar10-jpeg", root) == "CIFAR-10 test (JPEG q75)"
    parts = {split: _build(root, split, tmp_path) for split in ("train", "val", "test")}
    # validation is carved from the training file alone; the test file is used whole
    assert [len(parts[s]) for s in ("train", "val", "test")] == [10 * (PER_CLASS - 2), 20, 30]
    with np.load(root / "test.npz") as z:
        labels = z["labels"]
    assert parts["test"].targets.tolist() == labels.tolist()
    # the test images are the test file's (its random patch), not training images
    test_patch = parts["test"].images[0, :, 8:16, 8:16].float()
    train_patches = torch.stack(
        [img[:, 8:16, 8:16].float() for img, y in zip(parts["train"].images, parts["train"].targets) if y == 0]
    )
    assert (train_patches - test_patch).abs().mean(dim=(1, 2, 3)).min() > 10


def test_build_split_uses_the_whole_test_file_whatever_eval_per_class(tmp_path, monkeypatch):
    from instanas_core.config import ExperimentConfig
    from instanas_core.train import build_split

    # the default split keeps 500 validation images per class out of the training file
    monkeypatch.setenv("INSTANAS_DATA", str(tmp_path / "data-root"))  # the decoded cache goes there
    root, _ = write_packed(tmp_path / "data", per_class=502)
    write_packed(root, name="test.npz", per_class=3)
    exp = ExperimentConfig(dataset="cifar10-jpeg", data_root=str(root), eval_per_class=1, train_per_class=2)
    assert len(build_split(exp, "val", augment=False)) == 10  # eval_per_class still subsets validation
    assert len(build_split(exp, "train", augment=False)) == 20
    assert len(build_split(exp, "test", augment=False)) == 30


def _bad_test_file(root: Path, what: str) -> None:
    good = [_jpeg(np.full((32, 32, 3), 9, np.uint8))] * 10
    if what == "size":
        write_packed(root, [_jpeg(np.zeros((40, 40, 3), np.uint8))] + good[1:], list(range(10)), name="test.npz")
    elif what == "classes":
        write_packed(root, good, list(range(9)) + [10], name="test.npz")
    else:
        write_packed(root, [b"\xff\xd8 not a jpeg"] + good[1:], list(range(10)), name="test.npz")


@pytest.mark.parametrize(
    "what, message",
    [
        ("size", "is 40x40, but a CIFAR-10 packed file must hold 32x32"),
        ("classes", "labels must lie in 0..9"),
        ("jpeg", "cannot be decoded"),
    ],
)
def test_a_bad_test_file_is_refused_naming_it(tmp_path, what, message):
    root, _ = write_packed(tmp_path / "data")
    _bad_test_file(root, what)
    with pytest.raises(DatasetError, match=message) as err:
        _build(root, "test", tmp_path)
    assert str(root / "test.npz") in str(err.value)
