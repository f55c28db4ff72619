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

from ..config import Config, config_to_dict
from ..controller import Controller
from ..distributed import DistContext, distributed_session, on_main, unwrap
from ..latency import LatencyTable, thread_limit
from ..policy import greedy_policy
from ..rundir import RunDirError, load_checkpoint, save_json, stage_dir
from ..train import (
    EpochLoop,
    EpochResult,
    StepFn,
    begin_stage,
    build_models,
    check_finite,
    check_latency_table_hash,
    check_space_hash,
    ensure_latency_table,
    infer,
    latency_table_hash,
    make_optimizer,
    make_schedule,
    open_metrics,
    pass_inputs,
    resume_training,
    policy_step,
    run_epochs,
    run_pass,
    training_data,
)
from .variants import resolve_variant

__all__ = ["FINETUNE_COLUMNS", "routed_step", "run_finetune", "format_finetune_summary"]

FINETUNE_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "mean_latency_ms",
    "val_distinct_policies",
    "seconds",
)


def routed_step(
    model,
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    scheduler,
    table: LatencyTable,
    dist: DistContext | None = None,
    execution: str = "subset",
) -> StepFn:
    """The step of fine-tuning or re-training (§3.1 c, §4.2) for
    :func:`~instanas_core.train.run_pass`: each image is routed through the fixed controller's
    greedy policy (what is deployed). ``model`` is the meta-graph, possibly in DDP; the caller sets
    train mode on it and eval mode on the controller. A non-finite loss raises before its update."""
    meta_graph, ctrl = unwrap(model), unwrap(controller)

    def policies(x: torch.Tensor) -> torch.Tensor:
        # The fixed controller's greedy decision.
        with torch.no_grad():
            return greedy_policy(ctrl(x), meta_graph)  # (B, T, K)

    return policy_step(model, policies, optimizer, scheduler, table, dist, execution)


def run_finetune(
    cfg: Config, run_dir: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> dict:
    """Run (or resume) fine-tuning / re-training of the picked variant; returns the summary."""
    exp, finetune_cfg = cfg.experiment, cfg.finetune
    search_dir = stage_dir(run_dir, "search")
    if not (search_dir / "metrics.csv").is_file():
        raise RunDirError(f"fine-tuning needs a search in {search_dir}: run `instanas search` first.")
    with distributed_session(exp.device) as dist:
        # resolve_variant may write search/variants.json: rank 0 alone, the others read its answer.
        picked = on_main(dist, lambda: resolve_variant(search_dir, finetune_cfg.variant))
        with (
            begin_stage(cfg, run_dir, "finetune", resume, overwrite, out_name=finetune_cfg.out_dir, dist=dist) as start,
            thread_limit(exp.threads),
        ):
            progress = progress and dist.is_main
            table, lut_path = ensure_latency_table(cfg, run_dir, start.device, progress, dist)
            return _finetune(
                cfg, start.out, start.device, table, lut_path, search_dir, picked, start.resume_state, progress, dist
            )


def _finetune(
    cfg: Config,
    out: Path,
    device,
    table,
    lut_path: Path,
    search_dir: Path,
    picked: dict,
    state,
    progress: bool,
    dist: DistContext,
) -> dict:
    exp, finetune_cfg = cfg.experiment, cfg.finetune
    meta_graph, controller = build_models(exp, device, seed=exp.seed)
    lut_hash = latency_table_hash(lut_path)
    ckpt = load_checkpoint(search_dir / picked["checkpoint"], map_location=device)
    if ckpt.get("space_hash") != meta_graph.space.space_hash():
        raise RunDirError(f"{picked['checkpoint']} belongs to another search space than this run's.")
    check_latency_table_hash(ckpt, lut_path, f"the search checkpoint {search_dir / picked['checkpoint']}")
    controller.load_state_dict(ckpt["controller"])
    graph_source = "fresh initialisation (re-train)"
    if finetune_cfg.mode == "finetune":
        if "meta_graph" in ckpt:
            meta_graph.load_state_dict(ckpt["meta_graph"])
            graph_source = f"search epoch {picked['epoch']}"
        else:
            meta_graph.load_state_dict(load_checkpoint(search_dir / "last.pt", map_location=device)["meta_graph"])
            graph_source = "search last.pt (the picked epoch's meta-graph was not kept)"
    for p in controller.parameters():
        p.requires_grad_(False)

    train_set, val_set, val_loader, steps = training_data(
        exp, finetune_cfg.batch_size, finetune_cfg.max_steps_per_epoch, device, dist
    )
    optimizer = make_optimizer(
        meta_graph.parameters(),
        finetune_cfg.resolved_optimizer,
        finetune_cfg.resolved_lr,
        finetune_cfg.resolved_weight_decay,
        finetune_cfg.momentum,
        nesterov=True,
    )
    scheduler = make_schedule(optimizer, finetune_cfg.schedule, finetune_cfg.epochs, steps)
    if state is not None:
        check_space_hash(
            state, meta_graph.space.space_hash(), f"cannot resume {finetune_cfg.out_dir}: {out / 'last.pt'}"
        )
        check_latency_table_hash(state, lut_path, f"cannot resume {finetune_cfg.out_dir}: {out / 'last.pt'}")
    first = resume_training(state, {"meta_graph": meta_graph, "optimizer": optimizer, "scheduler": scheduler})
    metrics = open_metrics(dist, out / "metrics.csv", FINETUNE_COLUMNS, first)
    # Routing skips the modules no sample of a rank chose: ranks use different parameters.
    model = dist.wrap(meta_graph, find_unused_parameters=True)

    def epoch_fn(epoch: int) -> EpochResult:
        # ---- train: one pass over the data on the fixed controller's greedy policies
        inputs = pass_inputs(exp, "finetune", epoch, 0, train_set, finetune_cfg.batch_size, device, dist)
        lr = optimizer.param_groups[0]["lr"]
        controller.eval()
        model.train()
        step = routed_step(model, controller, optimizer, scheduler, table, dist, exp.execution)
        tr = run_pass(
            step,
            inputs.loader,
            steps,
            device,
            exp.use_channels_last,
            f"{finetune_cfg.out_dir} {epoch + 1}/{finetune_cfg.epochs}",
            progress,
            dist,
            ("loss", "accuracy", "latency"),
        )
        dist.sync_buffers(meta_graph)
        # ---- validate with the controller's greedy policies
        val = infer(
            meta_graph,
            val_loader,
            device,
            ("image", "label"),
            controller=controller,
            channels_last=exp.use_channels_last,
            dist=dist,
        )
        check_finite(None, "validation", loss=float(val["loss"].mean()))
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
        }
        state = {
            "stage": "finetune",
            "epoch": epoch,
            "epochs": finetune_cfg.epochs,
            "space_hash": meta_graph.space.space_hash(),
            "lut_hash": lut_hash,
            "config": config_to_dict(cfg),
            "variant": finetune_cfg.variant,
            "search_checkpoint": picked["checkpoint"],
            "meta_graph": meta_graph.state_dict(),
            "controller": controller.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        return EpochResult(row, state)

    t_start = time.time()
    lr_hint = f"finetune.lr={finetune_cfg.resolved_lr:g} with {finetune_cfg.resolved_optimizer}"
    run_epochs(
        EpochLoop(finetune_cfg.out_dir, finetune_cfg.epochs, finetune_cfg.stop_after_epoch, out, lr_hint, dist),
        first,
        metrics,
        epoch_fn,
    )

    def summarise() -> dict:
        rows = metrics.rows()
        last = rows[-1] if rows else {}
        summary = {
            "stage": "finetune",
            "mode": finetune_cfg.mode,
            "variant": finetune_cfg.variant,
            "picked": picked,
            "graph_source": graph_source,
            "optimizer": finetune_cfg.resolved_optimizer,
            "lr": finetune_cfg.resolved_lr,
            "epochs_done": len(rows),
            "epochs": finetune_cfg.epochs,
            "finished": len(rows) >= finetune_cfg.epochs,
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
