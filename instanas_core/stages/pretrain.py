"""Stage (a): pre-train the meta-graph with drop-path (paper §3.1 a, §3.2).

Each step draws one drop-path policy per sample: every module is dropped independently with the
epoch's rate, the at-least-one rule is kept, and dropped modules are not computed (the
meta-graph's ``subset`` execution). The rate is 0 for the first ``drop_start`` share of the
epochs and then rises linearly to ``drop_max`` (50%) at the last epoch; the loss is the task loss
(cross-entropy) only. Validation uses the all-modules path, like the original code.

``run_pretrain(cfg, run_dir)`` writes ``RUN/pretrain/`` (see :mod:`instanas_core.rundir`). Under
torchrun the meta-graph trains in DistributedDataParallel, each rank on its share of the global
batch with its own drop-path draws (:mod:`instanas_core.distributed`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import Config, PretrainConfig, config_to_dict
from ..distributed import DistContext, distributed_session, on_main, rank_seed, unwrap
from ..latency import thread_limit
from ..meta_graph import MetaGraph
from ..policy import all_ones_policy, drop_path_policy
from ..rundir import epoch_seed, restore_rng_state, save_json, seed_everything
from .common import (
    Meter,
    NonFiniteError,
    begin_stage,
    end_epoch,
    build_models,
    build_split,
    check_finite,
    infer,
    limited,
    make_loader,
    make_optimizer,
    make_schedule,
    non_finite_stop,
    open_metrics,
    progress_bar,
    steps_per_epoch,
    to_device,
)

__all__ = ["PRETRAIN_COLUMNS", "drop_rate_at", "train_one_epoch", "run_pretrain", "format_pretrain_summary"]

PRETRAIN_COLUMNS = (
    "epoch", "lr", "drop_rate", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
)


def drop_rate_at(epoch: int, epochs: int, drop_start: float = 0.5, drop_max: float = 0.5) -> float:
    """0 for the first ``floor(drop_start * epochs)`` epochs, then linear up to ``drop_max`` at the
    last epoch (§3.2: "linearly increasing the drop-path rate from the middle of pre-training and
    eventually reach to 50%")."""
    flat = int(math.floor(drop_start * epochs))
    rising = epochs - flat
    if epoch < flat or rising <= 0:
        return 0.0
    return float(drop_max * (epoch - flat + 1) / rising)


def train_one_epoch(
    graph: MetaGraph,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader,
    device: torch.device,
    drop_rate: float,
    generator: torch.Generator,
    steps: int,
    channels_last: bool = True,
    progress: bool = False,
    desc: str = "pretrain",
    dist: DistContext | None = None,
    *,
    execution: str = "subset",
) -> dict:
    """One epoch of drop-path training; returns mean loss and accuracy (over all ranks).

    ``graph`` may be wrapped in DistributedDataParallel. A non-finite loss raises
    :class:`~instanas_core.stages.common.NonFiniteError` before its step is taken.
    """
    net = unwrap(graph)
    graph.train()
    meter = Meter()
    bar = progress_bar(limited(loader, steps), steps, desc, progress)
    for step, (image, label) in enumerate(bar):
        x = to_device(image, device, channels_last)
        y = label.to(device, non_blocking=True)
        policy = drop_path_policy(net, x.shape[0], drop_rate, generator, device)  # (B, T, K)
        logits = graph(x, policy, execution)
        loss = F.cross_entropy(logits, y)
        loss_value = loss.item()
        check_finite(dist, "training", step, loss=loss_value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        meter.update(len(y), loss=loss_value, acc=(logits.argmax(1) == y).float().mean().item())
        bar.set_postfix(loss=f"{meter.mean('loss'):.3f}", acc=f"{meter.mean('acc'):.3f}", drop=f"{drop_rate:.2f}")
    meter = meter.all_reduced(dist)
    return {"loss": meter.mean("loss"), "accuracy": meter.mean("acc")}


def run_pretrain(
    cfg: Config, run_dir: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> dict:
    """Run (or resume) the pre-training stage; returns its summary (also ``summary.json``)."""
    exp, pc = cfg.experiment, cfg.pretrain
    with (
        distributed_session(exp.device) as dist,
        begin_stage(cfg, run_dir, "pretrain", resume, overwrite, dist=dist) as start,
    ):
        with thread_limit(exp.threads):
            return _pretrain(cfg, exp, pc, start.out, start.device, start.resume_state, progress and dist.is_main, dist)


def _pretrain(
    cfg: Config, exp, pc: PretrainConfig, out: Path, device, state, progress: bool, dist: DistContext
) -> dict:
    graph, _ = build_models(exp, device, seed=exp.seed)
    train_set = build_split(exp, "train", augment=exp.augment)
    val_set = build_split(exp, "val", augment=False)
    probe = make_loader(train_set, pc.batch_size, True, 0, exp, device, train=True, dist=dist)
    steps = steps_per_epoch(probe, pc.max_steps_per_epoch)
    optimizer = make_optimizer(graph.parameters(), "sgd", pc.lr, pc.weight_decay, pc.momentum, pc.nesterov)
    scheduler = make_schedule(optimizer, pc.schedule, pc.epochs, steps)
    first = 0
    if state is not None:
        graph.load_state_dict(state["meta_graph"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        first = state["epoch"] + 1
    metrics = open_metrics(dist, out / "metrics.csv", PRETRAIN_COLUMNS, first)
    # Drop-path skips modules per sample: ranks use different parameters in a step.
    model = dist.wrap(graph, find_unused_parameters=True)
    all_modules = all_ones_policy(graph)[0]  # (T, K)
    val_loader = make_loader(val_set, max(pc.batch_size, 64), False, 0, exp, device, train=False, dist=dist)
    t_start = time.time()
    for epoch in range(first, pc.epochs):
        t0 = time.time()
        # Re-seed from (seed, epoch): data order, augmentation and drop-path draws replay exactly.
        s = epoch_seed(exp.seed, "pretrain", epoch)
        seed_everything(rank_seed(s, dist.rank))
        loader = make_loader(train_set, pc.batch_size, True, s, exp, device, train=True, dist=dist)
        gen = torch.Generator().manual_seed(rank_seed(s, dist.rank))
        rate = drop_rate_at(epoch, pc.epochs, pc.drop_start, pc.drop_max)
        lr = optimizer.param_groups[0]["lr"]
        try:
            tr = train_one_epoch(
                model, optimizer, scheduler, loader, device, rate, gen, steps, exp.use_channels_last, progress,
                f"pretrain {epoch + 1}/{pc.epochs}", dist, execution=exp.execution,
            )
            dist.sync_buffers(graph)
            val = infer(
                graph, val_loader, device, ("image", "label"), fixed_policy=all_modules,
                channels_last=exp.use_channels_last, dist=dist,
            )
            check_finite(None, "validation", loss=float(val["loss"].mean()))
        except NonFiniteError as exc:
            raise non_finite_stop(exc, "pretrain", epoch, pc.epochs, out, f"pretrain.lr={pc.lr:g}") from None
        row = {
            "epoch": epoch,
            "lr": lr,
            "drop_rate": rate,
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "val_loss": float(val["loss"].mean()),
            "val_accuracy": float((val["pred"] == val["label"]).float().mean()),
            "seconds": time.time() - t0,
        }

        state = {
            "stage": "pretrain",
            "epoch": epoch,
            "epochs": pc.epochs,
            "space_hash": graph.space.space_hash(),
            "config": config_to_dict(cfg),
            "meta_graph": graph.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        if end_epoch(dist, out, metrics, row, state, epoch, pc.epochs, pc.stop_after_epoch):
            break

    def summarise() -> dict:
        rows = metrics.rows()
        last = rows[-1] if rows else {}
        summary = {
            "stage": "pretrain",
            "epochs_done": len(rows),
            "epochs": pc.epochs,
            "finished": len(rows) >= pc.epochs,
            "val_accuracy": float(last.get("val_accuracy", "nan") or "nan"),
            "train_loss": float(last.get("train_loss", "nan") or "nan"),
            "drop_rate": float(last.get("drop_rate", "nan") or "nan"),
            "seconds_this_call": time.time() - t_start,
            "dataset": exp.dataset,
            "space": graph.space.to_dict(),
        }
        save_json(out / "summary.json", summary)
        return summary

    return on_main(dist, summarise)


def format_pretrain_summary(s: dict) -> str:
    return (
        f"pretrain: {s['epochs_done']}/{s['epochs']} epochs, val accuracy (all modules) {s['val_accuracy']:.4f}, "
        f"train loss {s['train_loss']:.4f}, drop-path {s['drop_rate']:.2f}, {s['seconds_this_call']:.1f} s"
    )
