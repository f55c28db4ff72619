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
# # 06 · Tables 1-3: this run beside the paper
#
# Tables 1-3 report top-1 error and per-image CPU latency (mean ± std, Intel Core i5-7600, §4.1)
# on CIFAR-10, CIFAR-100 and TinyImageNet, and the text reads them as latency reductions against
# MobileNetV2 1.0x: "InstaNAS-C10-A improves accuracy by 1.26% without latency trade-off;
# InstaNAS-C10-C reduces 48.9% average latency with comparable accuracy, and InstaNAS-C10-E
# reduces 82.6% latency with moderate accuracy drop" (§4.2).
#
# This notebook reads the run's results registry, `RUN/results.csv` (one row per evaluated model:
# InstaNAS's variants from notebook 04, the baselines from notebook 05), and sets it beside the
# paper's table for the run's data set (`instanas_core.paper_numbers`). The paper's latencies are
# in its own, unstated unit (most likely seconds) on its own CPU; ours are milliseconds on this
# machine, so compare **ratios** (the reductions), never absolute latencies. The CPU presets'
# data sets (digits, CIFAR-10 as JPEG) are set beside Table 1 and labelled as not the same data.
#
# InstaNAS rows come twice: with the latency the look-up table *estimates* for every test image
# (controller included), and with the latency *measured* on a sample of test images (each image's
# child network extracted and timed at batch 1 after the controller). The baselines' latency is
# measured. A reduction is computed only against a reference of the same kind: measured against
# the measured `mobilenetv2-1.0`, estimated against the table's estimate of the MobileNetV2 path of
# our search space.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
variants = []  # InstaNAS variants made here if missing; []: the preset's default (smoke: C and E; others: A-E)
models = []  # baselines made here if missing; []: the preset's default (smoke: mobilenetv2-1.0 and shufflenetv2-1.0)
seed = 0  # seeds Python, NumPy and torch in this kernel

# %%
from instanas_core import book

ctx = book.start("06", preset, run_dir, seed=seed, namespace=globals())
dataset = ctx.cfg.experiment.dataset

# %% [markdown]
# ## The rows this run needs (made here when run on its own)

# %%
made = [book.ensure_variant(ctx.cfg, ctx.run_dir, v) for v in book.book_variants(preset, variants)]
made += [book.ensure_baseline(ctx.cfg, ctx.run_dir, m) for m in book.book_baselines(preset, models)]
results = book.latest_results(ctx.run_dir, dataset)
assert any(r.name.startswith("InstaNAS-") for r in results), "the variants append their rows when evaluated"
assert set(book.book_baselines(preset, models)) <= {r.name for r in results}, "every baseline appends its row"
path_ms = book.reference_lines(book.load_run_table(ctx.cfg, ctx.run_dir))["MobileNetV2 path (every cell ir_k3_e6)"]
paper = book.paper_table_for(dataset)
print(paper["heading"])

# %% [markdown]
# ## The table

# %%
rows = book.comparison_rows(results, dataset, path_ms)
assert sum(r["source"].startswith("paper") for r in rows) == len(paper["rows"]) and any(r["source"].startswith("this run") for r in rows)
ctx.table(rows, f"06_{paper['slug']}_comparison", latency="mixed", title=paper["heading"])

# %% [markdown]
# ## Latency reduction against MobileNetV2 1.0, variant by variant
# The paper's InstaNAS variant of the same letter beside ours; `error_minus_mobilenetv2` is the
# error difference to MobileNetV2 1.0 of the same source (negative: InstaNAS is more accurate).

# %%
reductions = book.reduction_rows(results, dataset, path_ms)
assert not paper["rows"] or (reductions and all(r["paper_reduction_pct"] is not None for r in reductions))
ctx.table(reductions, "06_latency_reduction", latency="both", title=f"Latency reduction vs MobileNetV2 1.0: {paper['heading']}")

# %% [markdown]
# How to read it at the smoke preset: every model trained for a few batches, so errors are at
# chance and the reductions only show the pipeline. At the `cpu` preset the reductions say how
# InstaNAS's instance-aware architectures compare with a static MobileNetV2 on this machine; the
# paper's i5-7600 and its CIFAR-10 are not ours.
