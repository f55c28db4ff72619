"""The qualitative figures of the notebook book (paper §4.3): images sorted by assigned latency
(Figure 7), latency against a known difficulty, and the UMAP of the controller's probability
vectors (Figure 8). Same conventions as :mod:`instanas_core.plots.figures`.

UMAP is imported only inside :func:`umap_embed`: importing umap-learn compiles numba code for
about ten seconds.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from .figures import BOX_COLORS, LATENCY_LABEL, _figure, _title, _to_float, _to_hwc, themed

__all__ = [
    "plot_sorted_by_latency",
    "plot_difficulty_vs_latency",
    "umap_embed",
    "plot_umap",
]


@themed
def plot_sorted_by_latency(
    images: Sequence[Any],
    rel_latency: Sequence[Any],
    class_names: Sequence[str],
    context: str = "",
    title: str = "Figure 7: images sorted by the latency of their architecture (0% = the class mean)",
) -> Figure:
    """Figure 7: one row per class, images sorted from the cheapest to the costliest architecture,
    each captioned with its latency relative to its class mean (``rel_latency``: 0.12 = +12%)."""
    rows = [(list(imgs), _to_float(rel)) for imgs, rel in zip(images, rel_latency)]
    n_cols = max(len(r[1]) for r in rows)
    fig = _figure(max(0.95 * n_cols + 1.3, 6.0), 1.15 * len(rows) + 1.1)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for axrow, (imgs, rel), name in zip(axes, rows, class_names):
        order = np.argsort(rel, kind="stable")
        for j, ax in enumerate(axrow):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(order):
                ax.set_axis_off()
                continue
            ax.imshow(_to_hwc(imgs[order[j]]), interpolation="nearest")
            ax.set_xlabel(f"{rel[order[j]]:+.0%}", fontsize=8)
        axrow[0].set_ylabel(str(name), rotation=0, ha="right", va="center", fontsize=9)
    _title(fig, title, context)
    return fig


@themed
def plot_difficulty_vs_latency(
    difficulty: Any,
    latency: Any,
    difficulty_label: str = "difficulty",
    y_label: str = LATENCY_LABEL,
    context: str = "",
    title: str = "Do harder images get costlier architectures?",
) -> Figure:
    """Latency of each image's architecture against a difficulty score: box plots per level for
    a few discrete levels, otherwise a scatter with binned means. Spearman's rho in the title."""
    from scipy import stats

    d, lat = _to_float(difficulty).ravel(), _to_float(latency).ravel()
    rho = float(stats.spearmanr(d, lat)[0]) if len(d) > 2 and np.ptp(d) > 0 and np.ptp(lat) > 0 else math.nan
    fig = _figure(8.0, 4.4)  # wide enough that the three-part title does not wrap into five lines
    ax = fig.subplots()
    levels = np.unique(d)
    if len(levels) <= 12:
        import seaborn as sns

        # Box per level, every image as a jittered point over it, and the level's mean.
        position = np.searchsorted(levels, d)  # (N,) 0..levels-1
        sns.boxplot(x=position, y=lat, ax=ax, color="0.85", width=0.6, showfliers=False, native_scale=True)
        sns.stripplot(x=position, y=lat, ax=ax, size=2.5, alpha=0.35, jitter=0.25, color="tab:blue", native_scale=True)
        means = [lat[d == v].mean() for v in levels]
        ax.scatter(np.arange(len(levels)), means, color="tab:red", zorder=3, s=24, label="mean")
        ax.set_xticks(np.arange(len(levels)), [f"{v:g}\n({(d == v).sum()})" for v in levels])
        ax.set_xlabel(f"{difficulty_label} (images)")
    else:
        ax.scatter(d, lat, s=6, alpha=0.4, color="tab:blue", label="images")
        edges = np.quantile(d, np.linspace(0, 1, 11))
        which = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, 9)
        centers = [d[which == b].mean() for b in range(10) if (which == b).any()]
        means = [lat[which == b].mean() for b in range(10) if (which == b).any()]
        ax.plot(centers, means, color="tab:red", marker="o", label="mean per decile")
        ax.set_xlabel(difficulty_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _title(ax, f"{title} (Spearman \u03c1 = {rho:.2f})", context)
    return fig


def _cache_umap_kernels() -> None:
    """Let numba cache the two kernels of UMAP's fuzzy simplicial set on disk.

    umap-learn compiles ``smooth_knn_dist`` and ``compute_membership_strengths`` (parallel numba
    functions declared without ``cache=True``) in every process: about 5 s per notebook kernel,
    more than the embedding of a few thousand points takes. Re-declaring them with
    ``cache=True`` (same options, same Python function; ``fuzzy_simplicial_set`` looks them up
    as module globals at call time) stores the machine code in ``NUMBA_CACHE_DIR``, so later
    processes load it in a fraction of a second. Results are unchanged.
    """
    import umap.umap_ as uu  # noqa: PLC0415
    from numba import njit
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name in ("smooth_knn_dist", "compute_membership_strengths"):
        fn = getattr(uu, name, None)
        if isinstance(fn, Dispatcher) and isinstance(fn._cache, NullCache):  # not cached yet
            options = {k: v for k, v in fn.targetoptions.items() if k != "nopython"}  # njit implies it
            setattr(uu, name, njit(cache=True, **options)(fn.py_func))


def umap_embed(probs: Any, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """2-D UMAP embedding (N, 2) of the controller's probability vectors ``probs`` (N, T, K).

    ``random_state=seed`` makes it reproducible (and single-threaded). The exact Euclidean
    nearest neighbours come from scikit-learn and are handed to UMAP (``precomputed_knn``): the
    same graph UMAP builds itself for small N, without compiling its parallel numba search
    (about 25 s per process); above a few thousand points UMAP would approximate them instead.
    umap-learn is imported here, not at module import, because importing it compiles numba code.
    """
    import warnings

    import umap  # noqa: PLC0415
    from sklearn.neighbors import NearestNeighbors

    _cache_umap_kernels()
    p = _to_float(probs)
    p = p.reshape(len(p), -1).astype(np.float32)  # (N, T*K)
    if len(p) < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {len(p)}.")
    k = min(n_neighbors, len(p) - 1)
    dists, idx = NearestNeighbors(n_neighbors=k).fit(p).kneighbors(p)  # (N, k) each, self first
    reducer = umap.UMAP(
        n_neighbors=k, min_dist=min_dist, random_state=seed, n_jobs=1, precomputed_knn=(idx, dists, None)
    )
    with warnings.catch_warnings():  # "transform will be unavailable": we only embed these points
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        return np.asarray(reducer.fit_transform(p), dtype=np.float64)


@themed
def plot_umap(
    embedding: Any,
    latency: Any,
    boxes_images: Sequence[Sequence[Any]] = (),
    boxes_indices: Sequence[Sequence[int]] | None = None,
    box_labels: Sequence[str] | None = None,
    max_images_per_box: int = 6,
    context: str = "",
    title: str = "Figure 8: UMAP of the controller's probability vectors, coloured by latency",
) -> Figure:
    """Figure 8: the embedding of every image's probability vector coloured by the latency of its
    architecture (blue low, red high); each box of ``boxes_images`` shows images that share one
    architecture, and ``boxes_indices`` rings their points in the box's colour."""
    emb, lat = _to_float(embedding), _to_float(latency).ravel()
    n_boxes = len(boxes_images)
    fig = _figure(6.4 + (3.6 if n_boxes else 0.0), 5.0)
    if n_boxes:
        grid = fig.add_gridspec(n_boxes, 2, width_ratios=(1.8, 1.0))
        ax = fig.add_subplot(grid[:, 0])
    else:
        ax = fig.add_subplot()
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=lat, cmap="coolwarm", norm=Normalize(lat.min(), lat.max()), s=8, alpha=0.85)
    fig.colorbar(sc, ax=ax, label="latency of the assigned architecture (ms)")
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    _title(fig if n_boxes else ax, title, context)  # with boxes, the title spans the figure
    for b in range(n_boxes):
        color = BOX_COLORS[b % len(BOX_COLORS)]
        name = box_labels[b] if box_labels is not None else f"architecture {b + 1}"
        if boxes_indices is not None:
            idx = np.asarray(boxes_indices[b], dtype=np.int64)
            ax.scatter(emb[idx, 0], emb[idx, 1], facecolors="none", edgecolors=color, s=40, lw=1.2, label=name)
        imgs = [_to_hwc(im) for im in list(boxes_images[b])[:max_images_per_box]]
        bax = fig.add_subplot(grid[b, 1])
        if imgs:
            h = max(im.shape[0] for im in imgs)
            strip = np.concatenate(
                [np.pad(im, ((0, h - im.shape[0]), (0, 1), (0, 0)), constant_values=1.0) for im in imgs], axis=1
            )
            bax.imshow(strip, interpolation="nearest")
        bax.set_xticks([])
        bax.set_yticks([])
        bax.set_xlabel(f"{name}: {len(boxes_images[b])} images", fontsize=8)
        for spine in bax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2.5)
        bax.add_patch(Rectangle((0, 0), 1, 1, transform=bax.transAxes, fill=False, ec=color, lw=2.5))
    if boxes_indices is not None and n_boxes:
        ax.legend(fontsize=8, loc="best")
    return fig
