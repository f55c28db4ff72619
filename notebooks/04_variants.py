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
# # 04 · Variants A-E: pick, fine-tune, evaluate (§3.1 c, §4.2)
#
# "All five InstaNAS models are all obtained within a single search" (Table 1): after the joint
# training, "some controllers are picked by human preference by considering the accuracy and
# latency trade-off", and since the accuracy measured during the search "can only consider as a
# reference value, the meta-graph needs to re-train from scratch with respect to the picked
# policy" (Adam, lr 0.01, cosine annealing; §4.2). Stage (c) of §3.1 instead *fine-tunes* the
# meta-graph under the fixed controller.
#
# Here the pick is reproducible: `pick_variants` keeps the Pareto front of the search's epochs on
# **validation** accuracy against mean table latency, A its most accurate end, E its fastest, B-D
# in between. Each variant's controller is then fixed and the meta-graph trained on its greedy
# policies (`RUN/finetune-<L>`: the preset's `finetune.mode`, *retrain* as the paper for the paper
# presets, *finetune* for the CPU presets), and evaluated once on the **test** split
# (`RUN/evaluate-<L>`: accuracy, per-image latency estimated and, on a sample, measured).
#
# Parameters: `finetune_overrides` changes the fine-tuning settings like `instanas finetune --set`, e.g.
# `["epochs=3", "mode=retrain"]`.

# %% tags=["parameters"]
preset = "smoke"  # a preset of instanas_core.presets: smoke, cpu, cifar10-cpu or a paper preset
run_dir = "runs/book-smoke"  # the run folder: figures/, tables/ and every stage's artifacts
variants = []  # letters to train and evaluate, e.g. ["A", "C", "E"]; []: the preset's default (smoke: C and E; others: A-E)
finetune_overrides = []  # settings of the finetune stage, as `instanas finetune --set` takes them (see above)
seed = 0  # seeds Python, NumPy and torch in this kernel (the stages seed themselves from the preset)

# %%
from instanas_core import book, plots

ctx = book.start("04", preset, run_dir, seed=seed, namespace=globals())
letters = book.book_variants(preset, variants)
print(f"variants: {', '.join(letters)}; training: {book.stage_config(ctx.cfg, 'finetune', finetune_overrides).finetune.mode}")

# %% [markdown]
# ## The picks (validation split)

# %%
book.ensure_pretrain_and_search(ctx.cfg, ctx.run_dir)
picked = book.read_variants(ctx.run_dir)
assert set(letters) <= set(picked["variants"]) and picked["front"], "every variant comes from the search's front"
ctx.table(book.variant_pick_rows(picked), "04_variant_picks", latency="estimated",
          title=f"Variants picked from the search ({picked['distinct_epochs']} distinct epochs; rule: {picked['rule']})")

# %% [markdown]
# ## Fine-tune (or re-train) and evaluate each variant

# %%
results = [book.ensure_variant(ctx.cfg, ctx.run_dir, letter, finetune_overrides) for letter in letters]
assert all(r["finetune"]["finished"] and 0.0 <= r["evaluate"]["accuracy"] <= 1.0 for r in results)
assert all(r["evaluate"]["split"] == "test" for r in results)

# %%
reference = book.reference_lines(book.load_run_table(ctx.cfg, ctx.run_dir))["MobileNetV2 path (every cell ir_k3_e6)"]
ctx.table(book.variant_rows(results, reference), "04_variants", latency="both",
          title="InstaNAS variants on the test split (latency per image, batch 1, controller included)")

# %% [markdown]
# ## The variants against the search's trade-off
# Grey: every search epoch on the validation split (meta-graph as searched); colour: the variants
# after training, on the test split.

# %%
points = book.search_tradeoff_points(book.read_metrics(ctx.run_dir, "search")) + book.variant_points(results)
ctx.show(plots.plot_accuracy_vs_latency(points, x_label="mean latency per image (ms, look-up table)", context=ctx.context("estimated"),
                                        title="Variants A-E: accuracy vs latency (search epochs on validation, trained variants on test)"),
         "04_variants_tradeoff")

# %% [markdown]
# Every variant's evaluation also leaves per-image records (`RUN/evaluate-<L>/records.csv` and
# `records.npz`: label, prediction, estimated and measured latency, policy, probabilities), which
# notebooks 08 and 09 read. At the smoke preset the search is too short for the picks to differ
# much (several letters may share an epoch; `variants.json` says so).
