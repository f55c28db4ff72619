"""Stage (c): fine-tune, or re-train from scratch, the meta-graph under a picked controller
(paper §3.1 c, §4.2).

The controller of the picked variant (A-E, see :mod:`instanas_core.stages.variants`) is fixed;
each training image is routed through its greedy policy (``p > 0.5``, what is deployed), and the
meta-graph trains on the task loss. ``mode="finetune"`` continues from the search's meta-graph
(§3.1 c); ``mode="retrain"`` starts from fresh weights, as the paper did for its reported numbers
("the meta-graph needs to re-train from scratch with respect to the picked policy ... Adam
optimizer with learning rate 0.01 and decays with cosine annealing", §4.2).

``run_finetune(cfg, run_dir)`` writes ``RUN/<out_dir>/`` (``finetune`` by default). Under torchrun
the meta-graph trains in DistributedDataParallel (:mod:`instanas_core.distributed`); the fixed
controller needs no synchronisation. The search checkpoint it starts from, and its own
checkpoints, carry the latency table's SHA-256 (``lut_hash``): once ``RUN/profile/lut.json``
has changed, neither is used.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import Config, config_to_dict
from ..controller import Controller
from ..distributed import DistContext, distributed_session, on_main, rank_seed, unwrap
from ..latency import LatencyTable, thread_limit
from ..meta_graph import MetaGraph
from ..policy import greedy_policy
from ..rundir import (
    RunDirError,
    epoch_seed,
    load_checkpoint,
    restore_rng_state,
    save_json,
    seed_everything,
    stage_dir,
)
from .common import (
    Meter,
    NonFiniteError,
    begin_stage,
    end_epoch,
    build_models,
    build_split,
    check_finite,
    check_latency_table_hash,
    check_space_hash,
    ensure_latency_table,
    infer,
    latency_table_hash,
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
from .variants import resolve_variant

__all__ = ["FINETUNE_COLUMNS", "train_routed_epoch", "run_finetune", "format_finetune_summary"]

FINETUNE_COLUMNS = (
    "epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "mean_latency_ms",
    "val_distinct_policies", "seconds",
)


def train_routed_epoch(
    graph: MetaGraph,
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader,
    device: torch.device,
    table: LatencyTable,
    steps: int,
    channels_last: bool = True,
    progress: bool = False,
    desc: str = "finetune",
    dist: DistContext | None = None,
    *,
    execution: str = "subset",
) -> dict:
    """One epoch of the meta-graph (possibly in DDP) on the fixed controller's greedy policies;
    statistics over all ranks. A non-finite loss raises
    :class:`~instanas_core.stages.common.NonFiniteError` before its step."""
    net, ctrl = unwrap(graph), unwrap(controller)
    ctrl.eval()
    graph.train()
    meter = Meter()
    bar = progress_bar(limited(loader, steps), steps, desc, progress)
    for step, (image, label) in enumerate(bar):
        x = to_device(image, device, channels_last)
        y = label.to(device, non_blocking=True)
        with torch.no_grad():
            policy = greedy_policy(ctrl(x), net)  # (B, T, K)
        logits = graph(x, policy, execution)
        loss = F.cross_entropy(logits, y)
        loss_value = loss.item()
        check_finite(dist, "training", step, loss=loss_value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        meter.update(
            len(y), loss=loss_value, acc=(logits.argmax(1) == y).float().mean().item(),
            latency=table.estimate(policy).mean().item(),
        )
        bar.set_postfix(loss=f"{meter.mean('loss'):.3f}", acc=f"{meter.mean('acc'):.3f}", lat=f"{meter.mean('latency'):.3f}")
    meter = meter.all_reduced(dist)
    return {"loss": meter.mean("loss"), "accuracy": meter.mean("acc")}


def run_finetune(
    cfg: Config, run_dir: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> dict:
    """Run (or resume) fine-tuning / re-training of the picked variant; returns the summary."""
    exp, fc = cfg.experiment, cfg.finetune
    search_dir = stage_dir(run_dir, "search")
    if not (search_dir / "metrics.csv").is_file():
        raise RunDirError(f"fine-tuning needs a search in {search_dir}: run `instanas search` first.")
    with distributed_session(exp.device) as dist:
        # resolve_variant may write search/variants.json: rank 0 alone, the others read its answer.
        picked = on_main(dist, lambda: resolve_variant(search_dir, fc.variant))
        with (
            begin_stage(cfg, run_dir, "finetune", resume, overwrite, out_name=fc.out_dir, dist=dist) as start,
            thread_limit(exp.threads),
        ):
            progress = progress and dist.is_main
            table, lut_path = ensure_latency_table(cfg, run_dir, start.device, progress, dist)
            return _finetune(
                cfg, start.out, start.device, table, lut_path, search_dir, picked, start.resume_state, progress, dist
            )


def _finetune(
    cfg: Config, out: Path, device, table, lut_path: Path, search_dir: Path, picked: dict, state, progress: bool,
    dist: DistContext,
) -> dict:
    exp, fc = cfg.experiment, cfg.finetune
    graph, controller = build_models(exp, device, seed=exp.seed)
    lut_hash = latency_table_hash(lut_path)
    ckpt = load_checkpoint(search_dir / picked["checkpoint"], map_location=device)
    if ckpt.get("space_hash") != graph.space.space_hash():
        raise RunDirError(f"{picked['checkpoint']} belongs to another search space than this run's.")
    check_latency_table_hash(ckpt, lut_path, f"the search checkpoint {search_dir / picked['checkpoint']}")
    controller.load_state_dict(ckpt["controller"])
    graph_source = "fresh initialisation (re-train)"
    if fc.mode == "finetune":
        if "meta_graph" in ckpt:
            graph.load_state_dict(ckpt["meta_graph"])
            graph_source = f"search epoch {picked['epoch']}"
        else:
            graph.load_state_dict(load_checkpoint(search_dir / "last.pt", map_location=device)["meta_graph"])
            graph_source = "search last.pt (the picked epoch's meta-graph was not kept)"
    for p in controller.parameters():
        p.requires_grad_(False)

    train_set = build_split(exp, "train", augment=exp.augment)
    val_set = build_split(exp, "val", augment=False)
    probe = make_loader(train_set, fc.batch_size, True, 0, exp, device, train=True, dist=dist)
    steps = steps_per_epoch(probe, fc.max_steps_per_epoch)
    optimizer = make_optimizer(
        graph.parameters(), fc.resolved_optimizer, fc.resolved_lr, fc.resolved_weight_decay, fc.momentum, nesterov=True
    )
    scheduler = make_schedule(optimizer, fc.schedule, fc.epochs, steps)
    first = 0
    if state is not None:
        check_space_hash(state, graph.space.space_hash(), f"cannot resume {fc.out_dir}: {out / 'last.pt'}")
        check_latency_table_hash(state, lut_path, f"cannot resume {fc.out_dir}: {out / 'last.pt'}")
        graph.load_state_dict(state["meta_graph"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        first = state["epoch"] + 1
    metrics = open_metrics(dist, out / "metrics.csv", FINETUNE_COLUMNS, first)
    # Routing skips the modules no sample of a rank chose: ranks use different parameters.
    model = dist.wrap(graph, find_unused_parameters=True)
    val_loader = make_loader(val_set, max(fc.batch_size, 64), False, 0, exp, device, train=False, dist=dist)
    lr_hint = f"finetune.lr={fc.resolved_lr:g} with {fc.resolved_optimizer}"
    t_start = time.time()
    for epoch in range(first, fc.epochs):
        t0 = time.time()
        s = epoch_seed(exp.seed, "finetune", epoch)
        seed_everything(rank_seed(s, dist.rank))
        loader = make_loader(train_set, fc.batch_size, True, s, exp, device, train=True, dist=dist)
        lr = optimizer.param_groups[0]["lr"]
        try:
            tr = train_routed_epoch(
                model, controller, optimizer, scheduler, loader, device, table, steps, exp.use_channels_last, progress,
                f"{fc.out_dir} {epoch + 1}/{fc.epochs}", dist, execution=exp.execution,
            )
            dist.sync_buffers(graph)
            val = infer(
                graph, val_loader, device, ("image", "label"), controller=controller,
                channels_last=exp.use_channels_last, dist=dist,
            )
            check_finite(None, "validation", loss=float(val["loss"].mean()))
        except NonFiniteError as exc:
            raise non_finite_stop(exc, fc.out_dir, epoch, fc.epochs, out, lr_hint) from None
        flat = val["policy"].reshape(len(val["label"]), -1)
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "val_loss": float(val["loss"].mean()),
            "val_accuracy": float((val["pred"] == val["label"]).float().mean()),
            "mean_latency_ms": float(table.estimate(val["policy"].float()).mean()),
            "val_distinct_policies": int(torch.unique(flat, dim=0).shape[0]),
            "seconds": time.time() - t0,
        }

        state = {
            "stage": "finetune",
            "epoch": epoch,
            "epochs": fc.epochs,
            "space_hash": graph.space.space_hash(),
            "lut_hash": lut_hash,
            "config": config_to_dict(cfg),
            "variant": fc.variant,
            "search_checkpoint": picked["checkpoint"],
            "meta_graph": graph.state_dict(),
            "controller": controller.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        if end_epoch(dist, out, metrics, row, state, epoch, fc.epochs, fc.stop_after_epoch):
            break

    def summarise() -> dict:
        rows = metrics.rows()
        last = rows[-1] if rows else {}
        summary = {
            "stage": "finetune",
            "mode": fc.mode,
            "variant": fc.variant,
            "picked": picked,
            "graph_source": graph_source,
            "optimizer": fc.resolved_optimizer,
            "lr": fc.resolved_lr,
            "epochs_done": len(rows),
            "epochs": fc.epochs,
            "finished": len(rows) >= fc.epochs,
            "val_accuracy": float(last.get("val_accuracy") or "nan"),
            "mean_latency_ms": float(last.get("mean_latency_ms") or "nan"),
            "seconds_this_call": time.time() - t_start,
        }
        save_json(out / "summary.json", summary)
        return summary

    return on_main(dist, summarise)


def format_finetune_summary(s: dict) -> str:
    return (
        f"{s['mode']}: variant {s['variant']} (search epoch {s['picked']['epoch']}), {s['epochs_done']}/{s['epochs']} "
        f"epochs, val accuracy {s['val_accuracy']:.4f}, mean latency {s['mean_latency_ms']:.3f} ms (table), "
        f"{s['optimizer']} lr {s['lr']:g}, {s['seconds_this_call']:.1f} s"
    )
