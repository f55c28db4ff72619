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
# # 08 · Which images get which architectures (§4.3, Figure 7)
#
# "Figure 7 illustrates the various images of three classes ... sorted by its assigned
# architecture's latency (showed as the number below each image) normalized by the average
# latency -- 0% represents the average latency of all the architectures assigned to the images
# under a certain class. The images on the left are considered to be 'simpler' ... and images on
# the right are 'complex'" (§4.3). The paper finds that the controller's notion of complexity
# "matches humans' perception": cluttered backgrounds, high intra-class variation, illumination.
#
# Here: per class, test images of one variant (notebook 04's evaluation records,
# `RUN/evaluate-<L>/records.npz`), spread evenly from the cheapest to the costliest architecture,
# each captioned with its latency relative to its class mean.
#
# Natural images carry no ground truth for "difficulty". The **synthetic-difficulty** data set
# (`instanas_core.data.synthetic`) does: shapes drawn at five levels of contrast, noise, clutter
# and occlusion, whose error rises with the level for a fixed CNN. A small InstaNAS run on it
# (`RUN/synthetic/`: pre-train, search, evaluate the search's controller on the test split) tells
# whether harder images get costlier architectures: the Spearman correlation between level and
# assigned latency.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
variant = "C"  # whose test-set records Figure 7 shows (made here if notebook 04 did not)
classes = 3  # rows of Figure 7: the first N classes (the paper shows three); 0: every class
per_class = 8  # images per row, spread from the cheapest to the costliest architecture
difficulty_dataset = "synthetic-difficulty"  # a data set with known difficulty levels, for the correlation
difficulty_images = 0  # images per split of the synthetic run; 0: the preset's default (smoke 100, cpu 2000)
seed = 0  # seeds Python, NumPy and torch in this kernel

# %%
from instanas_core import book, plots

ctx = book.start("08", preset, run_dir, seed=seed, namespace=globals())

# %% [markdown]
# ## Figure 7: images sorted by the latency of their architecture

# %%
made = book.ensure_variant(ctx.cfg, ctx.run_dir, variant)
records = book.load_records(made["folder"])
assert len(records["label"]) == made["evaluate"]["n"] and records["latency_ms"].min() > 0
spread = book.check_spread(ctx.cfg, records["policy"], f"Figure 7 (variant {variant})")  # cifar10-cpu: >= 3 architectures
fig7 = book.figure7_data(ctx.cfg, records, classes, per_class)
assert all(abs(sum(r) / len(r)) < 1.0 for r in fig7["rel_latency"])
ctx.show(plots.plot_sorted_by_latency(**fig7, context=ctx.context("estimated"),
                                      title=f"Figure 7 (variant {variant}): test images sorted by their architecture's latency, relative to the class mean; {spread['note']}"),
         "08_figure7_sorted_by_latency")

# %%
ctx.table(book.figure7_rows(records, book.class_names(ctx.cfg)), "08_latency_per_class", latency="estimated",
          title=f"Assigned latency per class (variant {variant}, test split)")

# %% [markdown]
# ## Harder images, costlier architectures? (synthetic-difficulty)

# %%
synthetic = book.ensure_difficulty_run(ctx.cfg, ctx.run_dir, difficulty_dataset, difficulty_images)
sctx = ctx.for_config(synthetic["config"])  # figures and tables name the synthetic run's data set
difficulty = book.load_records(synthetic["folder"])
corr = synthetic["summary"]["difficulty"]
assert set(difficulty["difficulty"].tolist()) <= set(range(5)) and len(difficulty["difficulty"]) == synthetic["summary"]["n"]
print(f"{synthetic['summary']['model']} on {synthetic['summary']['n']} test images: Pearson r {corr['pearson_r']}, Spearman rho {corr['spearman_rho']}")
sctx.show(plots.plot_difficulty_vs_latency(difficulty["difficulty"], difficulty["latency_ms"], difficulty_label="difficulty level, 0 easy to 4 hard",
                                           context=f"{sctx.context('estimated')} \u00b7 RUN/synthetic",
                                           title="Do harder images get costlier architectures?"),
          "08_difficulty_vs_latency")

# %%
sctx.table(book.difficulty_rows(difficulty), "08_difficulty_levels", latency="estimated",
          title=f"Assigned latency and accuracy per difficulty level ({difficulty_dataset}, search controller, test split)")

# %% [markdown]
# A positive rank correlation means the controller spends more on harder images, the paper's
# premise (§1, §4.3); near zero means it does not distinguish them. At the smoke preset the
# synthetic run lasts seconds and its controller is untrained: expect no correlation (possibly
# none defined, when every image gets the same architecture). The `cpu` preset trains it for
# 4 + 3 epochs on 2,000 images: enough to rise above chance, too little to settle the question.
