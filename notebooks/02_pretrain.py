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
# # 02 · Pre-training the meta-graph with drop-path (§3.1 a, §3.2)
#
# Before a controller can judge child architectures by their accuracy, every child must already
# be a reasonable classifier: the meta-graph is a *weight-sharing* mechanism whose children,
# "without any further training", should be a good proxy for their fully trained performance
# (§3.2). The paper pre-trains it with **drop-path**: at every iteration part of the meta-graph is
# zeroed out at random and the remaining modules, one child, are trained on the task objective.
# The drop-path rate is 0 for the first half of pre-training and then rises linearly to 50%
# ("linearly increasing the drop-path rate from the middle of pre-training and eventually reach
# to 50%"); SGD with initial learning rate 0.1 on CIFAR (§4.2).
#
# Our stage (`instanas_core.stages.pretrain`) draws one drop-path policy per image, keeps at least
# one module in every cell that changes shape, and does not compute dropped modules. Validation
# runs the all-modules path, as the original code does. Its outputs: `RUN/pretrain/metrics.csv`
# (one row per epoch), `last.pt`, `summary.json`.
#
# Parameters: `pretrain_overrides` changes the stage's settings like `instanas pretrain --set`, e.g.
# `["epochs=4", "max_steps_per_epoch=5"]` (a field of the pretrain section or of the experiment).
# `nproc` > 1 runs the stage in that many processes with `torchrun` (DistributedDataParallel; a
# subprocess, since the kernel cannot be one rank of a process group); batch sizes stay global.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
pretrain_overrides = []  # settings of the pretrain stage, as `instanas pretrain --set` takes them (see above)
seed = 0  # seeds Python, NumPy and torch in this kernel (the stage seeds itself from the preset)
nproc = 1  # training processes: more than 1 launches the stage with torchrun (DDP; gloo on CPU, NCCL on GPU)

# %%
import math

from instanas_core import book, plots
from instanas_core.stages import drop_rate_at

ctx = book.start("02", preset, run_dir, seed=seed, namespace=globals())
cfg = book.stage_config(ctx.cfg, "pretrain", pretrain_overrides)

# %% [markdown]
# ## Pre-train (or load the finished stage)
# A finished `RUN/pretrain` made with the same settings is loaded; an interrupted one resumes from
# its last checkpoint.

# %%
summary = book.ensure_stage("pretrain", cfg, ctx.run_dir, nproc=nproc)
metrics = book.read_metrics(ctx.run_dir, "pretrain")
assert summary["finished"] and len(metrics) == cfg.pretrain.epochs
assert all(math.isfinite(r["train_loss"]) for r in metrics), "the loss must stay finite"

# %% [markdown]
# ## Loss and accuracy
# Training numbers are on drop-path children (the rate of each epoch), validation numbers on the
# all-modules path.

# %%
curves = book.train_val_curves(metrics)
ctx.show(
    plots.plot_training_curves(curves, ys=("loss", "accuracy"), hue="split", labels={"loss": "cross-entropy", "accuracy": "top-1 accuracy (%)"},
                               context=ctx.context(), title="Pre-training the meta-graph (§3.2): loss and accuracy"),
    "02_pretrain_curves",
)

# %% [markdown]
# ## The drop-path schedule and learning rate
# The rate the stage used in each epoch, which must be the §3.2 schedule (`drop_rate_at`).

# %%
pc = cfg.pretrain
assert all(abs(r["drop_rate"] - drop_rate_at(int(r["epoch"]), pc.epochs, pc.drop_start, pc.drop_max)) < 1e-9 for r in metrics)
assert max(r["drop_rate"] for r in metrics) == pc.drop_max, "the rate ends at drop_max"
ctx.show(
    plots.plot_training_curves(metrics, ys=("drop_rate", "lr"), labels={"drop_rate": "drop-path rate", "lr": "learning rate (epoch start)"},
                               context=ctx.context(), title=f"Drop-path schedule: 0 for {pc.drop_start:.0%} of the epochs, then linear to {pc.drop_max:.0%}"),
    "02_droppath_schedule",
)

# %%
ctx.table([{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in metrics], "02_pretrain_metrics",
          title="Pre-training per epoch")

# %% [markdown]
# At the smoke preset, a few batches of 32 images: the curves show that the stage runs and logs,
# not what pre-training reaches. Next, notebook 03 searches controller and meta-graph jointly,
# starting from this meta-graph.
