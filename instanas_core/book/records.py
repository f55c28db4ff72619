"""Per-image records of an evaluation (``records.npz``) for the qualitative notebooks: Figure 7
(images of a class sorted by the latency of their architecture), Figure 8 (architectures and the
images assigned to them), and the synthetic-difficulty sub-run that tests §4.3's claim against a
known difficulty (notebook 08)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..pipeline import ensure_evaluation, ensure_stage, stage_config
from ..presets import book_settings
from .errors import BookError
from .splits import class_names, split_images

__all__ = [
    "load_records",
    "figure7_data",
    "figure7_rows",
    "figure8_boxes",
    "check_spread",
    "architecture_rows",
    "difficulty_config",
    "ensure_difficulty_run",
    "difficulty_rows",
]


# ---- per-sample records (Figures 7 and 8) -----------------------------------------------------
def load_records(folder: str | Path) -> dict:
    """An evaluation's per-image arrays (``records.npz``): index, label, prediction, correct,
    latency_ms (table), measured_latency_ms (NaN where not timed), policy (N, T, K), probs
    (N, T, K) and, on synthetic-difficulty, difficulty."""
    import numpy as np

    path = Path(folder) / "records.npz"
    if not path.is_file():
        raise BookError(f"{path} does not exist: evaluate a model into {folder} first.")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def figure7_data(cfg: Any, records: Mapping[str, Any], classes: int = 3, per_class: int = 8) -> dict:
    """Figure 7's rows: for each of the first ``classes`` classes (0: all), ``per_class`` test
    images spread evenly over the class's images sorted by the latency of their architecture
    (the cheapest and the costliest included), each with its latency relative to the mean of
    every test image of the class (0.12 = +12%). Keys ``images``, ``rel_latency``, ``class_names``."""
    import numpy as np

    labels, lat, idx = records["label"], records["latency_ms"].astype(float), records["index"]
    names = class_names(cfg)
    shown = range(len(names)) if classes <= 0 else range(min(classes, len(names)))
    images, rel, kept = [], [], []
    for c in shown:
        mine = np.flatnonzero(labels == c)
        if len(mine) == 0:
            continue
        order = mine[np.argsort(lat[mine], kind="stable")]
        pick = order[np.unique(np.linspace(0, len(order) - 1, min(per_class, len(order))).round().astype(int))]
        images.append(split_images(cfg, cfg.evaluate.split, idx[pick]))
        rel.append(lat[pick] / lat[mine].mean() - 1.0)
        kept.append(names[c])
    return {"images": images, "rel_latency": rel, "class_names": kept}


def figure7_rows(records: Mapping[str, Any], names: Sequence[str]) -> list[dict]:
    """Per class: test images, mean latency of their architectures, spread (max/min), accuracy."""
    import numpy as np

    rows = []
    for c, name in enumerate(names):
        sel = records["label"] == c
        if not sel.any():
            continue
        lat = records["latency_ms"][sel].astype(float)
        rows.append(
            {
                "class": name,
                "images": int(sel.sum()),
                "mean_latency_ms": round(float(lat.mean()), 4),
                "min_rel_pct": round(100 * (lat.min() / lat.mean() - 1), 1),
                "max_rel_pct": round(100 * (lat.max() / lat.mean() - 1), 1),
                "distinct_architectures": int(
                    len(np.unique(records["policy"][sel].reshape(int(sel.sum()), -1), axis=0))
                ),
                "accuracy_pct": round(100 * float(records["correct"][sel].mean()), 1),
            }
        )
    return rows


def check_spread(cfg: Any, policy: Any, figure: str, share: float = 0.02) -> dict:
    """What Figures 1, 7 and 8 show of the controller's routing: distinct architectures among the
    images' policies ``policy`` (N, T, K) and how many of them hold at least ``share`` of the images.

    At a preset whose :class:`~instanas_core.presets.BookSettings` ask for ``min_architectures``
    (the CPU presets, issue 15) fewer such architectures raise a :class:`BookError`: the figure
    would show a collapsed controller, not a distribution of architectures."""
    import numpy as np

    flat = np.asarray(policy).reshape(len(policy), -1)
    _, counts = np.unique(flat, axis=0, return_counts=True)
    found = {"images": int(len(flat)), "architectures": int(len(counts))}
    found["over_share"] = int((counts >= share * len(flat)).sum())
    found["largest_share"] = float(counts.max() / len(flat)) if len(flat) else 0.0
    # for the figure's title: a collapsed controller is said, not left for the reader to spot
    found["note"] = (
        f"collapsed to {found['architectures']} architecture(s)"
        if found["over_share"] < 2
        else f"{found['architectures']} architectures, {found['over_share']} with >= {share:.0%} of images"
    )
    want = book_settings(cfg.preset).min_architectures
    if want and found["over_share"] < want:
        raise BookError(
            f"{figure}: the controller routes the {found['images']} images to {found['architectures']} architectures, "
            f"{found['over_share']} of them with >= {share:.0%} of the images (the largest has "
            f"{found['largest_share']:.0%}); preset {cfg.preset!r} asks for at least {want}, so that the figure shows "
            "a distribution of architectures. The search collapsed: see docs/science-options.md for the options "
            "that keep it instance-aware, and search/metrics.csv for how the policy moved."
        )
    return found


def figure8_boxes(records: Mapping[str, Any], n_boxes: int = 3, seed: int = 0, min_images: int = 2) -> dict:
    """Figure 8's boxes: ``n_boxes`` architectures drawn at random (seeded, as the paper
    "randomly select[s] three architectures") among those the controller assigns to at least
    ``min_images`` test images (fewer if there are not enough; the most used fill in), each
    with the indices (rows of ``records``) of its images. Keys ``indices``, ``labels``."""
    import numpy as np

    flat = records["policy"].reshape(len(records["policy"]), -1)
    uniq, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    eligible = np.flatnonzero(counts >= min_images)
    rng = np.random.default_rng(seed)
    chosen = list(rng.choice(eligible, size=min(n_boxes, len(eligible)), replace=False)) if len(eligible) else []
    for a in np.argsort(-counts, kind="stable"):  # too few shared architectures: the most used fill in
        if len(chosen) >= min(n_boxes, len(uniq)):
            break
        if a not in chosen:
            chosen.append(a)
    lat = records["latency_ms"].astype(float)
    chosen = sorted(chosen, key=lambda a: float(lat[inverse == a][0]))  # by latency, cheapest first
    indices = [np.flatnonzero(inverse == a) for a in chosen]
    labels = [
        f"architecture {i + 1}: {lat[ix[0]]:.2f} ms, {int(flat[ix[0]].sum())} modules" for i, ix in enumerate(indices)
    ]
    return {"indices": indices, "labels": labels}


def architecture_rows(records: Mapping[str, Any], boxes: Mapping[str, Any], names: Sequence[str]) -> list[dict]:
    """Per boxed architecture: latency, modules, images and the classes among them."""
    import numpy as np

    rows = []
    for label, ix in zip(boxes["labels"], boxes["indices"]):
        cls, counts = np.unique(records["label"][ix], return_counts=True)
        rows.append(
            {
                "architecture": label.split(":")[0],
                "latency_ms": round(float(records["latency_ms"][ix[0]]), 4),
                "modules": int(records["policy"][ix[0]].sum()),
                "images": len(ix),
                "classes": ", ".join(f"{names[c]} ({n})" for c, n in zip(cls, counts)),
                "accuracy_pct": round(100 * float(records["correct"][ix].mean()), 1),
            }
        )
    return rows


# ---- synthetic-difficulty (§4.3's claim against a known difficulty) ---------------------------
def difficulty_config(cfg: Any, dataset: str = "synthetic-difficulty", size: int = 0) -> Any:
    """The preset's settings on ``dataset`` (a data set with difficulty levels) with ``size``
    images per split (0: the preset's default, see :class:`~instanas_core.presets.BookSettings`), no class subsets;
    evaluated through the search's controller of the preset's variant on the test split."""
    from ..config import ConfigError

    if dataset != "synthetic-difficulty":  # the evaluate stage reads levels from this data set only
        raise BookError(f"{dataset!r} has no difficulty levels; the difficulty check needs 'synthetic-difficulty'.")
    settings = book_settings(cfg.preset)
    try:
        exp = dataclasses.replace(
            cfg.experiment,
            dataset=dataset,
            data_size=int(size or settings.difficulty_size),
            train_per_class=None,
            eval_per_class=None,
        )
    except ConfigError as exc:
        raise BookError(f"cannot run the difficulty check on {dataset!r}: {exc}") from None
    out = stage_config(dataclasses.replace(cfg, experiment=exp), "search", settings.difficulty_overrides)
    return dataclasses.replace(out, evaluate=dataclasses.replace(out.evaluate, source="search", split="test"))


def ensure_difficulty_run(cfg: Any, run_dir: str | Path, dataset: str = "synthetic-difficulty", size: int = 0) -> dict:
    """A small InstaNAS run on ``dataset`` in ``RUN/synthetic/`` (``RUN/difficulty-<dataset>-<size>/``
    for other settings): pre-train, search, evaluate the search's controller on the test split;
    the run's look-up table is reused when the space is the same. Returns ``{"config",
    "run_dir", "summary", "folder"}``."""
    import shutil

    dcfg = difficulty_config(cfg, dataset, size)
    default = dataset == "synthetic-difficulty" and size in (0, book_settings(cfg.preset).difficulty_size)
    sub = Path(run_dir) / ("synthetic" if default else f"difficulty-{dataset}-{dcfg.experiment.data_size}")
    lut, mine = Path(run_dir) / "profile" / "lut.json", sub / "profile" / "lut.json"
    if lut.is_file() and not mine.exists():
        from ..latency import LatencyTable, LatencyTableError

        try:
            LatencyTable.load(lut).check_compatible(dcfg.experiment.space(), dcfg.experiment.device)
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lut, mine)
            print(f"reusing the run's look-up table {lut} (same search space)")
        except LatencyTableError:
            pass
    ensure_stage("pretrain", dcfg, sub)
    ensure_stage("search", dcfg, sub)
    summary = ensure_evaluation(dcfg, sub, "evaluate")
    return {"config": dcfg, "run_dir": str(sub), "summary": summary, "folder": str(sub / "evaluate")}


def difficulty_rows(records: Mapping[str, Any]) -> list[dict]:
    """Per difficulty level: images, mean and std of the assigned latency (ms), accuracy (%)."""
    import numpy as np

    rows = []
    for level in np.unique(records["difficulty"]):
        sel = records["difficulty"] == level
        lat = records["latency_ms"][sel].astype(float)
        rows.append(
            {
                "difficulty": int(level),
                "images": int(sel.sum()),
                "mean_latency_ms": round(float(lat.mean()), 4),
                "std_latency_ms": round(float(lat.std()), 4),
                "accuracy_pct": round(100 * float(records["correct"][sel].mean()), 1),
            }
        )
    return rows
