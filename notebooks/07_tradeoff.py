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
# # 07 · The accuracy-latency trade-off: Figures 5 and 6 (§4.2)
#
# **Figure 5** sets InstaNAS's variants beside MobileNetV2 at several widths on ImageNet:
# "InstaNAS can consistently provides latency reduction with competitive accuracy against
# MobileNetV2". **Figure 6** compares "the best architectures found on the trade-off (accuracy v.s.
# latency) frontier for InstaNAS and several state-of-the-arts: OneshotNAS [1], BlockDrop [32] and
# ConvNetAIG [28]", all "within MobileNetV2 search space"; for OneshotNAS the authors "sample
# 10,000 models from the meta-graph and train the trade-off frontier points from scratch".
#
# Our comparators (`instanas_core.stages.comparators`), all starting from this run's pre-trained
# meta-graph:
#
# * **OneshotNAS**: architectures sampled from the meta-graph and scored with the shared weights on
#   the validation split and the look-up table (no controller); the Pareto front's points, spread
#   along the latency axis, are re-trained from scratch with the baselines' budget;
# * **BlockDrop** and **ConvNet-AIG**: the MobileNetV2 path of our search space, with a policy
#   network (BlockDrop, REINFORCE) or per-cell gates (ConvNet-AIG, Gumbel) deciding per image which
#   cells run, trained for as many epochs as InstaNAS's search and fine-tuning together.
#
# Every model's latency here is *measured* at batch 1 on this machine (decision maker included),
# error on the test split; points come from `RUN/results.csv`. Lower left is better; the line
# through each method's points is its Pareto front.
#
# Parameters: `comparator_overrides` changes the comparators' settings like `instanas comparator
# --set`, e.g. `["oneshot_samples=100"]`.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
comparators = ["oneshot", "blockdrop", "convnet-aig"]  # Figure 6's comparators to train (or load)
comparator_overrides = []  # settings of the comparator stage, as `instanas comparator --set` takes them (see above)
variants = []  # InstaNAS variants made here if missing; []: the preset's default (smoke: C and E; others: A-E)
models = []  # baselines made here if missing; []: the preset's default (smoke: mobilenetv2-1.0 and shufflenetv2-1.0)
latency_kind = "measured"  # which InstaNAS latency the figures use: measured or estimated (the others are always measured)
awareness_report = "benchmarks/instance-awareness/instance-awareness.json"  # `instanas bench instance-awareness` output
seed = 0  # seeds Python, NumPy and torch in this kernel

# %%
from instanas_core import book, plots

ctx = book.start("07", preset, run_dir, seed=seed, namespace=globals())
dataset = ctx.cfg.experiment.dataset

# %% [markdown]
# ## The models (made here when run on its own)

# %%
for v in book.book_variants(preset, variants):
    book.ensure_variant(ctx.cfg, ctx.run_dir, v)
for m in book.book_baselines(preset, models):
    book.ensure_baseline(ctx.cfg, ctx.run_dir, m)
summaries = {name: book.ensure_comparator(ctx.cfg, ctx.run_dir, name, comparator_overrides) for name in comparators}
assert all(s["finished"] for s in summaries.values())
results = book.latest_results(ctx.run_dir, dataset)

# %% [markdown]
# ## Figure 5: InstaNAS against MobileNetV2 (and ShuffleNetV2) widths

# %%
fig5 = book.tradeoff_methods(results, ["InstaNAS", "MobileNetV2", "ShuffleNetV2", "MobileNetV2 path (in-space)"], latency_kind)
assert "InstaNAS" in fig5 and "MobileNetV2" in fig5
ctx.show(plots.plot_tradeoff_frontier(fig5, context=ctx.context(latency_kind if latency_kind == "measured" else "mixed"),
                                      title="Figure 5: InstaNAS against MobileNetV2 widths (lower left is better)"), "07_figure5_tradeoff")

# %% [markdown]
# ## Figure 6: InstaNAS against OneshotNAS, BlockDrop and ConvNet-AIG

# %%
fig6 = book.tradeoff_methods(results, ["InstaNAS", "OneshotNAS (re-trained front)", "BlockDrop", "ConvNet-AIG", "MobileNetV2 path (in-space)"], latency_kind)
assert "InstaNAS" in fig6 and len(fig6) >= 2
ctx.show(plots.plot_tradeoff_frontier(fig6, context=ctx.context(latency_kind if latency_kind == "measured" else "mixed"),
                                      title="Figure 6: InstaNAS against OneshotNAS and conditional-computation methods"), "07_figure6_tradeoff")

# %%
ctx.table(book.tradeoff_rows({**fig5, **fig6}), "07_tradeoff_points", latency="measured" if latency_kind == "measured" else "mixed",
          title="Figures 5-6: every point (test error, latency per image at batch 1)")

# %% [markdown]
# ## Budgeted batch: InstaNAS against the static front, confidence cascades and random routing
# The simplest instance-aware system needs no controller: a **confidence cascade** runs a cheap
# child and, when its top softmax probability is below a threshold, also a larger one. Early-exit
# networks (MSDNet, RANet) are judged this way, in the *budgeted batch* setting: accuracy at one
# mean latency per image over a test set, spent unevenly on easy and hard images. Every comparator
# here is built from the same meta-graph: the **static front** (fixed children, picked on the
# validation split), 2- and 3-stage cascades of its children (thresholds picked on validation for
# each budget, then applied to test), and **random routing** (the controller's own architectures
# given to random images). Each run is labelled *paper-exact* or *named options*
# (docs/science-options.md); a control's controller sees shuffled images.
#
# This section shows the committed report of `instanas bench instance-awareness` (its own runs at
# the `difficulty-cpu` preset, not this notebook's run), with the machine and date it was measured on.

# %%
report = book.load_awareness_report(awareness_report)
ctx.show(plots.awareness_figure(report), "07_budgeted_batch")

# %%
ctx.table(plots.awareness_rows(report), "07_budgeted_batch", latency="measured",
          title="Accuracy at equal measured mean latency per image: InstaNAS minus comparator, points [95% bootstrap CI]")

# %% [markdown]
# The targets of the instance-awareness issues, for the named options' run at its deployed
# latency: "at least the 2-stage cascade at equal mean latency" is issue 20's. A missed target is
# a result: the rows say which hold.

# %%
ctx.table(plots.awareness_target_rows(report), "07_awareness_targets",
          title=f"Targets on {report['machine']['device_name']}: measured value and whether it is met")

# %% [markdown]
# ## OneshotNAS's samples: the search behind its front
# Each sampled architecture scored with the *shared* weights on the validation split against its
# table latency (no controller); the re-trained points above are picked from this front. InstaNAS's
# variants are shown with their table estimate (controller included) and test error, for scale.

# %%
samples = book.load_oneshot_samples(ctx.run_dir)
assert len(samples["latency_ms"]) == summaries["oneshot"]["samples"] and samples["on_front"].any()
methods = {"OneshotNAS samples (shared weights, val)": {"latency": samples["latency_ms"], "error": 100 - samples["accuracy_pct"]}}
methods.update(book.tradeoff_methods(results, ["InstaNAS"], "estimated"))
ctx.show(plots.plot_tradeoff_frontier(methods, x_label="latency per image (ms, look-up table)",
                                      context=ctx.context("estimated by the look-up table (OneshotNAS without a controller, InstaNAS with)"),
                                      title=f"OneshotNAS: {len(samples['latency_ms'])} sampled architectures and their front"),
         "07_oneshot_samples")

# %% [markdown]
# At the smoke preset every model has seen a few batches: errors sit at chance and the figures show
# that the comparison is wired up. The `cpu` preset trains each method with the same budget.
