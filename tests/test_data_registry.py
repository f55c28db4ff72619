"""The data-set registry: names, descriptions, the entry point's generic options and its errors."""

from __future__ import annotations

import pytest
import torch

from instanas_core.data import DatasetError, WithIndex, build_dataset, dataset_info, list_datasets

EXPECTED = {  # name: (resolution, classes)
    "cifar10": (32, 10),
    "cifar100": (32, 100),
    "tinyimagenet": (64, 200),
    "imagenet": (224, 1000),
    "digits": (32, 10),
    "cifar10-jpeg": (32, 10),
    "synthetic-difficulty": (32, 10),
}


def test_every_contracted_name_is_listed_with_its_resolution_and_classes():
    infos = list_datasets()
    assert set(infos) == set(EXPECTED)
    for name, (resolution, classes) in EXPECTED.items():
        info = dataset_info(name)
        assert info is infos[name] and info.name == name
        assert (info.resolution, info.num_classes) == (resolution, classes)
        assert "train" in info.splits and all(n > 0 for n in info.splits.values())
        assert len(info.mean) == len(info.std) == 3


def test_cutout_and_padding_follow_the_paper():
    assert [dataset_info(n).cutout for n in ("cifar10", "cifar100", "cifar10-jpeg", "tinyimagenet")] == [16, 16, 16, 32]
    assert [dataset_info(n).pad for n in ("cifar10", "tinyimagenet")] == [4, 8]
    assert dataset_info("imagenet").crop == "resized"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DatasetError, match="Unknown data set 'cifar11'") as e:
        build_dataset("cifar11")
    assert all(name in str(e.value) for name in EXPECTED)
    with pytest.raises(DatasetError, match="known data sets"):
        dataset_info("mnist")


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(DatasetError, match=r"no split 'validation'.*train, val, test"):
        build_dataset("digits", split="validation")
    with pytest.raises(DatasetError, match=r"no split 'test'.*train, val"):
        build_dataset("tinyimagenet", split="test")


def test_unknown_option_is_named_with_the_accepted_ones():
    with pytest.raises(DatasetError, match=r"Unknown option\(s\) sizes .*size"):
        build_dataset("synthetic-difficulty", sizes=10)


def test_augment_defaults_to_train_split_only():
    train = build_dataset("digits", split="train")
    test = build_dataset("digits", split="test")
    assert any("Cutout" in type(t).__name__ for t in train.transform.transforms)
    assert not any("Cutout" in type(t).__name__ for t in test.transform.transforms)
    assert not any("Cutout" in type(t).__name__ for t in build_dataset("digits", augment=False).transform.transforms)
    assert any(
        "Cutout" in type(t).__name__ for t in build_dataset("digits", split="val", augment=True).transform.transforms
    )


def test_return_index_appends_the_position():
    ds = build_dataset("digits", split="val", return_index=True)
    assert isinstance(ds, WithIndex)
    for i in (0, 7, len(ds) - 1):
        image, label, index = ds[i]
        assert index == i and image.shape == (3, 32, 32)
        assert label == int(ds.targets[i])  # attributes read through the wrapper


def test_n_per_class_is_balanced_and_seeded():
    a = build_dataset("digits", split="train", n_per_class=7, seed=1)
    b = build_dataset("digits", split="train", n_per_class=7, seed=1)
    c = build_dataset("digits", split="train", n_per_class=7, seed=2)
    assert torch.bincount(a.targets).tolist() == [7] * 10
    assert torch.equal(a.source_indices, b.source_indices)
    assert not torch.equal(a.source_indices, c.source_indices)
    with pytest.raises(DatasetError, match="has only"):
        build_dataset("digits", split="val", n_per_class=1000)


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANAS_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError, match=str(tmp_path / "elsewhere" / "cifar-10-batches-py")):
        build_dataset("cifar10")
    monkeypatch.delenv("INSTANAS_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=str(tmp_path / "data" / "cifar-100-python")):
        build_dataset("cifar100")
