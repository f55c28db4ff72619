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
# # 05 · The baselines of Tables 1-3: MobileNetV2 and ShuffleNetV2
#
# InstaNAS's search space is "inspired by [26], using MobileNetV2 as the backbone network" (§4.1),
# and every table sets its variants beside MobileNetV2 at widths 0.4, 1.0 and 1.4 and ShuffleNetV2
# at 0.5-2.0 (Tables 1-2; MobileNetV2 1.0 and 1.4 in Table 3), whose error the authors measured
# "with our implementation if it is not reported in the original paper" (Table 1's caption).
#
# Each baseline here is torchvision's network adapted to small images (stem stride 1, and
# MobileNetV2's first stride-2 stage / ShuffleNetV2's max-pool at stride 1 at 32 px), trained from
# scratch on the run's data with **the budget InstaNAS's variants get** after the search (the
# preset's fine-tuning epochs, as the paper's re-training: Adam, lr 0.01, cosine annealing; §4.2),
# then tested and timed at batch 1 with the same settings as InstaNAS's measured latency
# (`instanas_core.stages.baseline`). A baseline keeps its own named width even where the run's
# meta-graph is narrower (the summary says so). `meta-mobilenetv2-path` is the MobileNetV2 path
# *of our search space* (every cell `ir_k3_e6`) cut out of a fresh meta-graph: the in-space
# reference. Each finished baseline appends a row to `RUN/results.csv` (notebook 06 reads it).
#
# Cost on the 2-core build machine: seconds each at the smoke preset; at the `cpu` preset (digits,
# 6 epochs) about 15 minutes for the seven widths (MobileNetV2 1.4 alone about 5), plus about 3 for
# `meta-mobilenetv2-path` if added to `models`; the cost table below says what this run took.
#
# Parameters: `baseline_overrides` changes the training settings like `instanas baseline --set`,
# e.g. `["epochs=3"]`.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
models = []  # baselines to train; []: the preset's default (smoke: mobilenetv2-1.0 and shufflenetv2-1.0; cpu: every MobileNetV2 and ShuffleNetV2 width)
baseline_overrides = []  # settings of the baseline stage, as `instanas baseline --set` takes them (see above)
seed = 0  # seeds Python, NumPy and torch in this kernel (the stage seeds itself from the preset)

# %%
from instanas_core import book, plots

ctx = book.start("05", preset, run_dir, seed=seed, namespace=globals())
names = book.book_baselines(preset, models)
print(f"baselines: {', '.join(names)}")

# %% [markdown]
# ## Train, test and time each baseline (or load the finished ones)

# %%
summaries = [book.ensure_baseline(ctx.cfg, ctx.run_dir, name, baseline_overrides) for name in names]
assert all(s["finished"] and s["result_appended"] for s in summaries)
assert all(0.0 <= s["accuracy_pct"] <= 100.0 and s["latency_ms"]["mean_ms"] > 0 for s in summaries)

# %%
ctx.table(book.baseline_rows(summaries), "05_baselines", latency="measured",
          title="Baselines on the test split (latency per image, batch 1)")

# %%
ctx.table(book.stage_rows({s["model"]: s for s in summaries}), "05_baseline_cost", title="What each baseline cost on this machine")

# %% [markdown]
# ## The baselines on the accuracy-latency plane

# %%
points = [{"name": r["model"], "group": r["family"], "latency_ms": r["latency_measured_ms"], "latency_std_ms": r["latency_std_ms"],
           "accuracy": r["test_accuracy_pct"]} for r in book.baseline_rows(summaries)]
ctx.show(plots.plot_accuracy_vs_latency(points, context=ctx.context("measured"), title="Baselines: test accuracy vs measured latency"),
         "05_baselines_tradeoff")

# %% [markdown]
# At the smoke preset each network trains for a couple of batches: its accuracy is chance and
# only its latency means something. Notebook 06 sets these rows beside the paper's.
