"""CIFAR-10/100 through torchvision's classes, on small files in the official pickled format
that the tests write themselves (no download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from instanas_core.data import DatasetError, build_dataset, dataset_info

PER_CLASS_PER_BATCH = 2  # images of each class in each training batch file


def _images(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    """Rows of 3072 bytes (R plane, G plane, B plane), with the label in pixel (0, 0) of R."""
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    data[:, 0] = labels
    return data


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for b in range(1, 6):
        labels = [c for c in range(10) for _ in range(PER_CLASS_PER_BATCH)]
        _dump(folder / f"data_batch_{b}", {"batch_label": f"batch {b}", "labels": labels, "data": _images(rng, labels)})
    labels = list(range(10)) * 3
    _dump(folder / "test_batch", {"batch_label": "test", "labels": labels, "data": _images(rng, labels)})
    _dump(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)], "num_vis": 3072})
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, per_class in (("train", 4), ("test", 1)):
        fine = [c for c in range(100) for _ in range(per_class)]
        _dump(folder / name, {"fine_labels": fine, "coarse_labels": [c // 5 for c in fine], "data": _images(rng, fine)})
    _dump(
        folder / "meta",
        {"fine_label_names": [f"f{c}" for c in range(100)], "coarse_label_names": [f"c{c}" for c in range(20)]},
    )
    return folder


def test_cifar10_reads_the_official_layout(tmp_path):
    write_cifar10(tmp_path)
    train = build_dataset("cifar10", root=tmp_path, split="train", val_per_class=3)
    val = build_dataset("cifar10", root=tmp_path, split="val", val_per_class=3)
    test = build_dataset("cifar10", root=tmp_path, split="test")
    assert (len(train), len(val), len(test)) == (70, 30, 30)
    assert torch.bincount(val.targets).tolist() == [3] * 10
    assert set(train.source_indices.tolist()).isdisjoint(val.source_indices.tolist())
    assert train.classes[3] == "class3" and train.info.title == "CIFAR-10"
    image, label = train[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    # The label written into the red plane's first byte comes back at pixel (0, 0) of channel 0.
    for i in range(len(test)):
        assert int(test.images[i, 0, 0, 0]) == test[i][1]
    raw = test.images[0].float() / 255  # (3, 32, 32)
    info = dataset_info("cifar10")
    expected = (raw - torch.tensor(info.mean)[:, None, None]) / torch.tensor(info.std)[:, None, None]
    assert torch.allclose(test[0][0], expected, atol=1e-5)


def test_cifar10_val_per_class_zero_keeps_the_whole_training_set(tmp_path):
    write_cifar10(tmp_path)
    assert len(build_dataset("cifar10", root=tmp_path, val_per_class=0)) == 100
    with pytest.raises(DatasetError, match="no 'val' split when val_per_class=0"):
        build_dataset("cifar10", root=tmp_path, split="val", val_per_class=0)


def test_cifar100_reads_the_official_layout(tmp_path):
    write_cifar100(tmp_path)
    train = build_dataset("cifar100", root=tmp_path, split="train", val_per_class=1)
    val = build_dataset("cifar100", root=tmp_path, split="val", val_per_class=1)
    test = build_dataset("cifar100", root=tmp_path, split="test")
    assert (len(train), len(val), len(test)) == (300, 100, 100)
    assert train.classes[99] == "f99" and len(train.classes) == 100
    assert test[42][0].shape == (3, 32, 32) and test[42][1] == 42


def test_missing_cifar_says_where_and_how_to_download(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as e:
        build_dataset("cifar10", root=empty)
    message = str(e.value)
    assert str(empty.resolve() / "cifar-10-batches-py") in message
    assert "download=True" in message and "--download" in message
    with pytest.raises(DatasetError, match="cifar-100-python"):
        build_dataset("cifar100", root=empty, split="test")


def test_one_missing_batch_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"missing: data_batch_4"):
        build_dataset("cifar10", root=tmp_path)


def test_a_truncated_batch_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    raw = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_3 cannot be read.*download"):
        build_dataset("cifar10", root=tmp_path)


def test_download_failure_is_explained(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("instanas_core.data.cifar.download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="Downloading CIFAR-10 from https://.*network unreachable"):
        build_dataset("cifar10", root=tmp_path, download=True)
