"""The book's figures (instanas_core.plots) on small synthetic inputs: each function returns a
Figure with labelled axes and a title, ``save_figure`` writes a non-empty PNG and a PDF to
RUN/figures, and nothing leaks into pyplot's global state."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from instanas_core import plots
from instanas_core.data import ArrayDataset, DatasetInfo
from instanas_core.latency import LatencyTable
from instanas_core.search_space import make_search_space

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_pyplot_leak():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plot function left a figure in pyplot's global state"


def _title_of(fig):
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return sup or " ".join(ax.get_title() for ax in fig.axes)


def check_figure(fig, tmp_path, name, axes=None):
    """Title present; the given axes (default: the first) carry x and y labels; PNG + PDF written."""
    assert _title_of(fig).strip(), f"{name}: no title"
    for ax in axes if axes is not None else fig.axes[:1]:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), f"{name}: unlabelled axes {ax}"
    paths = plots.save_figure(fig, tmp_path, name)
    assert paths["png"] == tmp_path / "figures" / f"{name}.png"
    png = paths["png"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 2_000
    assert paths["pdf"].read_bytes().startswith(b"%PDF") and paths["pdf"].stat().st_size > 1_000
    return paths


INFO = DatasetInfo("toy", "Toy shapes", 16, 3, {"train": 30}, (0.5,) * 3, (0.25,) * 3)


def toy_dataset(n_per_class=10):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n_per_class)
    images = (rng.random((len(labels), 16, 16, 3)) * 255).astype(np.uint8)
    return ArrayDataset(images, labels, INFO, ["circle", "square", "triangle"], transform=None)


class TensorItems:
    """A data set that is not an ArrayDataset: normalised float items, a ``targets`` list."""

    info = INFO
    classes = ["a", "b", "c"]

    def __init__(self):
        self.targets = [0, 1, 2] * 4

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.randn(3, 16, 16) * 0.25, self.targets[i]


def test_save_figure_refuses_paths_and_suffixes(tmp_path):
    fig = plots.plot_latency_distribution(np.arange(10.0))
    for bad in ("a/b", "fig.png", ""):
        with pytest.raises(ValueError, match="bare file stem"):
            plots.save_figure(fig, tmp_path, bad)


def test_sample_grid_and_class_balance(tmp_path):
    ds = toy_dataset()
    check_figure(plots.plot_sample_grid(ds, 4, seed=1, context="preset test"), tmp_path, "grid")
    check_figure(plots.plot_sample_grid(TensorItems(), 3, transformed=True), tmp_path, "grid_items")
    fig = plots.plot_class_balance({"train": ds, "val": [2, 3, 4]})
    check_figure(fig, tmp_path, "balance")
    assert "preset" not in _title_of(fig)
    np.testing.assert_array_equal(plots.class_counts(ds), [10, 10, 10])


def synthetic_table(resolution=32):
    space = make_search_space(resolution)
    rng = np.random.default_rng(0)
    t, k = space.num_cells, space.num_modules
    ms = rng.uniform(0.1, 2.0, (t, k))
    return LatencyTable(
        space,
        ms,
        ms,
        ms * 0.1,
        0.1,
        0.2,
        0.3,
        ms * 1e6,
        ms * 1e3,
        meta={"device_name": "test CPU", "threads": 1, "torch": "x"},
    )


def test_lut_heatmap_annotates_every_entry(tmp_path):
    fig = plots.plot_lut_heatmap(synthetic_table(), context="preset smoke")
    check_figure(fig, tmp_path, "lut")
    assert len(fig.axes[0].texts) == 17 * 5
    assert "32 px" in fig.axes[0].get_title()


@pytest.mark.parametrize("resolutions", [32, (32, 64, 224)])
def test_latency_correlation_one_panel_per_resolution(tmp_path, resolutions):
    rng = np.random.default_rng(0)

    def panel():
        measured = rng.uniform(10, 50, 40)
        return measured * rng.normal(1, 0.05, 40), measured, np.where(np.arange(40) < 10, "fit", "eval")

    if isinstance(resolutions, int):
        est, mea, split = panel()
        fig = plots.plot_latency_correlation(est, mea, 0.97, 0.8, resolutions, split=split, paper_r=0.97)
        n = 1
    else:
        data = [panel() for _ in resolutions]
        fig = plots.plot_latency_correlation(
            [d[0] for d in data],
            [d[1] for d in data],
            [0.9, 0.95, 0.99],
            [0.5, 0.6, 0.7],
            resolutions,
            split=[d[2] for d in data],
        )
        n = len(resolutions)
    assert len(fig.axes) == n
    check_figure(fig, tmp_path, f"fig4_{n}", axes=fig.axes)
    assert [ax.get_title() for ax in fig.axes] == [f"{r} px" for r in np.atleast_1d(resolutions)]


def test_training_curves_and_reward_bounds(tmp_path):
    rows = [
        {"epoch": e, "split": s, "loss": 2.0 / (e + 1), "accuracy": 10 * e} for e in range(5) for s in ("train", "val")
    ]
    fig = plots.plot_training_curves(
        rows, ys=("loss", "accuracy"), hue="split", labels={"loss": "cross-entropy", "accuracy": "top-1 (%)"}
    )
    check_figure(fig, tmp_path, "curves", axes=fig.axes)
    assert len(fig.axes[0].lines) == 2  # train and val
    with pytest.raises(ValueError, match="none of the requested columns"):
        plots.plot_training_curves(rows, ys=("nope",))

    search = {
        "epoch": np.arange(6),
        "upper_bound": np.linspace(80, 50, 6),
        "lower_bound": np.linspace(40, 20, 6),
        "mean_latency_ms": np.linspace(70, 40, 6),
        "val_accuracy": np.linspace(0.3, 0.6, 6),
    }
    fig = plots.plot_reward_bounds(search)
    check_figure(fig, tmp_path, "reward")
    with pytest.raises(ValueError, match="lack column"):
        plots.plot_reward_bounds({"epoch": [0]})


def test_accuracy_latency_distribution_and_frontier(tmp_path):
    points = [
        {"name": "MobileNetV2 1.0", "group": "baseline", "latency_ms": 10.0, "latency_std_ms": 0.5, "accuracy": 94.4},
        {"name": "InstaNAS-A", "group": "InstaNAS", "latency_ms": 8.0, "latency_std_ms": 0.4, "accuracy": 95.7},
        {"name": "InstaNAS-C", "group": "InstaNAS", "latency_ms": 5.0, "latency_std_ms": 0.3, "accuracy": 94.8},
    ]
    check_figure(plots.plot_accuracy_vs_latency(points), tmp_path, "acc_lat")
    lat = np.random.default_rng(0).gamma(5, 1, 500)
    fig = plots.plot_latency_distribution(lat, reference={"MobileNetV2 1.0": 9.0})
    check_figure(fig, tmp_path, "fig1")
    fig = plots.plot_tradeoff_frontier(
        {
            "InstaNAS": {"latency": [5, 8, 9], "error": [5.2, 4.3, 4.5], "names": ["C", "A", "B"]},
            "OneshotNAS": ([6, 7, 9], [7.0, 6.1, 5.5]),
        }
    )
    check_figure(fig, tmp_path, "fig6")


def test_pareto_frontier():
    # (latency, error): (9, 4.5) is beaten by (8, 4.3); the rest trade off
    idx = plots.pareto_frontier([5, 8, 9, 3], [5.2, 4.3, 4.5, 7.0])
    assert idx.tolist() == [3, 0, 1]


def test_sorted_by_latency_and_difficulty(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.random((5, 3, 16, 16)), (rng.random((5, 16, 16, 3)) * 255).astype(np.uint8)]
    rel = [rng.normal(0, 0.1, 5), rng.normal(0, 0.1, 5)]
    fig = plots.plot_sorted_by_latency(images, rel, ["brambling", "matchstick"])
    check_figure(fig, tmp_path, "fig7", axes=[])
    first_row = fig.axes[:5]
    captions = [float(ax.get_xlabel().rstrip("%")) for ax in first_row]
    assert captions == sorted(captions) and first_row[0].get_ylabel() == "brambling"

    levels = rng.integers(0, 3, 200)
    check_figure(
        plots.plot_difficulty_vs_latency(levels, 10 + levels + rng.normal(0, 0.5, 200)), tmp_path, "diff_levels"
    )
    loss = rng.random(200)
    check_figure(plots.plot_difficulty_vs_latency(loss, 10 + loss, difficulty_label="loss"), tmp_path, "diff_scatter")


def test_plot_umap_with_boxes(tmp_path):
    rng = np.random.default_rng(0)
    emb, latency = rng.normal(size=(40, 2)), rng.uniform(5, 10, 40)
    boxes = [rng.random((4, 16, 16, 3)) for _ in range(3)]
    fig = plots.plot_umap(emb, latency, boxes, boxes_indices=[[0, 1], [2, 3], [4]], box_labels=["a", "b", "c"])
    check_figure(fig, tmp_path, "fig8")
    assert [ax.get_xlabel() for ax in fig.axes[-3:]] == ["a: 4 images", "b: 4 images", "c: 4 images"]
    check_figure(plots.plot_umap(emb, latency), tmp_path, "fig8_plain")


@pytest.mark.slow
def test_umap_embed_is_seeded(monkeypatch):
    # umap-learn compiles numba code on first use; a persistent cache (git-ignored) keeps re-runs fast
    if not os.environ.get("NUMBA_CACHE_DIR"):
        monkeypatch.setenv("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
    probs = torch.rand(40, 17, 5, generator=torch.Generator().manual_seed(0))
    emb = plots.umap_embed(probs, seed=0, n_neighbors=10)
    assert emb.shape == (40, 2) and np.isfinite(emb).all()
    np.testing.assert_allclose(plots.umap_embed(probs, seed=0, n_neighbors=10), emb)
    with pytest.raises(ValueError, match="at least 4"):
        plots.umap_embed(probs[:3], seed=0)
    import umap.umap_ as uu  # its fuzzy-simplicial-set kernels are now cached on disk between processes

    from numba.core.caching import NullCache

    assert not isinstance(uu.smooth_knn_dist._cache, NullCache) and not isinstance(
        uu.compute_membership_strengths._cache, NullCache
    )


def test_near_constant_errors_get_plain_ticks_and_a_readable_range(tmp_path):
    # every model at chance: errors differ by float noise only
    fig = plots.plot_tradeoff_frontier({"a": ([1.0, 2.0], [90.0, 89.99999985]), "b": ([1.5], [90.0])})
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert hi - lo >= 1.0 and not ax.yaxis.get_major_formatter().get_offset()
    check_figure(fig, tmp_path, "flat_tradeoff")
