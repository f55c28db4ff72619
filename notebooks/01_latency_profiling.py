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
# # 01 · Module latency profiling (§4.1, Figure 4)
#
# Every image can get its own child architecture, so the search needs the latency of freshly
# sampled children at every step: timing each one would be far too slow. The paper builds a
# **module-wise look-up table** instead and estimates a child's latency as the sum of the entries
# of the modules it selects (§4.1). Figure 4 checks the estimate against real latency on 10,000
# sampled children per resolution on an Intel Core i5-7600: Pearson r = 0.97, 0.98 and 0.97 at 32,
# 64 and 224 px.
#
# Our table (`instanas_core.latency`) times every (cell, module) at its real input shape, plus the
# stem, the head and the controller (whose latency the paper counts, §3.1), at batch 1, in eval
# mode under `torch.inference_mode()`, with a fixed thread count, keeping the minimum over repeated
# timing blocks. On CPUs the plain sum misses part of the cost of chaining modules into one
# network (caches, residual additions, per-call overhead); when the preset profiles children, an
# affine calibration `measured ~ a * sum + b` is fitted on them and stored with the table.
#
# This notebook makes (or loads) **the run's table**, `RUN/profile/lut.json`, for the run's own
# search space (the preset's width and strides) -- the file the search stage reads -- and then
# judges it on children it has never seen, as Figure 4 does. Pearson r is unchanged by the
# calibration (r is invariant to affine maps); the share within ±10% is not.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
children = 0  # children timed for Figure 4; 0: the preset's default (smoke 8, cpu and cifar10-cpu 100, others 200)
extra_resolutions = []  # more Figure 4 panels in the paper's space, e.g. [64, 224] (RUN/profile/extra-<R>px)
seed = 0  # seeds Python, NumPy and torch

# %%
import numpy as np

from instanas_core import book, plots

ctx = book.start("01", preset, run_dir, seed=seed, namespace=globals())

# %% [markdown]
# ## The run's look-up table

# %%
table, lut_path = book.ensure_run_table(ctx.cfg, ctx.run_dir)
assert table.space.space_hash() == ctx.cfg.experiment.space().space_hash(), "the table must describe this run's space"
assert np.isfinite(table.cell_module_ms).all() and (table.cell_module_ms > 0).all(), "every module must cost something"
print(book.describe_table(table))

# %%
ctx.table(book.lut_rows(table), "01_lut_ms")

# %%
ctx.show(plots.plot_lut_heatmap(table, context=ctx.label), "01_lut_heatmap")

# %% [markdown]
# ## Figure 4: estimated vs measured latency
# Each point is one child (policies of varied density, every shape-changing cell running at least
# one module), timed end to end with the controller at batch 1, twice: the second pass tells how
# often this machine agrees with itself within ±10% (the noise floor, the best any estimate can do
# here). The first panel judges the run's table on fresh children; `extra_resolutions` adds
# panels profiled in the paper's space at other resolutions, whose calibration is fitted on a
# quarter of their children (grey) and judged on the rest (red).

# %%
n_children = book.count_check_children(preset, children)
folders = [book.ensure_latency_check(ctx.cfg, ctx.run_dir, table, n_children)]
folders += book.ensure_extra_profiles(ctx.cfg, ctx.run_dir, extra_resolutions, n_children)
panels = [book.load_profile_panel(folder) for folder in folders]
assert all(len(p["estimated"]) == len(p["measured"]) > 0 and np.isfinite(p["r"]) for p in panels)
ctx.show(plots.plot_latency_correlation(**book.stack_panels(panels), context=ctx.label), "01_figure4_latency_correlation")

# %%
ctx.table(book.correlation_rows(panels), "01_figure4_correlation")

# %% [markdown]
# How to read the table: `pearson_r` is the paper's number (§4.1); `within_10pct` is the share of
# judged children whose estimate lies within ±10% of their measured latency, `raw_sum_within_10pct`
# the same for the uncalibrated sum, and `noise_floor_within_10pct` how often two measurements of
# the same child agree that closely. At the smoke preset a handful of children are timed in short
# blocks while other work shares the machine: the numbers show that the pipeline runs, not how good
# the table is. The `cpu` and `cifar10-cpu` presets time 100 children.
