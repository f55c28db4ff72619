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
# # 00 · InstaNAS in one page, and the data
#
# **InstaNAS** (Cheng, Lin, Juan, Wei, Sun: *Instance-aware Neural Architecture Search*) searches
# for a *distribution* of architectures instead of a single one (§1, Figure 1): easy images get
# shallow, fast child networks, hard images sophisticated, slower ones. It has two parts (§3.1,
# Figure 2):
#
# * a **meta-graph** $G$, 17 cells shaped like MobileNetV2's, each with five candidate modules
#   (Figure 3: `basic`, `ir_k3_e3`, `ir_k3_e6`, `ir_k5_e3`, `ir_k5_e6`). Any choice of modules per
#   cell is a child network, about $32^{17} \approx 10^{25}$ of them (§4.1), all sharing weights (§3.2);
# * a **controller** $C$, a three-layer convolutional network that looks at each image and gives a
#   probability for every (cell, module); the image's child architecture is drawn from them (§3.3).
#
# Training has three stages (§3.1): **pre-train** the meta-graph with drop-path (§3.2), **search**
# (controller and meta-graph trained in turn, the controller by policy gradient with a reward that
# multiplies accuracy by a *dynamic*, quadratic latency reward, Eq. 1-2), then **fine-tune** the
# meta-graph under the fixed controller. Latency is read from a module-wise look-up table (§4.1,
# Figure 4), built in notebook 01.
#
# This notebook shows the data the preset trains on. The paper uses CIFAR-10/100 (Tables 1-2),
# TinyImageNet (Table 3) and ImageNet (Figure 5); so do the presets `cifar10`, `cifar100`,
# `tinyimagenet` and `imagenet`. The CPU presets use data that need no download: scikit-learn's
# handwritten digits upsampled to 32x32 RGB (`smoke`, `cpu`), and CIFAR-10 re-encoded as JPEG
# quality 75 (`cifar10-cpu`, on class-balanced subsets; its numbers are labelled "CIFAR-10 (JPEG
# q75)", never CIFAR-10).

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
n_per_class = 8  # images per class in the sample grids
seed = 0  # seeds Python, NumPy and torch, and draws the images shown

# %%
from instanas_core import book, plots

ctx = book.start("00", preset, run_dir, seed=seed, namespace=globals())

# %% [markdown]
# ## The splits
# Exactly as the training stages build them (`instanas_core.train.build_split`): fixed,
# seeded, class-balanced subsets where the preset asks for them; a data set without a test split
# of its own has one carved from its training images (see each data set's module).

# %%
splits = book.load_splits(ctx.cfg)
info, exp = splits["train"].info, ctx.cfg.experiment
for name, ds in splits.items():
    per_class = exp.train_per_class if name == "train" else exp.eval_per_class
    assert len(ds) == (per_class * info.num_classes if per_class else info.splits[name]), f"{name}: unexpected size"
ctx.table(book.dataset_rows(splits), "00_dataset_splits")

# %%
image, label = splits["train"][0]
assert tuple(image.shape) == (3, info.resolution, info.resolution) and 0 <= label < info.num_classes
print(f"{info.title}: {info.num_classes} classes at {info.resolution} px; source: {info.source}")
print(f"training augmentation (§4.2): {info.crop} crop (pad {info.pad}), flip {info.flip}, Cutout {info.cutout} px")

# %% [markdown]
# ## Sample images, one row per class

# %%
ctx.show(plots.plot_sample_grid(splits["train"], n_per_class, seed=seed, context=ctx.label), "00_sample_grid")

# %% [markdown]
# The same kind of images as the network sees them during training, after the §4.2 augmentation
# (random crop after padding, horizontal flip where it keeps the class, Cutout).

# %%
train_augmented = book.load_splits(ctx.cfg, augment=True)["train"]
ctx.show(plots.plot_sample_grid(train_augmented, n_per_class, seed=seed, transformed=True, context=ctx.label), "00_augmented_grid")

# %% [markdown]
# ## Class balance

# %%
ctx.show(plots.plot_class_balance(splits, context=ctx.label), "00_class_balance")

# %% [markdown]
# Next, notebook 01 builds the latency look-up table the search's reward reads (§4.1).
