"""The comparators of Figure 6, trained from this run's pre-trained meta-graph and measured like
InstaNAS (paper §4.2, "Comparison with state-of-the-arts").

* :func:`run_blockdrop` -- BlockDrop (Wu et al., CVPR 2018): a policy network decides per image
  which cells of the MobileNetV2 path run; REINFORCE with the greedy (self-critical) baseline,
  optionally fine-tuning the backbone jointly (:func:`instanas_core.baselines.blockdrop_losses`).
* :func:`run_convnet_aig` -- ConvNet-AIG (Veit & Belongie, ECCV 2018): a gate before every
  skippable cell, straight-through Gumbel-softmax, cross-entropy plus the target-rate loss
  (:func:`instanas_core.baselines.convnet_aig_loss`).
* :func:`run_oneshot` -- OneshotNAS (Bender et al., ICML 2018), as §4.2 describes it: "sample
  10,000 models from the meta-graph and train the trade-off frontier points from scratch". The
  samples are scored with the shared weights on the *validation* split and the latency table
  (without the controller: a one-shot architecture has none), the Pareto front is kept, and up
  to ``oneshot_retrain_top`` front points, spread along the latency axis, are cut out of a
  freshly initialised meta-graph (``extract_child``) and trained from scratch with the baseline
  trainer and budget (:mod:`instanas_core.stages.baseline`).

Both gated comparators gate the MobileNetV2 path *of this run's search space* (Figure 6: "within
MobileNetV2 search space"), initialised from the pre-trained meta-graph's ``ir_k3_e6`` branches
(``load_from_meta_graph``), so they start from the same weights as InstaNAS's search. Their
latency is measured like InstaNAS's: on the same seeded sample of ``evaluate.measure_samples``
test images, every distinct executed-cell mask is cut out as a static network *with* its
decision maker (BlockDrop's policy network, ConvNet-AIG's gates) and timed at batch 1
(:func:`instanas_core.baselines.measure_mask_latencies`); mean +- std are over images.

Everything is written to ``RUN/comparators/<name>/`` with the run-folder layout of the stages
(``config.json``, ``environment.json``, ``metrics.csv``, ``last.pt``, ``summary.json``;
OneshotNAS adds ``samples.csv``, ``samples.npz``, ``frontier.csv`` and one ``retrain-NNNNN/``
folder per re-trained point), and every finished model appends a row to ``RUN/results.csv``.

Under torchrun (:mod:`instanas_core.distributed`) the gated comparators and the re-trained
OneshotNAS points train in DistributedDataParallel through the baseline trainer; the one-shot
scoring is split over ranks (sample ``i`` on rank ``i mod N``) and gathered; test evaluation,
latency timing and the files are rank 0's.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..baselines import (
    BlockDropNet,
    ConvNetAIG,
    blockdrop_losses,
    convnet_aig_loss,
    measure_mask_latencies,
)
from ..baselines.gated import GatedMobileNetV2
from ..config import Config, ConfigError
from ..distributed import distributed_session, on_main
from ..flops import count_macs, count_params
from ..latency import thread_limit
from ..meta_graph import MetaGraph
from ..results import ResultRow, append_result
from ..rundir import RunDirError, load_checkpoint, save_json, stage_dir
from .baseline import (
    LoopSettings,
    finished_summary,
    classify,
    fit,
    measurement_timing,
)
from ..train import (
    begin_stage,
    build_models,
    build_split,
    make_loader,
    make_optimizer,
    make_schedule,
    training_data,
)

__all__ = [
    "COMPARATOR_STAGE_NAMES",
    "BLOCKDROP_COLUMNS",
    "CONVNET_AIG_COLUMNS",
    "load_pretrained_meta_graph",
    "run_blockdrop",
    "run_convnet_aig",
    "run_comparator",
    "check_comparator_name",
    "format_comparator_summary",
]

COMPARATOR_STAGE_NAMES = ("blockdrop", "convnet-aig", "oneshot")
RESULT_NAMES = {"blockdrop": "BlockDrop", "convnet-aig": "ConvNet-AIG", "oneshot": "OneshotNAS"}
BLOCKDROP_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "train_reward",
    "train_usage",
    "val_loss",
    "val_accuracy",
    "val_usage",
    "seconds",
)
CONVNET_AIG_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "train_rate_loss",
    "train_usage",
    "val_loss",
    "val_accuracy",
    "val_usage",
    "seconds",
)


# ---- the pre-trained meta-graph ----------------------------------------------------------------
def _pretrain_checkpoint(run_dir: str | Path, method: str) -> Path:
    path = stage_dir(run_dir, "pretrain") / "last.pt"
    if not path.is_file():
        raise RunDirError(
            f"{path} does not exist: {method} starts from this run's pre-trained meta-graph. "
            f"Run `instanas pretrain --preset P --run-dir {run_dir}` first (same preset and --set values)."
        )
    return path


def load_pretrained_meta_graph(cfg: Config, run_dir: str | Path, device: torch.device) -> tuple[MetaGraph, dict]:
    """The meta-graph of ``RUN/pretrain/last.pt`` (eval mode) and ``{pretrain_epoch, pretrain_epochs}``."""
    path = _pretrain_checkpoint(run_dir, "this comparator")
    meta_graph, _ = build_models(cfg.experiment, device, seed=cfg.experiment.seed)
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("space_hash") != meta_graph.space.space_hash():
        raise RunDirError(
            f"{path} belongs to another search space than this configuration's (width, stride, data set)."
        )
    meta_graph.load_state_dict(ckpt["meta_graph"])
    return meta_graph.eval(), {"pretrain_epoch": int(ckpt["epoch"]), "pretrain_epochs": int(ckpt["epochs"])}


# ---- gated comparators: BlockDrop and ConvNet-AIG ----------------------------------------------
@dataclasses.dataclass(frozen=True)
class _GatedRecipe:
    """What differs between the two gated comparators: optimiser, step, modes, inference."""

    optimizer: torch.optim.Optimizer
    step: Callable[[torch.Tensor, torch.Tensor, torch.Generator], dict]
    train_mode: Callable[[nn.Module], None]
    forward: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    columns: tuple[str, ...]
    settings: dict


def _blockdrop_recipe(model: BlockDropNet, cfg: Config) -> _GatedRecipe:
    comparator_cfg = cfg.comparator
    policy = list(model.policy_net.parameters())
    backbone = [p for n, p in model.named_parameters() if not n.startswith("policy_net.")]
    if comparator_cfg.blockdrop_joint:
        groups = [{"params": policy}, {"params": backbone, "lr": comparator_cfg.blockdrop_backbone_lr}]
    else:
        for p in backbone:
            p.requires_grad_(False)
        groups = [{"params": policy}]
    optimizer = make_optimizer(groups, "adam", comparator_cfg.blockdrop_lr, 0.0)

    def train_mode(m: nn.Module) -> None:
        m.train(comparator_cfg.blockdrop_joint)  # a frozen backbone keeps its BatchNorm statistics
        m.policy_net.train()

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        o = blockdrop_losses(
            model,
            x,
            y,
            comparator_cfg.blockdrop_penalty,
            comparator_cfg.blockdrop_alpha,
            comparator_cfg.blockdrop_joint,
            generator=gen,
        )
        return {"loss": o["loss"], "accuracy": o["accuracy"], "reward": o["reward"], "usage": o["usage"]}

    def forward(m: BlockDropNet, x: torch.Tensor):
        keep = m.decide(x)  # (B, S) greedy decision, as deployed
        return m(x, keep), m.executed_cells(keep)  # (B, classes), (B, T)

    settings = {
        "policy_optimizer": "adam",
        "policy_lr": comparator_cfg.blockdrop_lr,
        "joint": comparator_cfg.blockdrop_joint,
        "backbone_lr": comparator_cfg.blockdrop_backbone_lr if comparator_cfg.blockdrop_joint else None,
        "penalty": comparator_cfg.blockdrop_penalty,
        "alpha": comparator_cfg.blockdrop_alpha,
    }
    return _GatedRecipe(optimizer, step, train_mode, forward, BLOCKDROP_COLUMNS, settings)


def _convnet_aig_recipe(model: ConvNetAIG, cfg: Config) -> _GatedRecipe:
    comparator_cfg = cfg.comparator
    optimizer = make_optimizer(
        model.parameters(), "sgd", comparator_cfg.aig_lr, comparator_cfg.aig_weight_decay, 0.9, nesterov=True
    )

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        logits, gates = model(x, return_gates=True, generator=gen)  # (B, classes), (B, S)
        o = convnet_aig_loss(logits, y, gates, comparator_cfg.aig_target_rate, comparator_cfg.aig_rate_weight)
        acc = (logits.argmax(1) == y).float().mean().detach()
        return {"loss": o["loss"], "accuracy": acc, "rate_loss": o["rate_loss"], "usage": gates.detach().mean()}

    def forward(m: ConvNetAIG, x: torch.Tensor):
        logits, gates = m(x, execution="subset", return_gates=True)  # hard gates in eval mode
        return logits, m.executed_cells(gates)

    settings = {
        "optimizer": "sgd",
        "lr": comparator_cfg.aig_lr,
        "weight_decay": comparator_cfg.aig_weight_decay,
        "target_rate": comparator_cfg.aig_target_rate,
        "rate_weight": comparator_cfg.aig_rate_weight,
        "tau": comparator_cfg.aig_tau,
    }
    return _GatedRecipe(optimizer, step, nn.Module.train, forward, CONVNET_AIG_COLUMNS, settings)


def _usage(model: GatedMobileNetV2, masks: torch.Tensor) -> float:
    """Share of the skippable cells executed, over images. masks: (N, T) bool."""
    return float(masks[:, list(model.skippable)].float().mean())


def _gated_costs(model: GatedMobileNetV2, masks: torch.Tensor, resolution: int, device) -> dict:
    """Parameters and MACs of each image's static network (decision maker included), averaged
    over images; every distinct mask is extracted once."""
    unique, inverse = torch.unique(masks.to(torch.int8), dim=0, return_inverse=True)
    params, macs = [], []
    for row in unique:
        static = model.extract_static(row)
        params.append(count_params(static))
        macs.append(count_macs(static, (1, 3, resolution, resolution), device))
    per_image_params = np.asarray(params, float)[inverse.numpy()]
    per_image_macs = np.asarray(macs, float)[inverse.numpy()]
    return {
        "params": float(per_image_params.mean()),
        "macs": float(per_image_macs.mean()),
        "macs_std": float(per_image_macs.std()),
        "params_total": count_params(model),
        "distinct_masks": int(len(unique)),
    }


def _run_gated(cfg: Config, run_dir, method: str, progress: bool, resume: bool, overwrite: bool) -> dict:
    exp, comparator_cfg = cfg.experiment, cfg.comparator
    _pretrain_checkpoint(run_dir, f"the {method} comparator")  # before any folder is written
    folder = f"comparators/{method}"
    with (
        distributed_session(exp.device) as dist,
        begin_stage(cfg, run_dir, "comparator", resume, overwrite, out_name=folder, dist=dist) as start,
    ):
        out, device = start.out, start.device
        previous = on_main(dist, lambda: finished_summary(out)) if start.resume_state is not None else None
        if previous is not None:
            return previous
        progress = progress and dist.is_main
        with thread_limit(exp.threads):
            t_start = time.time()
            meta_graph, pre = load_pretrained_meta_graph(cfg, run_dir, device)
            torch.manual_seed(exp.seed)
            model = (
                BlockDropNet(meta_graph.space)
                if method == "blockdrop"
                else ConvNetAIG(meta_graph.space, tau=comparator_cfg.aig_tau)
            )
            model.load_from_meta_graph(meta_graph)
            space_hash = meta_graph.space.space_hash()
            del meta_graph
            if exp.use_channels_last:
                model = model.to(memory_format=torch.channels_last)
            model = model.to(device)
            recipe = (_blockdrop_recipe if method == "blockdrop" else _convnet_aig_recipe)(model, cfg)

            train_set, val_set, val_loader, steps = training_data(
                exp, comparator_cfg.batch_size, comparator_cfg.max_steps_per_epoch, device, dist
            )
            scheduler = make_schedule(recipe.optimizer, comparator_cfg.schedule, comparator_cfg.epochs, steps)

            def validate(m: nn.Module) -> dict:
                res = classify(m, val_loader, device, exp.use_channels_last, recipe.forward, dist)
                return {
                    "val_loss": float(res["loss"].mean()),
                    "val_accuracy": float((res["pred"] == res["label"]).float().mean()),
                    "val_usage": _usage(model, res["mask"]),
                }

            lr_setting = "comparator.blockdrop_lr" if method == "blockdrop" else "comparator.aig_lr"
            loop = LoopSettings(
                comparator_cfg.epochs,
                comparator_cfg.batch_size,
                comparator_cfg.max_steps_per_epoch,
                comparator_cfg.stop_after_epoch,
                "comparator",
                lr_setting,
            )
            # Gated cells are skipped per sample: ranks use different parameters in a step.
            rows = fit(
                model,
                recipe.step,
                validate,
                recipe.optimizer,
                scheduler,
                train_set,
                cfg,
                device,
                out,
                recipe.columns,
                loop,
                steps,
                start.resume_state,
                {"stage": "comparator", "method": method, "space_hash": space_hash},
                recipe.train_mode,
                progress,
                method,
                dist,
                find_unused_parameters=True,
            )

            def finish() -> dict:
                last = rows[-1] if rows else {}
                summary = {
                    "stage": "comparator",
                    "method": method,
                    "name": RESULT_NAMES[method],
                    "dataset": exp.dataset,
                    "space": "the MobileNetV2 path (every cell ir_k3_e6) of this run's search space, "
                    f"width_mult {exp.width_mult:g}; {model.num_skippable} of {model.num_cells} cells skippable",
                    "initialised_from": f"RUN/pretrain/last.pt (epoch {pre['pretrain_epoch'] + 1}/{pre['pretrain_epochs']})",
                    "settings": recipe.settings,
                    "epochs_done": len(rows),
                    "epochs": comparator_cfg.epochs,
                    "finished": len(rows) >= comparator_cfg.epochs,
                    "val_accuracy": float(last.get("val_accuracy") or "nan"),
                    "val_usage": float(last.get("val_usage") or "nan"),
                }
                if summary["finished"]:
                    summary.update(_finish_gated(cfg, run_dir, method, model, recipe, device, folder))
                summary["seconds_this_call"] = time.time() - t_start
                save_json(out / "summary.json", summary)
                return summary

            # Test evaluation, latency timing and the results row: rank 0 alone.
            return on_main(dist, finish)


def _finish_gated(cfg: Config, run_dir, method: str, model, recipe: _GatedRecipe, device, folder: str) -> dict:
    """Test accuracy, usage, costs and measured latency of a trained gated comparator; appends
    its results row."""
    exp, evaluate_cfg = cfg.experiment, cfg.evaluate
    resolution = exp.info.resolution
    test_set = build_split(exp, "test", augment=False)
    loader = make_loader(test_set, evaluate_cfg.batch_size, False, 0, exp, device, train=False)
    res = classify(model, loader, device, exp.use_channels_last, recipe.forward)
    masks = res["mask"]  # (N, T) bool
    n = len(masks)
    # The same seeded sample of test images as the evaluate stage times for InstaNAS.
    k = min(evaluate_cfg.measure_samples, n)
    latency = {"mean_ms": float("nan"), "std_ms": float("nan"), "n_images": 0, "n_distinct": 0}
    if k:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(exp.seed))[:k]
        latency = measure_mask_latencies(
            model, masks[idx], resolution, evaluate_cfg.measure_threads, measurement_timing(cfg), device
        )
        latency.pop("per_mask")
    latency.update({"threads": evaluate_cfg.measure_threads, "device": str(device)})
    costs = _gated_costs(model, masks, resolution, device)
    accuracy = float((res["pred"] == res["label"]).float().mean())
    usage = _usage(model, masks)
    measured = bool(k)
    row = ResultRow(
        name=RESULT_NAMES[method],
        dataset=exp.dataset,
        preset=cfg.preset,
        seed=exp.seed,
        accuracy=100.0 * accuracy,
        latency_mean_ms=latency["mean_ms"] if measured else None,
        latency_std_ms=latency["std_ms"] if measured else None,
        latency_kind="measured" if measured else None,
        params=int(round(costs["params"])),
        flops=int(round(costs["macs"])),
        device=str(device),
        extra={
            "stage": "comparator",
            "method": method,
            "figure": "6",
            "folder": folder,
            "usage": usage,
            "distinct_masks": costs["distinct_masks"],
            "latency_images": latency["n_images"],
            "latency_std": "over images",
            "params_total": costs["params_total"],
            "test_n": n,
            "decision_maker_included": True,
        },
    )
    append_result(run_dir, row)
    return {
        "split": "test",
        "test_accuracy": accuracy,
        "test_n": n,
        "accuracy_pct": row.accuracy,
        "usage": usage,
        **costs,
        "latency_ms": latency,
        "latency_kind": "measured" if measured else None,
        "latency_std_over": "images (each distinct executed mask timed once, decision maker included)",
        "result_appended": True,
    }


def run_blockdrop(
    cfg: Config, run_dir: str | Path, progress: bool = True, *, resume: bool = False, overwrite: bool = False
) -> dict:
    """Train BlockDrop from ``RUN/pretrain``'s meta-graph into ``RUN/comparators/blockdrop/``,
    test it, time it and append its ``BlockDrop`` row to ``RUN/results.csv``; returns the summary.
    ``resume`` continues from ``last.pt`` (a finished run returns its saved summary)."""
    return _run_gated(cfg, run_dir, "blockdrop", progress, resume, overwrite)


def run_convnet_aig(
    cfg: Config, run_dir: str | Path, progress: bool = True, *, resume: bool = False, overwrite: bool = False
) -> dict:
    """Train ConvNet-AIG (target rate ``comparator.aig_target_rate``) from ``RUN/pretrain``'s
    meta-graph into ``RUN/comparators/convnet-aig/``, test it, time it and append its
    ``ConvNet-AIG`` row to ``RUN/results.csv``; returns the summary."""
    return _run_gated(cfg, run_dir, "convnet-aig", progress, resume, overwrite)


# ---- by name -------------------------------------------------------------------------------------
def run_comparator(
    cfg: Config,
    run_dir: str | Path,
    name: str,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Run comparator ``name`` (``blockdrop``, ``convnet-aig`` or ``oneshot``)."""
    check_comparator_name(name)
    from .oneshot import run_oneshot  # it builds on this module's pre-trained meta-graph loader

    runners = {"blockdrop": run_blockdrop, "convnet-aig": run_convnet_aig, "oneshot": run_oneshot}
    return runners[name](cfg, run_dir, progress, resume=resume, overwrite=overwrite)


def check_comparator_name(name: str) -> None:
    """Refuse an unknown comparator name with the list of known ones."""
    if name not in COMPARATOR_STAGE_NAMES:
        raise ConfigError(f"unknown comparator {name!r}; comparators: {', '.join(COMPARATOR_STAGE_NAMES)}.")


def format_comparator_summary(s: dict) -> str:
    if s["method"] == "oneshot":
        parts = [f"oneshot: {s['samples']} samples, {len(s['frontier'])} on the accuracy/latency front"]
        for r in s["retrained"]:
            if r.get("result_appended"):
                lat = r["latency_ms"]
                parts.append(
                    f"  {r['name']}: test accuracy {r['test_accuracy']:.4f}, latency {lat['mean_ms']:.3f} +- "
                    f"{lat['std_ms']:.3f} ms, {r['macs'] / 1e6:.2f} M MACs (shared-weight val {r['shared_weight_accuracy_pct']:.1f}%)"
                )
            else:
                parts.append(f"  {r['name']}: {r['epochs_done']}/{r['epochs']} epochs (continue with --resume)")
        return "\n".join(parts)
    head = (
        f"{s['method']}: {s['epochs_done']}/{s['epochs']} epochs, val accuracy {s['val_accuracy']:.4f}, "
        f"val usage {s['val_usage']:.2f}"
    )
    if not s.get("result_appended"):
        return head + " (stopped early: no test result yet; continue with --resume)"
    lat = s["latency_ms"]
    return (
        f"{head}; test accuracy {s['test_accuracy']:.4f}, usage {s['usage']:.2f}, {s['macs'] / 1e6:.2f} M MACs, "
        f"latency {lat['mean_ms']:.3f} +- {lat['std_ms']:.3f} ms over {lat['n_images']} images "
        f"({lat['n_distinct']} distinct paths); row appended to results.csv"
    )
