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
# # 03 · The joint search of controller and meta-graph (§3.1 b, §3.3, Eq. 1-2)
#
# The controller (three convolutional layers, fast because its latency is part of every
# inference) looks at an image and gives a probability $p$ for each (cell, module); Bernoulli
# sampling of the *encouraged* probabilities explores child architectures. It is trained by policy
# gradient with a self-critical baseline, the greedy architecture $\tilde p = [p > 0.5]$ (Eq. 1).
# The reward multiplies the task reward $R_T$ by a latency reward $R_A \in [0, 1]$ when $R_T$ is
# positive (Eq. 2). $R_A$ is **dynamic**: a quadratic reward within an interval $[L_t, U_t]$ whose
# upper bound shrinks with the epoch $t$, so the controller is asked for ever faster
# architectures, a curriculum that avoids the collapse to trivially fast ones. Controller and
# meta-graph are trained in turn; the meta-graph sees the sampled policies **shuffled** within the
# batch (policy random shuffling).
#
# After each epoch the greedy policies are scored on the *validation* split (never the test
# split): accuracy, mean table latency, reward and how many distinct architectures the controller
# uses. Every epoch's controller is kept, so that variants A-E can be picked along the trade-off
# (notebook 04). Figure 1 shows the distribution of latencies the controller assigns to test images.
#
# Parameters: `search_overrides` changes the search's settings like `instanas search --set`, e.g.
# `["epochs=5", "alpha=0.9"]`.
# `nproc` > 1 runs the stage in that many processes with `torchrun` (DistributedDataParallel; a
# subprocess, since the kernel cannot be one rank of a process group); batch sizes stay global.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
search_overrides = []  # settings of the search stage, as `instanas search --set` takes them (see above)
figure1_variant = "C"  # whose controller Figure 1 shows: a variant A-E picked from the search, or "last"
seed = 0  # seeds Python, NumPy and torch in this kernel (the stage seeds itself from the preset)
nproc = 1  # training processes: more than 1 launches the stage with torchrun (DDP; gloo on CPU, NCCL on GPU)

# %%
import math

from instanas_core import book, plots

ctx = book.start("03", preset, run_dir, seed=seed, namespace=globals())
cfg = book.stage_config(ctx.cfg, "search", search_overrides)

# %% [markdown]
# ## Search (or load the finished stage)
# The search starts from notebook 02's meta-graph (pre-trained here with the preset's settings if
# it is missing) and reads the look-up table of notebook 01 (`RUN/profile/lut.json`).

# %%
book.ensure_stage("pretrain", cfg, ctx.run_dir, check_config=False, nproc=nproc)
summary = book.ensure_stage("search", cfg, ctx.run_dir, nproc=nproc)
metrics = book.read_metrics(ctx.run_dir, "search")
assert summary["finished"] and len(metrics) == cfg.search.epochs
assert all(r["upper_bound"] > r["lower_bound"] for r in metrics), "the reward interval must stay open"
assert all(a["upper_bound"] >= b["upper_bound"] for a, b in zip(metrics, metrics[1:])), "U_t shrinks"
print(f"reference paths (table, ms): {summary['reference_latencies']}")

# %% [markdown]
# ## The dynamic reward: $U_t$, $L_t$ and the controller's mean latency
# The shaded band is the reward interval of each epoch; the blue line the mean estimated latency
# of the greedy policies on the validation split; red, their validation accuracy.

# %%
ctx.show(plots.plot_reward_bounds(metrics, context=ctx.context("estimated")), "03_reward_bounds")

# %% [markdown]
# ## Accuracy against latency, epoch by epoch
# Each point is one epoch's controller (greedy policies, validation split); the picked variants
# A-E (notebook 04) are the Pareto front's points at evenly spaced latencies, A the most accurate.

# %%
picked = book.read_variants(ctx.run_dir)
ctx.show(
    plots.plot_accuracy_vs_latency(book.search_tradeoff_points(metrics, picked["variants"]), y_label="validation accuracy (%)",
                                   x_label="mean latency per image (ms, look-up table)", context=ctx.context("estimated"),
                                   title="Search: validation accuracy vs latency per epoch"),
    "03_accuracy_vs_latency",
)

# %% [markdown]
# ## Reward, and how many architectures the controller uses
# The reward of the sampled policies (the controller's training signal), of the greedy ones
# (its self-critical baseline) and of the greedy ones on validation. Then the diversity: distinct
# architectures among the validation images, modules per image, and the entropy of the
# encouraged policy (low: a near-deterministic policy).

# %%
rewards = book.melt(metrics, {"ctrl_reward": "sampled (training)", "ctrl_greedy_reward": "greedy (training)", "val_reward": "greedy (validation)"},
                    value="reward", key="policies")
ctx.show(plots.plot_training_curves(rewards, ys=("reward",), hue="policies", labels={"reward": "mean reward (Eq. 2)"},
                                    context=ctx.context("estimated"), title="Search: reward per epoch"), "03_reward")

# %%
assert all(r["val_distinct_policies"] >= 1 for r in metrics)
ctx.show(
    plots.plot_training_curves(metrics, ys=("val_distinct_policies", "val_modules_per_sample", "ctrl_entropy"),
                               labels={"val_distinct_policies": "distinct architectures (validation)", "val_modules_per_sample": "modules per image",
                                       "ctrl_entropy": "policy entropy (nats per image)"},
                               context=ctx.context(), title="Search: architectures per epoch"),
    "03_distinct_architectures",
)

# %%
ctx.table(book.search_rows(metrics), "03_search_per_epoch", latency="both", title="Search per epoch (validation split)")

# %% [markdown]
# ## Figure 1: a distribution of architectures
# The latency of the greedy architecture the controller assigns to each **test** image (controller
# included, estimated by the table), with the in-space reference paths. The paper shows this for
# CIFAR-10: instead of one architecture, InstaNAS finds a distribution of them.

# %%
fig1 = book.greedy_latencies(cfg, ctx.run_dir, figure1_variant, "test")
assert len(fig1["latency_ms"]) > 0 and all(math.isfinite(v) for v in fig1["latency_ms"])
spread = book.check_spread(cfg, fig1["policy"], "Figure 1")  # cifar10-cpu asks for >= 3 architectures
print(f"{fig1['model']}: {len(fig1['latency_ms'])} test images, {fig1['distinct']} distinct architectures, "
      f"accuracy {100 * fig1['correct'].mean():.1f}% (meta-graph as searched, before fine-tuning)")
ctx.show(
    plots.plot_latency_distribution(fig1["latency_ms"], reference=book.reference_lines(book.load_run_table(cfg, ctx.run_dir)),
                                    context=ctx.context("estimated"),
                                    title=f"Figure 1: latency of the architecture assigned to each test image, {fig1['model']}: {spread['note']}"),
    "03_figure1_latency_distribution",
)

# %% [markdown]
# At the smoke preset the search lasts a few batches: the controller has barely moved and the
# figures show the machinery, not the paper's behaviour. The `cpu` preset searches for 12 epochs.
