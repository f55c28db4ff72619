"""TinyImageNet and ImageNet as class-folder trees: the one-time val re-layout, class agreement
between splits, RGB conversion and readable errors for missing or corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from instanas_core.data import DatasetError, build_dataset, load_rgb, prepare_tinyimagenet_val

WNIDS = ("n01443537", "n01629819", "n01641577")


def _save(path: Path, size: tuple[int, int] = (64, 64), mode: str = "RGB", colour=(200, 30, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, colour if mode != "L" else 120)
    image.save(path, format="PNG" if mode == "RGBA" else "JPEG")


def write_tinyimagenet(root: Path, per_class: int = 3) -> Path:
    base = root / "tiny-imagenet-200"
    lines = []
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            _save(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour=(40 * c, 100, 200))
            name = f"val_{c * per_class + i}.JPEG"
            _save(base / "val" / "images" / name, colour=(40 * c, 100, 200))
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # as in the real archive
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def test_val_relayout_then_both_splits_agree(tmp_path):
    base = write_tinyimagenet(tmp_path)
    with pytest.raises(DatasetError, match="prepare_tinyimagenet_val"):
        build_dataset("tinyimagenet", root=tmp_path, split="val")
    val_dir = prepare_tinyimagenet_val(tmp_path)
    assert val_dir == (base / "val").resolve()
    assert not (base / "val" / "images").exists()
    assert sorted(p.name for p in val_dir.iterdir() if p.is_dir()) == list(WNIDS)
    assert prepare_tinyimagenet_val(tmp_path) == val_dir  # running it again is harmless

    train = build_dataset("tinyimagenet", root=tmp_path, split="train")
    val = build_dataset("tinyimagenet", root=tmp_path, split="val", return_index=True)
    assert len(train) == len(val) == 9
    assert train.class_to_idx == val.class_to_idx == {w: i for i, w in enumerate(WNIDS)}
    image, label, index = val[4]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and (label, index) == (1, 4)
    assert train[0][0].shape == (3, 64, 64) and train.info.resolution == 64


def test_split_with_other_classes_is_refused(tmp_path):
    base = write_tinyimagenet(tmp_path)
    prepare_tinyimagenet_val(tmp_path)
    (base / "val" / WNIDS[2]).rename(base / "val" / "n99999999")
    with pytest.raises(DatasetError, match=r"differ.*only in val: \['n99999999'\]"):
        build_dataset("tinyimagenet", root=tmp_path, split="val")


def test_annotation_listing_a_missing_file_is_named(tmp_path):
    base = write_tinyimagenet(tmp_path)
    (base / "val" / "images" / "val_4.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"line 5 lists .*val_4\.JPEG"):
        prepare_tinyimagenet_val(tmp_path)


def test_missing_tinyimagenet_says_where_and_how(tmp_path):
    with pytest.raises(DatasetError) as e:
        build_dataset("tinyimagenet", root=tmp_path)
    assert str(tmp_path.resolve() / "tiny-imagenet-200" / "train") in str(e.value)
    assert "tiny-imagenet-200.zip" in str(e.value)


def test_truncated_image_names_the_file(tmp_path):
    base = write_tinyimagenet(tmp_path)
    bad = base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:100])
    train = build_dataset("tinyimagenet", root=tmp_path)
    index = [Path(p) for p, _ in train.samples].index(bad)
    with pytest.raises(DatasetError, match=f"Cannot read the image file {bad}"):
        train[index]
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="truncated, corrupt or not an image"):
        load_rgb(str(bad))


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    grey, rgba = tmp_path / "grey.jpg", tmp_path / "rgba.png"
    _save(grey, mode="L")
    _save(rgba, mode="RGBA", colour=(10, 20, 30, 128))
    assert load_rgb(str(grey)).mode == "RGB" and load_rgb(str(rgba)).mode == "RGB"
    base = write_tinyimagenet(tmp_path)
    _save(base / "train" / WNIDS[0] / "images" / "grey.JPEG", mode="L")
    train = build_dataset("tinyimagenet", root=tmp_path, augment=False)
    index = [Path(p).name for p, _ in train.samples].index("grey.JPEG")
    image = train[index][0]  # (3, 64, 64)
    assert image.shape == (3, 64, 64)
    # Equal R, G, B before normalising: undo the per-channel normalisation and compare.
    mean, std = torch.tensor(train.info.mean)[:, None, None], torch.tensor(train.info.std)[:, None, None]
    raw = image * std + mean
    assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)


def test_imagenet_crops_to_224(tmp_path):
    for split in ("train", "val"):
        for c in ("n01440764", "n01443537"):
            _save(tmp_path / "imagenet" / split / c / "a.JPEG", size=(300, 260))
    for split in ("train", "val"):
        ds = build_dataset("imagenet", root=tmp_path, split=split)
        assert len(ds) == 2 and ds[1][0].shape == (3, 224, 224) and ds[1][1] == 1
    with pytest.raises(DatasetError, match=str(tmp_path.resolve() / "nowhere" / "imagenet" / "train")):
        build_dataset("imagenet", root=tmp_path / "nowhere")
