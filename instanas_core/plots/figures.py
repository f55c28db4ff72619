"""Every figure of the notebook book, one function each (paper Figures 1, 4-8 and the book's own
diagnostics). A function takes data, not file names, and returns a ``matplotlib.figure.Figure``
built without ``pyplot``, so no global figure state leaks between calls, kernels or tests;
:func:`save_figure` writes it to ``RUN/figures/NAME.png`` (150 dpi) and ``NAME.pdf``.

Conventions: latency in milliseconds per image at batch 1 (the paper's tables print seconds;
compare those only as ratios), accuracy and error in percent. Every function takes ``context``,
a footer naming the preset, data set and device (the notebooks pass ``BookContext.label``), so a
figure that leaves the book still says what it shows; titles stay on one line. Every figure is
drawn in one seaborn theme (:func:`theme`, applied per figure, never globally), and seaborn draws
the distributions (Figure 1's histogram and density, latency per difficulty level).

UMAP (Figure 8) is imported only inside :func:`umap_embed`: importing umap-learn compiles numba
code for about ten seconds.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..ownership import record_written
from ..pareto import pareto_indices

__all__ = [
    "FIGURE_DPI",
    "theme",
    "themed",
    "save_figure",
    "class_counts",
    "pareto_frontier",
    "plot_sample_grid",
    "plot_class_balance",
    "plot_lut_heatmap",
    "plot_latency_correlation",
    "plot_training_curves",
    "plot_reward_bounds",
    "plot_accuracy_vs_latency",
    "plot_latency_distribution",
    "plot_tradeoff_frontier",
]

FIGURE_DPI = 150
LATENCY_LABEL = "latency per image (ms, batch 1)"
# The paper boxes in green, black and purple; black vanishes around dark images, so orange instead.
BOX_COLORS = ("tab:green", "tab:orange", "tab:purple", "tab:brown", "black", "tab:pink")


# ---- helpers --------------------------------------------------------------------------------------
def save_figure(fig: Figure, run_dir: str | Path, name: str, dpi: int = FIGURE_DPI) -> dict[str, Path]:
    """Write ``fig`` as ``RUN/figures/NAME.png`` and ``.pdf``; returns ``{"png": path, "pdf": path}``."""
    if not name or Path(name).name != name or name.endswith((".png", ".pdf")):
        raise ValueError(f"figure name must be a bare file stem such as '01_lut_heatmap', got {name!r}.")
    out = Path(run_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{name}.png", "pdf": out / f"{name}.pdf"}
    for path in paths.values():  # listed in the manifest of an output folder that keeps one
        record_written(path)
    fig.savefig(paths["png"], dpi=dpi)
    fig.savefig(paths["pdf"])
    return paths


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


@functools.cache
def theme() -> dict:
    """seaborn's "whitegrid" style at its "notebook" scale x 0.8, as matplotlib settings."""
    import seaborn as sns

    return {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=0.8),
        "axes.titleweight": "bold",
    }


def themed(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure of ``fn`` inside seaborn's theme (:func:`theme`), restoring matplotlib's
    settings afterwards, so that the book's figures look alike and nothing leaks into a user's."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(theme()):
            return fn(*args, **kwargs)

    return wrapper


def _wrap_parts(text: str, width: int, sep: str = " \u00b7 ") -> str:
    """``text`` on lines of at most ``width`` characters, broken only between its ``sep``-separated
    parts (a machine name or "rho = -0.02" is never split), a part longer than a line wrapped alone."""
    lines: list[str] = []
    for part in text.split(sep):
        if lines and len(lines[-1]) + len(sep) + len(part) <= width:
            lines[-1] += sep + part
        else:
            lines.extend(textwrap.wrap(part, width, break_on_hyphens=False) or [""])
    return "\n".join(lines)


def _title(fig_or_ax: Any, title: str, context: str = "") -> None:
    """A one-line title (its font shrinks to fit the figure, down to 8 pt, before it wraps) and the
    run's details as a small grey footer, wrapped between its parts."""
    fig = fig_or_ax if isinstance(fig_or_ax, Figure) else fig_or_ax.figure
    inches = fig.get_figwidth()
    base = 11.0 if isinstance(fig_or_ax, Figure) else 10.0
    size = max(8.0, min(base, inches * 72 / (0.55 * max(len(title), 1))))  # a character is ~0.55 em wide
    text = textwrap.fill(title, int(inches * 72 / (0.55 * size))) if "\n" not in title else title
    if isinstance(fig_or_ax, Figure):
        fig_or_ax.suptitle(text, fontsize=size, fontweight="bold")
    else:
        fig_or_ax.set_title(text, fontsize=size)
    if context:
        fig.supxlabel(_wrap_parts(context, int(inches * 72 / (0.55 * 7.5))), fontsize=7.5, color="0.35")


def _readable_axis(ax: Any, axis: str = "y", min_span: float = 1.0) -> None:
    """Plain tick labels (no "1e-7+9e1" offset when the values barely differ, e.g. every model
    at chance) and at least ``min_span`` of range around the data on ``axis``."""
    ax.ticklabel_format(axis=axis, useOffset=False, style="plain")
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if hi - lo < min_span:
        mid = 0.5 * (lo + hi)
        (ax.set_ylim if axis == "y" else ax.set_xlim)(mid - min_span / 2, mid + min_span / 2)


def _columns(data: Any) -> dict[str, np.ndarray]:
    """Column name -> array, from a pandas DataFrame, a mapping of columns or a list of row dicts."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame, without importing pandas
        return {str(c): np.asarray(data[c]) for c in data.columns}
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    rows = list(data)
    if not rows:
        raise ValueError("no rows to plot.")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: np.asarray([r.get(k, np.nan) for r in rows]) for k in keys}


def _to_float(a: Any) -> np.ndarray:
    """Floats from a tensor, an array or CSV strings (an empty field becomes NaN)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind in "OUS":  # strings, as csv.DictReader gives them
        return np.array([float(v) if v not in ("", None) else np.nan for v in a.ravel()]).reshape(a.shape)
    return a.astype(np.float64)


def _to_hwc(image: Any) -> np.ndarray:
    """One image as (H, W, 3) floats in [0, 1] from uint8 or float, HWC or CHW, tensor or array."""
    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    a = a.astype(np.float64)
    if a.min() < 0.0 or a.max() > 1.0:  # normalised floats: stretch into view
        a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
    return a


def _dataset_image(dataset: Any, index: int, transformed: bool = False) -> np.ndarray:
    """Image ``index`` of a data set as (H, W, 3) in [0, 1]: the stored image, or with
    ``transformed`` the item as the network sees it (augmented), un-normalised."""
    images = getattr(dataset, "images", None)
    if images is not None and not transformed:  # ArrayDataset (also through WithIndex): stored uint8
        return _to_hwc(images[index])
    x = dataset[index][0]
    info = getattr(dataset, "info", None)
    if info is not None and hasattr(x, "detach") and x.dtype.is_floating_point:
        mean = np.asarray(info.mean).reshape(3, 1, 1)
        std = np.asarray(info.std).reshape(3, 1, 1)
        return np.clip(np.transpose(x.numpy() * std + mean, (1, 2, 0)), 0.0, 1.0)
    return _to_hwc(x)


def _dataset_title(dataset: Any) -> str:
    info = getattr(dataset, "info", None)
    return info.title if info is not None else type(dataset).__name__


def class_counts(dataset_or_labels: Any, num_classes: int | None = None) -> np.ndarray:
    """Images per class, from a data set with ``targets`` or from an array of labels."""
    labels = getattr(dataset_or_labels, "targets", dataset_or_labels)
    labels = np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels, dtype=np.int64)
    info = getattr(dataset_or_labels, "info", None)
    n = num_classes or (info.num_classes if info is not None else int(labels.max(initial=-1)) + 1)
    return np.bincount(labels, minlength=n)


def pareto_frontier(latency: Sequence[float], error: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both latency and error, by latency
    (:func:`~instanas_core.pareto.pareto_indices`)."""
    lat, err = _to_float(latency), _to_float(error)
    return np.asarray(pareto_indices(lat, -err), dtype=np.int64)


# ---- notebook 00: the data -----------------------------------------------------------------------
def plot_sample_grid(
    dataset: Any,
    n_per_class: int = 8,
    seed: int = 0,
    transformed: bool = False,
    context: str = "",
    title: str | None = None,
) -> Figure:
    """Rows are classes, columns ``n_per_class`` images of that class drawn with ``seed``;
    ``transformed`` shows each item after the data set's transform (e.g. the §4.2 augmentation)."""
    labels = class_counts(dataset)  # validates targets
    targets = np.asarray(getattr(dataset, "targets"))
    names = list(getattr(dataset, "classes", None) or [str(c) for c in range(len(labels))])
    rng = np.random.default_rng(seed)
    tiles: list[list[np.ndarray]] = []
    for c in range(len(names)):
        idx = np.flatnonzero(targets == c)
        pick = rng.choice(idx, size=min(n_per_class, len(idx)), replace=False) if len(idx) else []
        tiles.append([_dataset_image(dataset, int(i), transformed) for i in pick])
    h, w = next(t[0].shape[:2] for t in tiles if t)
    gap = max(1, h // 16)
    mosaic = np.ones(
        (len(names) * (h + gap) - gap, n_per_class * (w + gap) - gap, 3)
    )  # (rows*H, cols*W, 3), white gaps
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    fig = _figure(0.7 * n_per_class + 1.4, 0.7 * len(names) + 1.0)
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(names))], names, fontsize=8)
    ax.set_xticks(
        [c * (w + gap) + w / 2 for c in range(n_per_class)], [str(c + 1) for c in range(n_per_class)], fontsize=7
    )
    ax.tick_params(length=0)
    ax.set_ylabel("class")
    ax.set_xlabel(f"image ({w}x{h} px each)")
    kind = "augmented training images" if transformed else "random images"
    _title(fig, title or f"{_dataset_title(dataset)}: {n_per_class} {kind} per class", context)
    return fig


@themed
def plot_class_balance(
    splits: Mapping[str, Any], class_names: Sequence[str] | None = None, context: str = "", title: str | None = None
) -> Figure:
    """Grouped bars: images per class in each split. ``splits`` maps a split name to a data set
    (anything with ``targets``) or to its per-class counts (see :func:`class_counts`)."""
    counts = {
        name: class_counts(v) if hasattr(v, "targets") else np.asarray(v, dtype=np.int64) for name, v in splits.items()
    }
    first = next(iter(splits.values()))
    n = max(len(c) for c in counts.values())
    names = list(class_names or getattr(first, "classes", None) or [str(c) for c in range(n)])
    fig = _figure(max(6.0, 0.55 * n + 2.0), 3.6)
    ax = fig.subplots()
    width = 0.8 / len(counts)
    x = np.arange(n)
    for i, (split, c) in enumerate(counts.items()):
        ax.bar(
            x + (i - (len(counts) - 1) / 2) * width,
            np.pad(c, (0, n - len(c))),
            width,
            label=f"{split} ({int(c.sum()):,})",
        )
    long_names = max(len(s) for s in names) > 3
    ax.set_xticks(x, names, rotation=30 if long_names else 0, ha="right" if long_names else "center")
    ax.set_xlabel("class")
    ax.set_ylabel("images per class")
    ax.set_ylim(0, 1.3 * max(int(c.max()) for c in counts.values()))
    ax.legend(title="split (total images)", fontsize=8, ncol=len(counts), loc="upper center")
    _title(ax, title or f"{_dataset_title(first)}: class balance per split", context)
    return fig


# ---- notebook 01: latency profiling (§4.1, Figure 4) ------------------------------------------------
def plot_lut_heatmap(table: Any, context: str = "", title: str | None = None) -> Figure:
    """The look-up table (cells x modules, ms), each cell annotated with its latency."""
    ms = np.asarray(table.cell_module_ms, dtype=np.float64)  # (T, K)
    space = table.space
    cells = space.cells()
    fig = _figure(7.0, 0.33 * len(cells) + 2.2)
    ax = fig.subplots()
    im = ax.imshow(ms, aspect="auto", cmap="viridis")
    threshold = ms.min() + 0.6 * (ms.max() - ms.min())
    for t in range(ms.shape[0]):
        for k in range(ms.shape[1]):
            ax.text(
                k,
                t,
                f"{ms[t, k]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if ms[t, k] > threshold else "white",
            )
    ax.set_xticks(range(ms.shape[1]), list(space.modules))
    ax.set_yticks(
        range(len(cells)),
        [
            f"{c.index}: {c.in_channels}\u2192{c.out_channels}, {c.in_size}px{' s2' if c.stride == 2 else ''}"
            for c in cells
        ],
        fontsize=7,
    )
    ax.set_xlabel("module (Figure 3)")
    ax.set_ylabel("cell: channels in\u2192out, input size")
    fig.colorbar(im, ax=ax, label="latency (ms, batch 1)")
    meta = getattr(table, "meta", {}) or {}
    fixed = f"stem {table.stem_ms:.2f} + head {table.head_ms:.2f} + controller {table.controller_ms:.2f} ms"
    _title(
        ax,
        title
        or f"Latency look-up table, {space.resolution} px, width {space.width_mult}: {fixed}\n"
        f"{meta.get('device_name', '?')}, {meta.get('threads', '?')} thread(s), torch {meta.get('torch', '?')}",
        context,
    )
    return fig


@themed
def plot_latency_correlation(
    estimated: Any,
    measured: Any,
    r: Any,
    within10: Any,
    resolution: int | Sequence[int],
    split: Any = None,
    paper_r: Any = None,
    panel_titles: Sequence[str] | None = None,
    context: str = "",
    title: str | None = None,
    load_notes: Sequence[str] | None = None,
) -> Figure:
    """Figure 4: estimated (look-up table) vs measured child latency, one panel per resolution.

    A single panel takes arrays and scalars; several take sequences of them, one per entry of
    ``resolution``. ``split`` (per child, ``"fit"``/``"eval"``) marks the children that fitted
    the calibration; ``r`` and ``within10`` (a share, 0..1) are the numbers judged on the others;
    ``paper_r`` the paper's r at that resolution. The band is y = x +-10%. Panels are titled
    ``"<R> px"`` unless ``panel_titles`` says more. ``load_notes`` (one per panel, see
    :func:`~instanas_core.profile.load_note`) go under each panel's r, in red when its children
    were timed under load.
    """
    if np.ndim(resolution) == 0:
        estimated, measured, r, within10, split, paper_r = (
            [v] for v in (estimated, measured, r, within10, split, paper_r)
        )
        resolution = [resolution]
        panel_titles = [panel_titles] if isinstance(panel_titles, str) else panel_titles
    n = len(resolution)
    split = split if split is not None else [None] * n
    paper_r = paper_r if paper_r is not None else [None] * n
    panel_titles = panel_titles if panel_titles is not None else [f"{res} px" for res in resolution]
    fig = _figure(max(4.4 * n, 6.0), 4.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, est, mea, rr, w10, panel, sp, pr in zip(
        axes, estimated, measured, r, within10, panel_titles, split, paper_r
    ):
        est, mea = _to_float(est), _to_float(mea)
        lo, hi = 0.95 * min(est.min(), mea.min()), 1.05 * max(est.max(), mea.max())
        grid = np.linspace(lo, hi, 50)
        ax.fill_between(grid, 0.9 * grid, 1.1 * grid, color="tab:blue", alpha=0.12, label="y = x \u00b1 10%")
        ax.plot(grid, grid, color="tab:blue", lw=1, label="y = x")
        fit = np.asarray(sp) == "fit" if sp is not None else np.zeros(len(est), bool)
        ax.scatter(mea[~fit], est[~fit], s=14, color="tab:red", alpha=0.8, label=f"judged children ({(~fit).sum()})")
        if fit.any():
            ax.scatter(
                mea[fit],
                est[fit],
                s=14,
                facecolors="none",
                edgecolors="grey",
                label=f"calibration children ({fit.sum()})",
            )
        text = (
            f"Pearson r = {rr:.3f}"
            + (f" (paper {pr:.2f})" if pr is not None else "")
            + f"\nwithin \u00b110%: {100 * w10:.0f}%"
        )
        ax.text(
            0.03,
            0.97,
            text,
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"fc": "white", "alpha": 0.8, "ec": "none"},
        )
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("measured latency (ms, batch 1)")
        ax.set_ylabel("estimated latency (ms, look-up table)")
        ax.set_title(panel, fontsize=10)
        ax.legend(loc="lower right", fontsize=7)
    for ax, note in zip(axes, load_notes or ()):
        if note:
            loaded = note.startswith("TIMED UNDER LOAD")
            ax.text(
                0.03, 0.8, note, transform=ax.transAxes, va="top", fontsize=8, color="tab:red" if loaded else "0.35"
            )
    _title(fig, title or "Figure 4: estimated vs measured latency of sampled child networks", context)
    return fig


# ---- notebooks 02-03: training curves, search ------------------------------------------------------
def plot_training_curves(
    metrics: Any,
    x: str = "epoch",
    ys: Sequence[str] = ("loss", "accuracy"),
    hue: str | None = None,
    labels: Mapping[str, str] | None = None,
    context: str = "",
    title: str = "Training curves",
) -> Figure:
    """One panel per column in ``ys`` against ``x``; ``hue`` (e.g. ``"split"``) draws one line per value.

    ``metrics``: a DataFrame, a mapping of columns or a list of row dicts (``RUN/<stage>/metrics.csv``).
    ``labels`` gives each column its axis label with units (default: the column name).
    """
    cols = _columns(metrics)
    ys = [y for y in ys if y in cols]
    if not ys:
        raise ValueError(f"none of the requested columns are in the metrics; it has {', '.join(cols)}.")
    labels = dict(labels or {})
    fig = _figure(4.2 * len(ys), 3.6)
    axes = fig.subplots(1, len(ys), squeeze=False)[0]
    groups = [None] if hue is None or hue not in cols else list(dict.fromkeys(cols[hue].tolist()))
    for ax, y in zip(axes, ys):
        for g in groups:
            sel = np.ones(len(cols[x]), bool) if g is None else cols[hue] == g
            xv, yv = _to_float(cols[x][sel]), _to_float(cols[y][sel])
            ok = np.isfinite(yv)
            ax.plot(xv[ok], yv[ok], marker="o" if ok.sum() < 30 else None, ms=3, label=str(g) if g is not None else y)
        ax.set_xlabel(labels.get(x, x))
        ax.set_ylabel(labels.get(y, y))
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _title(fig, title, context)
    return fig


@themed
def plot_reward_bounds(
    search_metrics: Any,
    x: str = "epoch",
    upper: str = "upper_bound",
    lower: str = "lower_bound",
    latency: str = "mean_latency_ms",
    accuracy: str | None = "val_accuracy",
    context: str = "",
    title: str = "Dynamic reward (\u00a73.3): interval [$L_t$, $U_t$] and mean latency of the sampled policies",
) -> Figure:
    """The reward interval's bounds U_t and L_t (ms) over the search's epochs, the mean latency
    of the controller's policies inside it and, if present, accuracy on a second axis. The
    default column names are the search stage's ``RUN/search/metrics.csv``."""
    cols = _columns(search_metrics)
    missing = [c for c in (x, upper, lower, latency) if c not in cols]
    if missing:
        raise ValueError(f"search metrics lack column(s) {', '.join(missing)}; they have {', '.join(cols)}.")
    xv = _to_float(cols[x])
    fig = _figure(7.0, 4.4)
    ax = fig.subplots()
    ax.fill_between(
        xv, _to_float(cols[lower]), _to_float(cols[upper]), color="tab:green", alpha=0.15, label="reward interval"
    )
    ax.plot(xv, _to_float(cols[upper]), color="tab:green", lw=1.2, label="upper bound $U_t$")
    ax.plot(xv, _to_float(cols[lower]), color="tab:green", lw=1.2, ls="--", label="lower bound $L_t$")
    ax.plot(xv, _to_float(cols[latency]), color="tab:blue", marker="o", ms=3, label="mean latency of policies")
    ax.set_xlabel(x)
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("latency (ms, look-up table)")
    handles, names = ax.get_legend_handles_labels()
    if accuracy and accuracy in cols:
        ax2 = ax.twinx()
        (h,) = ax2.plot(xv, _to_float(cols[accuracy]), color="tab:red", marker="s", ms=3, label=accuracy)
        ax2.set_ylabel(accuracy.replace("_", " "))
        handles, names = handles + [h], names + [accuracy]
    fig.legend(handles, names, fontsize=8, loc="outside lower center", ncol=3)
    ax.grid(alpha=0.3)
    _title(ax, title, context)
    return fig


@themed
def plot_accuracy_vs_latency(
    points: Any,
    x: str = "latency_ms",
    y: str = "accuracy",
    label: str = "name",
    group: str | None = "group",
    xerr: str | None = "latency_std_ms",
    x_label: str = LATENCY_LABEL,
    y_label: str = "top-1 accuracy (%)",
    context: str = "",
    title: str = "Accuracy vs latency",
) -> Figure:
    """Scatter of models: one point per row of ``points`` (rows or columns), named, grouped by colour."""
    cols = _columns(points)
    n = len(cols[x])
    groups = cols[group] if group and group in cols else np.asarray(["models"] * n)
    fig = _figure(6.4, 4.4)
    ax = fig.subplots()
    for g in dict.fromkeys(groups.tolist()):
        sel = groups == g
        err = _to_float(cols[xerr][sel]) if xerr and xerr in cols else None
        ax.errorbar(_to_float(cols[x][sel]), _to_float(cols[y][sel]), xerr=err, fmt="o", ms=5, capsize=2, label=str(g))
    if label in cols:
        for xi, yi, name in zip(_to_float(cols[x]), _to_float(cols[y]), cols[label]):
            ax.annotate(str(name), (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    _readable_axis(ax, "y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _title(ax, title, context)
    return fig


@themed
def plot_latency_distribution(
    latencies: Any,
    bins: int = 30,
    reference: Mapping[str, float] | None = None,
    x_label: str = LATENCY_LABEL,
    context: str = "",
    title: str = "Figure 1: latency of the architectures InstaNAS assigns to each test image",
) -> Figure:
    """Figure 1: histogram of per-image latencies, with their mean and optional reference models.

    Bars are at least 1/80 of the plotted latency range wide, so that a narrow distribution (or
    a controller that gives every image the same architecture) stays visible beside distant
    reference lines."""
    lat = _to_float(latencies).ravel()
    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    values = np.concatenate([lat, _to_float(list((reference or {}).values()))]) if reference else lat
    width = max(np.ptp(lat) / bins, np.ptp(values) / 80, 1e-6)
    edges = np.arange(lat.min() - width / 2, lat.max() + width, width)  # (n_bins + 1,)
    import seaborn as sns

    # A density estimate only where there is a distribution to estimate (>= 2 distinct latencies).
    kde = len(np.unique(lat)) > 1
    sns.histplot(lat, bins=edges, kde=kde, ax=ax, color="tab:blue", alpha=0.6, label=f"InstaNAS, {len(lat):,} images")
    ax.axvline(lat.mean(), color="tab:blue", ls="--", lw=1.5, label=f"mean {lat.mean():.2f} ms")
    colors = iter(("tab:red", "tab:orange", "tab:green", "tab:purple", "black"))
    for name, value in (reference or {}).items():
        ax.axvline(value, color=next(colors, "grey"), lw=1.5, label=f"{name}: {value:.2f} ms")
    ax.set_xlabel(x_label)
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    _title(ax, title, context)
    return fig


# ---- notebook 07: the trade-off frontier (Figures 5 and 6) ----------------------------------------
def _label_points(ax: Any, labels: list[tuple[float, float, str]]) -> None:
    """Name each point beside it; a label that would overlap one already placed (within ~1.5
    label heights and widths in axes units) moves down by a label height until it is free, with a
    thin line back to its point."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    placed: list[tuple[float, float]] = []
    step_y, near_x = 0.045, 0.08  # a 7-pt label's height and a short label's width, in axes units
    for x, y, text in sorted(labels, key=lambda t: (-t[1], t[0])):
        u, v = (x - x0) / max(x1 - x0, 1e-12), (y - y0) / max(y1 - y0, 1e-12)
        shift = 0
        while any(abs(u - pu) < near_x and abs(v - shift * step_y - pv) < step_y for pu, pv in placed):
            shift += 1
        placed.append((u, v - shift * step_y))
        ax.annotate(
            text,
            (x, y),
            xytext=(4, 3 - shift * step_y * ax.bbox.height * 72 / ax.figure.dpi),
            textcoords="offset points",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if shift else None,
        )


def plot_tradeoff_frontier(
    methods: Mapping[str, Any],
    x_label: str = LATENCY_LABEL,
    y_label: str = "top-1 error (%)",
    context: str = "",
    title: str = "Accuracy-latency trade-off (Figures 5, 6): lower left is better",
) -> Figure:
    """Figures 5/6: per method, its models (latency, error) and their Pareto frontier.

    ``methods`` maps a method name to ``(latencies, errors)`` or to a mapping with keys
    ``latency`` and ``error`` (and optionally ``names``, printed beside the points).
    """
    fig = _figure(6.6, 4.6)
    ax = fig.subplots()
    markers = iter("osD^vP*X<>")
    labels: list[tuple[float, float, str]] = []
    for method, data in methods.items():
        if isinstance(data, Mapping):
            lat, err, names = _to_float(data["latency"]), _to_float(data["error"]), data.get("names")
        else:
            (lat, err), names = (_to_float(d) for d in data[:2]), None
        marker = next(markers, "o")
        (line,) = ax.plot([], [])  # take the next colour of the cycle
        color = line.get_color()
        front = pareto_frontier(lat, err)
        ax.scatter(lat, err, marker=marker, color=color, alpha=0.35, s=18)
        ax.plot(
            lat[front],
            err[front],
            marker=marker,
            color=color,
            lw=1.5,
            ms=6,
            drawstyle="steps-post",
            label=f"{method} ({len(lat)})",
        )
        for i in range(len(lat)) if names is not None else ():
            labels.append((float(lat[i]), float(err[i]), str(names[i])))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    _readable_axis(ax, "y")
    _label_points(ax, labels)
    ax.grid(alpha=0.3)
    ax.legend(title="method (models)", fontsize=8)
    _title(ax, title, context)
    return fig
