"""The experiment's data as the notebooks show it: every split exactly as the stages build it
(notebook 00's tables and grids), and single images by the index an evaluation gave them
(Figures 7 and 8)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["load_splits", "dataset_rows", "split_images", "class_names"]


def load_splits(cfg: Any, augment: bool = False) -> dict[str, Any]:
    """Every split of the experiment's data set exactly as its stages build them (class-balanced
    subsets where the preset asks for them), un-augmented unless ``augment``."""
    from ..data import dataset_info, use_shared_cifar10_jpeg
    from ..train import build_split

    exp = cfg.experiment
    if exp.dataset == "cifar10-jpeg":
        use_shared_cifar10_jpeg()
    return {split: build_split(exp, split, augment=augment) for split in dataset_info(exp.dataset).splits}


def dataset_rows(splits: Mapping[str, Any]) -> list[dict]:
    """One row per split: images used (and of how many), classes, resolution, class balance."""
    from ..plots import class_counts

    rows = []
    for name, ds in splits.items():
        counts = class_counts(ds)
        info = ds.info
        rows.append(
            {
                "data set": info.title,
                "split": name,
                "images": len(ds),
                "of": info.splits[name],
                "classes": info.num_classes,
                "resolution_px": info.resolution,
                "min_per_class": int(counts.min()),
                "max_per_class": int(counts.max()),
            }
        )
    return rows


def split_images(cfg: Any, split: str, indices: Iterable[int]) -> list:
    """Images ``indices`` of the experiment's ``split`` (as the evaluate stage numbered them),
    each (H, W, 3) in [0, 1]."""
    from ..plots.figures import _dataset_image
    from ..train import build_split

    data = build_split(cfg.experiment, split, augment=False)
    return [_dataset_image(data, int(i)) for i in indices]


def class_names(cfg: Any) -> list[str]:
    """The names of the experiment's classes (their numbers where the data set has none)."""
    from ..train import build_split

    data = build_split(cfg.experiment, "test", augment=False)
    names = getattr(data, "classes", None)
    return list(names) if names else [str(c) for c in range(cfg.experiment.info.num_classes)]
