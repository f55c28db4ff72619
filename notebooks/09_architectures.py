# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · The distribution of architectures (§4.3, Figure 8)
#
# "Each point corresponds to an architecture probability vector $p$. We adopt UMAP [16, 17] to
# project high-dimensional $p$ into 2D space, and color-code each architecture by its inference
# latency: *red* for high latency and *blue* for low latency. We also visualize three set of
# instances (in rectangle boxes) and instances in each box share the same architecture" (Figure 8).
# The paper reads the boxes as the controller grouping images by "low-level visual
# characteristic, such as the background color ..., object position/orientation ... and texture
# complexity".
#
# Here: the controller's probabilities $p$ (17 cells x 5 modules) for every test image of one
# variant (its evaluation records, `RUN/evaluate-<L>/records.npz`), embedded by UMAP with a fixed
# `random_state` (reproducible), coloured by the latency of the greedy architecture; three
# architectures are drawn at random (seeded) among those shared by several images, and their
# images are shown in boxes of the colour that rings their points.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
variant = "C"  # whose test-set records are embedded (made here if notebook 04 did not)
boxes = 3  # architectures shown in boxes (the paper shows three)
images_per_box = 6  # images shown in each box
n_neighbors = 15  # UMAP's neighbourhood size
seed = 0  # seeds Python, NumPy and torch, UMAP's random_state and the choice of boxed architectures

# %%
import numpy as np

from instanas_core import book, plots

ctx = book.start("09", preset, run_dir, seed=seed, namespace=globals())

# %%
made = book.ensure_variant(ctx.cfg, ctx.run_dir, variant)
records = book.load_records(made["folder"])
n, t, k = records["probs"].shape
assert (n, t, k) == records["policy"].shape and ((records["probs"] >= 0) & (records["probs"] <= 1)).all()
spread = book.check_spread(ctx.cfg, records["policy"], f"Figure 8 (variant {variant})")  # cifar10-cpu: >= 3 architectures
print(f"variant {variant}: {n} test images, probability vectors of {t} cells x {k} modules, "
      f"{made['evaluate']['distinct_policies']} distinct architectures")

# %% [markdown]
# ## Figure 8: UMAP of the probability vectors

# %%
embedding = plots.umap_embed(records["probs"], seed=seed, n_neighbors=n_neighbors)
assert embedding.shape == (n, 2) and np.isfinite(embedding).all()
chosen = book.figure8_boxes(records, boxes, seed)
box_images = [book.split_images(ctx.cfg, "test", records["index"][ix][:images_per_box]) for ix in chosen["indices"]]
ctx.show(plots.plot_umap(embedding, records["latency_ms"], box_images, chosen["indices"], chosen["labels"], images_per_box,
                         context=ctx.context("estimated"), title=f"Figure 8 (variant {variant}): UMAP of the controller's probability vectors; {spread['note']}"),
         "09_figure8_umap")

# %%
ctx.table(book.architecture_rows(records, chosen, book.class_names(ctx.cfg)), "09_boxed_architectures", latency="estimated",
          title="The boxed architectures: latency, modules, and the classes of their images")

# %% [markdown]
# At the smoke preset the controller is barely trained and few architectures are shared: the
# figure shows the pipeline (embedding, colouring, boxes), not the paper's structure.
