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

import csv
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..baselines import (
    BlockDropNet,
    ConvNetAIG,
    OneshotRecord,
    blockdrop_losses,
    convnet_aig_loss,
    measure_mask_latencies,
    oneshot_search,
    pareto_front,
    shared_weight_eval_fn,
)
from ..baselines.gated import GatedMobileNetV2
from ..config import Config, ConfigError, config_from_dict
from ..distributed import DistContext, distributed_session, on_main
from ..flops import count_macs, count_params
from ..latency import thread_limit
from ..meta_graph import MetaGraph
from ..results import ResultRow, append_result
from ..rundir import RunDirError, load_checkpoint, load_json, save_json, stage_dir
from .baseline import (
    LoopSettings,
    finished_summary,
    static_result_row,
    classify,
    finish_static_network,
    fit,
    measurement_timing,
    train_static_network,
)
from .common import (
    begin_stage,
    build_models,
    build_split,
    ensure_latency_table,
    make_loader,
    make_optimizer,
    make_schedule,
    policy_bits,
    steps_per_epoch,
)

__all__ = [
    "COMPARATOR_STAGE_NAMES",
    "BLOCKDROP_COLUMNS",
    "CONVNET_AIG_COLUMNS",
    "ONESHOT_SAMPLE_COLUMNS",
    "load_pretrained_meta_graph",
    "run_blockdrop",
    "run_convnet_aig",
    "run_oneshot",
    "run_comparator",
    "check_comparator_name",
    "spread_picks",
    "format_comparator_summary",
]

COMPARATOR_STAGE_NAMES = ("blockdrop", "convnet-aig", "oneshot")
RESULT_NAMES = {"blockdrop": "BlockDrop", "convnet-aig": "ConvNet-AIG", "oneshot": "OneshotNAS"}
BLOCKDROP_COLUMNS = (
    "epoch", "lr", "train_loss", "train_accuracy", "train_reward", "train_usage",
    "val_loss", "val_accuracy", "val_usage", "seconds",
)
CONVNET_AIG_COLUMNS = (
    "epoch", "lr", "train_loss", "train_accuracy", "train_rate_loss", "train_usage",
    "val_loss", "val_accuracy", "val_usage", "seconds",
)
ONESHOT_SAMPLE_COLUMNS = ("index", "accuracy_pct", "table_latency_ms", "on_frontier", "policy")


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
    graph, _ = build_models(cfg.experiment, device, seed=cfg.experiment.seed)
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("space_hash") != graph.space.space_hash():
        raise RunDirError(f"{path} belongs to another search space than this configuration's (width, stride, data set).")
    graph.load_state_dict(ckpt["meta_graph"])
    return graph.eval(), {"pretrain_epoch": int(ckpt["epoch"]), "pretrain_epochs": int(ckpt["epochs"])}


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
    cc = cfg.comparator
    policy = list(model.policy_net.parameters())
    backbone = [p for n, p in model.named_parameters() if not n.startswith("policy_net.")]
    if cc.blockdrop_joint:
        groups = [{"params": policy}, {"params": backbone, "lr": cc.blockdrop_backbone_lr}]
    else:
        for p in backbone:
            p.requires_grad_(False)
        groups = [{"params": policy}]
    optimizer = make_optimizer(groups, "adam", cc.blockdrop_lr, 0.0)

    def train_mode(m: nn.Module) -> None:
        m.train(cc.blockdrop_joint)  # a frozen backbone keeps its BatchNorm statistics
        m.policy_net.train()

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        o = blockdrop_losses(model, x, y, cc.blockdrop_penalty, cc.blockdrop_alpha, cc.blockdrop_joint, generator=gen)
        return {"loss": o["loss"], "accuracy": o["accuracy"], "reward": o["reward"], "usage": o["usage"]}

    def forward(m: BlockDropNet, x: torch.Tensor):
        keep = m.decide(x)  # (B, S) greedy decision, as deployed
        return m(x, keep), m.executed_cells(keep)  # (B, classes), (B, T)

    settings = {
        "policy_optimizer": "adam", "policy_lr": cc.blockdrop_lr, "joint": cc.blockdrop_joint,
        "backbone_lr": cc.blockdrop_backbone_lr if cc.blockdrop_joint else None,
        "penalty": cc.blockdrop_penalty, "alpha": cc.blockdrop_alpha,
    }
    return _GatedRecipe(optimizer, step, train_mode, forward, BLOCKDROP_COLUMNS, settings)


def _convnet_aig_recipe(model: ConvNetAIG, cfg: Config) -> _GatedRecipe:
    cc = cfg.comparator
    optimizer = make_optimizer(model.parameters(), "sgd", cc.aig_lr, cc.aig_weight_decay, 0.9, nesterov=True)

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict:
        logits, gates = model(x, return_gates=True, generator=gen)  # (B, classes), (B, S)
        o = convnet_aig_loss(logits, y, gates, cc.aig_target_rate, cc.aig_rate_weight)
        acc = (logits.argmax(1) == y).float().mean().detach()
        return {"loss": o["loss"], "accuracy": acc, "rate_loss": o["rate_loss"], "usage": gates.detach().mean()}

    def forward(m: ConvNetAIG, x: torch.Tensor):
        logits, gates = m(x, execution="subset", return_gates=True)  # hard gates in eval mode
        return logits, m.executed_cells(gates)

    settings = {
        "optimizer": "sgd", "lr": cc.aig_lr, "weight_decay": cc.aig_weight_decay,
        "target_rate": cc.aig_target_rate, "rate_weight": cc.aig_rate_weight, "tau": cc.aig_tau,
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
    exp, cc = cfg.experiment, cfg.comparator
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
            graph, pre = load_pretrained_meta_graph(cfg, run_dir, device)
            torch.manual_seed(exp.seed)
            model = BlockDropNet(graph.space) if method == "blockdrop" else ConvNetAIG(graph.space, tau=cc.aig_tau)
            model.load_from_meta_graph(graph)
            space_hash = graph.space.space_hash()
            del graph
            if exp.use_channels_last:
                model = model.to(memory_format=torch.channels_last)
            model = model.to(device)
            recipe = (_blockdrop_recipe if method == "blockdrop" else _convnet_aig_recipe)(model, cfg)

            train_set = build_split(exp, "train", augment=exp.augment)
            val_set = build_split(exp, "val", augment=False)
            probe = make_loader(train_set, cc.batch_size, True, 0, exp, device, train=True, dist=dist)
            steps = steps_per_epoch(probe, cc.max_steps_per_epoch)
            scheduler = make_schedule(recipe.optimizer, cc.schedule, cc.epochs, steps)
            val_loader = make_loader(val_set, max(cc.batch_size, 64), False, 0, exp, device, train=False, dist=dist)

            def validate(m: nn.Module) -> dict:
                res = classify(m, val_loader, device, exp.use_channels_last, recipe.forward, dist)
                return {
                    "val_loss": float(res["loss"].mean()),
                    "val_accuracy": float((res["pred"] == res["label"]).float().mean()),
                    "val_usage": _usage(model, res["mask"]),
                }

            lr_setting = "comparator.blockdrop_lr" if method == "blockdrop" else "comparator.aig_lr"
            loop = LoopSettings(
                cc.epochs, cc.batch_size, cc.max_steps_per_epoch, cc.stop_after_epoch, "comparator", lr_setting
            )
            # Gated cells are skipped per sample: ranks use different parameters in a step.
            rows = fit(
                model, recipe.step, validate, recipe.optimizer, scheduler, train_set, cfg, device, out, recipe.columns,
                loop, steps, start.resume_state, {"stage": "comparator", "method": method, "space_hash": space_hash},
                recipe.train_mode, progress, method, dist, find_unused_parameters=True,
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
                    "epochs": cc.epochs,
                    "finished": len(rows) >= cc.epochs,
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
    exp, ec = cfg.experiment, cfg.evaluate
    resolution = exp.info.resolution
    test_set = build_split(exp, "test", augment=False)
    loader = make_loader(test_set, ec.batch_size, False, 0, exp, device, train=False)
    res = classify(model, loader, device, exp.use_channels_last, recipe.forward)
    masks = res["mask"]  # (N, T) bool
    n = len(masks)
    # The same seeded sample of test images as the evaluate stage times for InstaNAS.
    k = min(ec.measure_samples, n)
    latency = {"mean_ms": float("nan"), "std_ms": float("nan"), "n_images": 0, "n_distinct": 0}
    if k:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(exp.seed))[:k]
        latency = measure_mask_latencies(model, masks[idx], resolution, ec.measure_threads, measurement_timing(cfg), device)
        latency.pop("per_mask")
    latency.update({"threads": ec.measure_threads, "device": str(device)})
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
            "stage": "comparator", "method": method, "figure": "6", "folder": folder, "usage": usage,
            "distinct_masks": costs["distinct_masks"], "latency_images": latency["n_images"],
            "latency_std": "over images", "params_total": costs["params_total"], "test_n": n,
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


# ---- OneshotNAS ----------------------------------------------------------------------------------
def spread_picks(front: list[OneshotRecord], k: int) -> list[OneshotRecord]:
    """Up to ``k`` points of a front sorted by latency, evenly spread along it (both ends kept)."""
    if k <= 0 or not front:
        return []
    if k >= len(front):
        return list(front)
    idx = np.unique(np.round(np.linspace(0, len(front) - 1, k)).astype(int))
    return [front[i] for i in idx]


def _write_samples(out: Path, records: list[OneshotRecord], front: list[OneshotRecord]) -> None:
    on_front = {r.index for r in front}
    policies = torch.stack([r.policy for r in records])  # (N, T, K)
    bits = policy_bits(policies)
    np.savez_compressed(
        out / "samples.npz",
        index=np.asarray([r.index for r in records]),
        accuracy_pct=np.asarray([r.accuracy for r in records]),
        table_latency_ms=np.asarray([r.latency_ms for r in records]),
        policy=policies.to(torch.uint8).numpy(),
    )
    for name, subset in (("samples.csv", records), ("frontier.csv", front)):
        with (out / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(ONESHOT_SAMPLE_COLUMNS)
            for r in subset:
                w.writerow([r.index, f"{r.accuracy:.4f}", f"{r.latency_ms:.6f}", int(r.index in on_front), bits[r.index]])


def _load_samples(out: Path, n: int) -> list[OneshotRecord] | None:
    path = out / "samples.npz"
    if not path.is_file():
        return None
    d = np.load(path)
    if len(d["index"]) != n:
        return None
    policy = torch.from_numpy(d["policy"]).float()
    return [
        OneshotRecord(int(i), policy[j], float(a), float(l))
        for j, (i, a, l) in enumerate(zip(d["index"], d["accuracy_pct"], d["table_latency_ms"]))
    ]


# Settings that decide which architectures are sampled and how they are scored.
_SAMPLE_KEYS = ("oneshot_samples", "oneshot_bn", "oneshot_eval_batches")


def _check_samples_reusable(cfg: Config, out: Path) -> None:
    """Refuse to resume a one-shot search whose saved samples were made with other settings."""
    saved_path = out / "config.json"
    if not (out / "samples.npz").is_file() or not saved_path.is_file():
        return
    saved = config_from_dict(load_json(saved_path), source=saved_path)
    diffs = [
        f"comparator.{k}: {getattr(saved.comparator, k)!r} -> {getattr(cfg.comparator, k)!r}"
        for k in _SAMPLE_KEYS
        if getattr(saved.comparator, k) != getattr(cfg.comparator, k)
    ]
    diffs += [f"experiment.seed: {saved.experiment.seed!r} -> {cfg.experiment.seed!r}"] * (
        saved.experiment.seed != cfg.experiment.seed
    )
    if diffs:
        raise RunDirError(
            f"cannot resume {out}: its samples were made with other settings ({'; '.join(diffs)}). "
            "Use the same settings, or --overwrite to sample again."
        )


def _retrain_point(
    cfg: Config, run_dir, record: OneshotRecord, resume: bool, progress: bool, dist: DistContext | None = None
) -> dict:
    """Train one frontier architecture from scratch with the baseline trainer; append its row."""
    folder = f"comparators/oneshot/retrain-{record.index:05d}"
    with begin_stage(
        cfg, run_dir, "comparator", resume, False, out_name=folder, sections=("baseline",), dist=dist
    ) as start:
        return _train_point(cfg, run_dir, record, folder, start, progress, dist)


def _train_point(
    cfg: Config, run_dir, record: OneshotRecord, folder: str, start, progress: bool, dist: DistContext | None
) -> dict:
    """The body of :func:`_retrain_point` while its folder is held."""
    exp = cfg.experiment
    out, device = start.out, start.device
    previous = on_main(dist, lambda: finished_summary(out)) if start.resume_state is not None else None
    if previous is not None:
        return previous
    fresh, _ = build_models(exp, device, seed=exp.seed)  # the re-train stage's fresh initialisation
    child = fresh.extract_child(record.policy).train()
    space_hash = fresh.space.space_hash()
    del fresh
    bits = policy_bits(record.policy.unsqueeze(0))[0]
    rows = train_static_network(
        cfg, child, out, device, start.resume_state,
        {"stage": "oneshot-retrain", "sample_index": record.index, "space_hash": space_hash},
        progress, f"oneshot #{record.index}", dist,
    )

    def finish() -> dict:
        name = f"{RESULT_NAMES['oneshot']}-{record.index}"
        summary = {
            "name": name,
            "sample_index": record.index,
            "shared_weight_accuracy_pct": record.accuracy,
            "table_latency_ms": record.latency_ms,
            "policy": bits,
            "epochs_done": len(rows),
            "epochs": cfg.baseline.epochs,
            "finished": len(rows) >= cfg.baseline.epochs,
            "val_accuracy": float((rows[-1] if rows else {}).get("val_accuracy") or "nan"),
            "folder": folder,
        }
        if summary["finished"]:
            final = finish_static_network(cfg, child, device)
            row = static_result_row(
                cfg, name, run_dir, device, final,
                {"stage": "comparator", "method": "oneshot", "figure": "6", "folder": folder,
                 "sample_index": record.index, "shared_weight_accuracy_pct": record.accuracy,
                 "table_latency_ms": record.latency_ms, "policy": bits, "latency_std": "over timing blocks",
                 "test_n": final["test_n"]},
            )
            append_result(run_dir, row)
            summary.update({**final, "accuracy_pct": row.accuracy, "latency_kind": "measured", "result_appended": True})
        save_json(out / "summary.json", summary)
        return summary

    return on_main(dist, finish)


def _score_samples(graph, eval_fn, table, n: int, seed: int, progress: bool, dist: DistContext) -> list[OneshotRecord]:
    """:func:`oneshot_search`, its shared-weight evaluations split over ranks: rank ``r`` scores
    samples ``i`` with ``i mod N == r`` (the same sampled policies on every rank, seeded), and the
    scores are gathered, so every rank returns what one process would."""
    if not dist.enabled:
        return oneshot_search(graph, eval_fn, table, n, seed, progress)
    calls = itertools.count()

    def this_rank_only(policy_row: torch.Tensor) -> float:
        i = next(calls)
        return float(eval_fn(policy_row)) if i % dist.world_size == dist.rank else float("nan")

    records = oneshot_search(graph, this_rank_only, table, n, seed, progress)
    scores = dist.all_gather([r.accuracy for r in records])
    return [dataclasses.replace(r, accuracy=scores[r.index % dist.world_size][r.index]) for r in records]


def run_oneshot(
    cfg: Config, run_dir: str | Path, progress: bool = True, *, resume: bool = False, overwrite: bool = False
) -> dict:
    """OneshotNAS on ``RUN/pretrain``'s meta-graph into ``RUN/comparators/oneshot/``: sample and
    score ``comparator.oneshot_samples`` architectures, write ``samples.csv`` / ``frontier.csv``,
    re-train up to ``comparator.oneshot_retrain_top`` front points from scratch (``baseline``
    budget) and append one ``OneshotNAS-<sample index>`` row each. ``resume`` reuses the samples
    and continues unfinished re-trainings."""
    exp, cc, ec = cfg.experiment, cfg.comparator, cfg.evaluate
    _pretrain_checkpoint(run_dir, "the oneshot comparator")
    folder = "comparators/oneshot"
    with distributed_session(exp.device) as dist:
        if resume and not overwrite:
            on_main(dist, lambda: _check_samples_reusable(cfg, stage_dir(run_dir, folder)))
        with (
            begin_stage(
                cfg, run_dir, "comparator", resume, overwrite, out_name=folder, sections=("baseline",), dist=dist
            ) as start,
            thread_limit(exp.threads),
        ):
            out, device = start.out, start.device
            progress = progress and dist.is_main
            t_start = time.time()
            table, _ = ensure_latency_table(cfg, run_dir, device, progress, dist)
            # A one-shot architecture runs without a controller: its table latency leaves it out.
            child_table = dataclasses.replace(table, controller_ms=0.0)
            records = _load_samples(out, cc.oneshot_samples) if resume else None
            reused = records is not None
            pre: dict = {}
            if records is None:
                graph, pre = load_pretrained_meta_graph(cfg, run_dir, device)
                val_set = build_split(exp, "val", augment=False)
                loader = make_loader(val_set, ec.batch_size, False, 0, exp, device, train=False)
                eval_fn = shared_weight_eval_fn(graph, loader, device, cc.oneshot_eval_batches, cc.oneshot_bn)
                records = _score_samples(graph, eval_fn, child_table, cc.oneshot_samples, exp.seed, progress, dist)
                del graph
            front = pareto_front(records)
            if not reused:
                on_main(dist, lambda: _write_samples(out, records, front))
            search_seconds = time.time() - t_start
            picks = spread_picks(front, cc.oneshot_retrain_top)
            retrained = [_retrain_point(cfg, run_dir, r, resume, progress, dist) for r in picks]

            def finish() -> dict:
                summary = {
                    "stage": "comparator",
                    "method": "oneshot",
                    "name": RESULT_NAMES["oneshot"],
                    "dataset": exp.dataset,
                    "samples": len(records),
                    "shared_weight_bn": cc.oneshot_bn,
                    "shared_weight_split": "val",
                    "table_latency": "latency table estimate without the controller (ms)",
                    "frontier": [
                        {"index": r.index, "accuracy_pct": r.accuracy, "table_latency_ms": r.latency_ms} for r in front
                    ],
                    "retrained": retrained,
                    "finished": all(r.get("finished") for r in retrained),
                    "search_seconds": search_seconds,
                    "seconds_this_call": time.time() - t_start,
                    **pre,
                }
                save_json(out / "summary.json", summary)
                return summary

            return on_main(dist, finish)


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
