"""Stage (a): pre-train the meta-graph with drop-path (paper §3.1 a, §3.2).

Each step draws one drop-path policy per sample: every module is dropped independently with the
epoch's rate, the at-least-one rule is kept, and dropped modules are not computed (the
meta-graph's ``subset`` execution). The rate is 0 for the first ``drop_start`` share of the
epochs and then rises linearly to ``drop_max`` (50%) at the last epoch; the loss is the task loss
(cross-entropy) only. Validation uses the all-modules path, like the original code.

Named options (docs/science-options.md; off by default, the paper's method):

* ``density="per-sample"`` -- each sample draws its own rate ``~ U(0, 2 x rate_t)`` (clipped to
  1), so the mean rate follows §3.2's schedule but every density down to the cheapest path is
  trained; one batch-wide Bernoulli rate leaves sparse children (the end of the search's reward
  window) at chance;
* ``sandwich=True`` -- each step also trains the largest (all modules) and the cheapest path (the
  fewest multiply-accumulates per cell), the sandwich rule of BigNAS / once-for-all; the three
  losses are averaged, so the learning rate keeps its meaning;
* ``recalibrate_bn=N`` -- validation re-estimates BatchNorm for the all-modules path on N
  training batches first (on a copy: the checkpoint keeps the training statistics).

``run_pretrain(cfg, run_dir)`` writes ``RUN/pretrain/`` (see :mod:`instanas_core.rundir`). Under
torchrun the meta-graph trains in DistributedDataParallel, each rank on its share of the global
batch with its own drop-path draws (:mod:`instanas_core.distributed`).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch

from ..config import Config, PretrainConfig, config_to_dict
from ..distributed import DistContext, distributed_session, on_main, unwrap
from ..flops import count_macs
from ..latency import thread_limit
from ..meta_graph import MetaGraph
from ..policy import all_ones_policy, drop_path_policy, enforce_at_least_one
from ..rundir import save_json
from ..train import (
    EpochLoop,
    EpochResult,
    StepFn,
    begin_stage,
    build_models,
    check_finite,
    infer,
    make_optimizer,
    make_schedule,
    open_metrics,
    pass_inputs,
    recalibrate_batchnorm,
    resume_training,
    policy_step,
    run_epochs,
    run_pass,
    training_data,
)

__all__ = [
    "PRETRAIN_COLUMNS",
    "drop_rate_at",
    "per_sample_drop_policy",
    "cheapest_macs_policy",
    "pretrain_policies",
    "pretrain_step",
    "run_pretrain",
    "format_pretrain_summary",
]

PRETRAIN_COLUMNS = (
    "epoch",
    "lr",
    "drop_rate",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
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


def per_sample_drop_policy(
    meta_graph, batch_size: int, drop_rate: float, generator: torch.Generator, device=None
) -> torch.Tensor:
    """The ``per-sample`` density option: sample ``i`` drops each module with its own rate
    ``r_i ~ U(0, min(1, 2 x drop_rate))``, at least one module kept where a cell must run one. (B, T, K)."""
    space = meta_graph.space
    rates = torch.rand(batch_size, 1, 1, generator=generator) * min(1.0, 2.0 * drop_rate)  # (B, 1, 1)
    u = torch.rand(batch_size, space.num_cells, space.num_modules, generator=generator)
    policy = enforce_at_least_one((u >= rates).float(), space)
    return policy.to(device) if device is not None else policy


def cheapest_macs_policy(meta_graph: MetaGraph) -> torch.Tensor:
    """The cheapest valid path without a latency table: each cell that must run a module runs the
    one with the fewest multiply-accumulates at its input shape; the others run nothing. (T, K)."""
    space = meta_graph.space
    policy = torch.zeros(space.num_cells, space.num_modules)
    for t, cell in enumerate(meta_graph.cells):
        if cell.spec.requires_module:
            shape = (1, cell.spec.in_channels, cell.spec.in_size, cell.spec.in_size)
            macs = [count_macs(branch, shape) for branch in cell.branches]
            policy[t, macs.index(min(macs))] = 1.0
    return policy


def pretrain_policies(
    meta_graph: MetaGraph,
    batch_size: int,
    drop_rate: float,
    cfg: PretrainConfig,
    generator: torch.Generator,
    device,
    cheapest: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """The policies one pre-training step trains, each (B, T, K): the drop-path draw (§3.2, or
    the per-sample option) and, with the sandwich rule, the largest and the cheapest path
    (``cheapest``: :func:`cheapest_macs_policy`, counted here when not given)."""
    if cfg.density == "per-sample":
        draw = per_sample_drop_policy(meta_graph, batch_size, drop_rate, generator, device)
    else:  # Each module dropped with the epoch's rate, at least one kept where a cell must run one.
        draw = drop_path_policy(meta_graph, batch_size, drop_rate, generator, device)
    if not cfg.sandwich:
        return [draw]
    largest = all_ones_policy(meta_graph, batch_size, device)
    cheapest = cheapest_macs_policy(meta_graph) if cheapest is None else cheapest
    return [largest, cheapest.to(device).expand(batch_size, -1, -1), draw]


def pretrain_step(
    model,
    optimizer: torch.optim.Optimizer,
    scheduler,
    drop_rate: float,
    generator: torch.Generator,
    dist: DistContext | None = None,
    execution: str = "subset",
    cfg: PretrainConfig | None = None,
) -> StepFn:
    """The step of drop-path pre-training (§3.2) for :func:`~instanas_core.train.run_pass`, with
    the named options of ``cfg`` (:func:`pretrain_policies`). ``model`` is the meta-graph,
    possibly wrapped in DistributedDataParallel; the caller puts it in train mode. A non-finite
    loss raises before its update."""
    meta_graph = unwrap(model)
    cfg = cfg or PretrainConfig()
    # Counted once per pass (forward hooks on every branch), not once per step.
    cheapest = cheapest_macs_policy(meta_graph) if cfg.sandwich else None

    def policies(x: torch.Tensor) -> list[torch.Tensor]:
        return pretrain_policies(meta_graph, x.shape[0], drop_rate, cfg, generator, x.device, cheapest)

    return policy_step(model, policies, optimizer, scheduler, None, dist, execution)


def run_pretrain(
    cfg: Config, run_dir: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> dict:
    """Run (or resume) the pre-training stage; returns its summary (also ``summary.json``)."""
    exp, pretrain_cfg = cfg.experiment, cfg.pretrain
    with (
        distributed_session(exp.device) as dist,
        begin_stage(cfg, run_dir, "pretrain", resume, overwrite, dist=dist) as start,
    ):
        with thread_limit(exp.threads):
            return _pretrain(
                cfg, exp, pretrain_cfg, start.out, start.device, start.resume_state, progress and dist.is_main, dist
            )


def _pretrain(
    cfg: Config, exp, pretrain_cfg: PretrainConfig, out: Path, device, state, progress: bool, dist: DistContext
) -> dict:
    meta_graph, _ = build_models(exp, device, seed=exp.seed)
    train_set, val_set, val_loader, steps = training_data(
        exp, pretrain_cfg.batch_size, pretrain_cfg.max_steps_per_epoch, device, dist
    )
    optimizer = make_optimizer(
        meta_graph.parameters(),
        "sgd",
        pretrain_cfg.lr,
        pretrain_cfg.weight_decay,
        pretrain_cfg.momentum,
        pretrain_cfg.nesterov,
    )
    scheduler = make_schedule(optimizer, pretrain_cfg.schedule, pretrain_cfg.epochs, steps)
    first = resume_training(state, {"meta_graph": meta_graph, "optimizer": optimizer, "scheduler": scheduler})
    metrics = open_metrics(dist, out / "metrics.csv", PRETRAIN_COLUMNS, first)
    all_modules = all_ones_policy(meta_graph)[0]  # (T, K)
    wrapped: dict[bool, torch.nn.Module] = {}

    def model_for(rate: float) -> torch.nn.Module:
        # Drop-path skips modules per sample, so ranks use different parameters in a step and DDP
        # must look for unused ones; at rate 0 (the first half of the paper's schedule) every
        # module runs, and that search would be wasted work (and DDP warns about it). The wrapper
        # is rebuilt when this changes; dropping the old one removes its gradient hooks.
        skips = rate > 0 or pretrain_cfg.sandwich  # per-sample density also runs everything at rate 0
        if skips not in wrapped:
            wrapped.clear()
            wrapped[skips] = dist.wrap(meta_graph, find_unused_parameters=skips)
        return wrapped[skips]

    def epoch_fn(epoch: int) -> EpochResult:
        # ---- train: one pass of drop-path steps, re-seeded from (seed, epoch)
        inputs = pass_inputs(exp, "pretrain", epoch, 0, train_set, pretrain_cfg.batch_size, device, dist)
        rate = drop_rate_at(epoch, pretrain_cfg.epochs, pretrain_cfg.drop_start, pretrain_cfg.drop_max)
        lr = optimizer.param_groups[0]["lr"]
        model = model_for(rate)
        model.train()
        step = pretrain_step(model, optimizer, scheduler, rate, inputs.generator, dist, exp.execution, pretrain_cfg)
        tr = run_pass(
            step,
            inputs.loader,
            steps,
            device,
            exp.use_channels_last,
            f"pretrain {epoch + 1}/{pretrain_cfg.epochs}",
            progress,
            dist,
        )
        dist.sync_buffers(meta_graph)
        # ---- validate the all-modules path, as the original code did (optionally recalibrated)
        judged = meta_graph
        if pretrain_cfg.recalibrate_bn:
            judged = copy.deepcopy(meta_graph)
            calib = pass_inputs(exp, "pretrain", epoch, 1, train_set, pretrain_cfg.batch_size, device, None)
            recalibrate_batchnorm(
                judged,
                calib.loader,
                lambda x: all_modules.to(x.device).expand(x.shape[0], -1, -1),
                pretrain_cfg.recalibrate_bn,
                device,
                exp.use_channels_last,
                exp.execution,
            )
        val = infer(
            judged,
            val_loader,
            device,
            ("image", "label"),
            fixed_policy=all_modules,
            channels_last=exp.use_channels_last,
            dist=dist,
        )
        check_finite(None, "validation", loss=float(val["loss"].mean()))
        row = {
            "epoch": epoch,
            "lr": lr,
            "drop_rate": rate,
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "val_loss": float(val["loss"].mean()),
            "val_accuracy": float((val["pred"] == val["label"]).float().mean()),
        }
        state = {
            "stage": "pretrain",
            "epoch": epoch,
            "epochs": pretrain_cfg.epochs,
            "space_hash": meta_graph.space.space_hash(),
            "config": config_to_dict(cfg),
            "meta_graph": meta_graph.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        return EpochResult(row, state)

    t_start = time.time()
    loop = EpochLoop(
        "pretrain", pretrain_cfg.epochs, pretrain_cfg.stop_after_epoch, out, f"pretrain.lr={pretrain_cfg.lr:g}", dist
    )
    run_epochs(loop, first, metrics, epoch_fn)

    def summarise() -> dict:
        rows = metrics.rows()
        last = rows[-1] if rows else {}
        summary = {
            "stage": "pretrain",
            "epochs_done": len(rows),
            "epochs": pretrain_cfg.epochs,
            "finished": len(rows) >= pretrain_cfg.epochs,
            "val_accuracy": float(last.get("val_accuracy", "nan") or "nan"),
            "train_loss": float(last.get("train_loss", "nan") or "nan"),
            "drop_rate": float(last.get("drop_rate", "nan") or "nan"),
            "seconds_this_call": time.time() - t_start,
            "dataset": exp.dataset,
            "space": meta_graph.space.to_dict(),
        }
        save_json(out / "summary.json", summary)
        return summary

    return on_main(dist, summarise)


def format_pretrain_summary(s: dict) -> str:
    return (
        f"pretrain: {s['epochs_done']}/{s['epochs']} epochs, val accuracy (all modules) {s['val_accuracy']:.4f}, "
        f"train loss {s['train_loss']:.4f}, drop-path {s['drop_rate']:.2f}, {s['seconds_this_call']:.1f} s"
    )
