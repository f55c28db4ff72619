"""The baselines of Tables 1-3, trained and measured like InstaNAS (paper §4.2).

``instanas baseline --model NAME`` trains one network of
:data:`instanas_core.baselines.BASELINE_NAMES` (MobileNetV2 0.4/1.0/1.4, ShuffleNetV2
0.5/1.0/1.5/2.0, ResNet-50/101, the in-space MobileNetV2 path) from scratch with what the InstaNAS
stages use: the same data splits and subsets, augmentation (§4.2: crop, flip, Cutout), seeded
per-epoch data order, optimiser and schedule helpers, and the re-training budget of the preset
(:class:`~instanas_core.config.BaselineConfig`: "MobileNetV2 1.0 trained with the same budget").
At the end it reports test accuracy, parameters, MACs (:func:`instanas_core.flops.count_macs`)
and batch-1 latency mean +- std timed with the evaluate section's settings
(:func:`instanas_core.baselines.measure_model_latency`), and appends a row to ``RUN/results.csv``.

Baselines keep their own named widths (``mobilenetv2-1.0`` is width 1.0 even where the cpu
presets run InstaNAS's meta-graph at width 0.5); the summary says so.

Written to ``RUN/baselines/<NAME>/``: ``config.json``, ``environment.json``, ``metrics.csv``
(one row per epoch), ``last.pt`` (resumable) and ``summary.json``.

:func:`fit` trains a static network with the one epoch loop of every stage
(:mod:`instanas_core.train.loop`); the comparators of Figure 6
(:mod:`instanas_core.stages.comparators`) use it too: a model is trained through a ``loss_fn``
that returns its loss and statistics, so one loop serves a plain classifier, BlockDrop's
REINFORCE step and ConvNet-AIG's gated step. Under torchrun the step runs as the forward of one
DistributedDataParallel module (:class:`LossModule`), whatever the step calls inside, so the
gradients of every trained parameter are averaged over ranks (:mod:`instanas_core.distributed`);
the test evaluation and latency timing run on rank 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..baselines import BASELINE_NAMES, BASELINES, build_baseline, measure_model_latency
from ..config import Config, ConfigError, config_to_dict
from ..distributed import DistContext, distributed_session, on_main, unwrap
from ..flops import count_macs, count_params
from ..latency import TimingConfig, thread_limit
from ..results import ResultRow, append_result
from ..rundir import RunDirError, load_json, save_json
from ..train import (
    EpochLoop,
    EpochResult,
    StepFn,
    begin_stage,
    build_split,
    check_finite,
    make_loader,
    make_optimizer,
    make_schedule,
    open_metrics,
    pass_inputs,
    resume_training,
    run_epochs,
    run_pass,
    training_data,
    to_device,
)

__all__ = [
    "BASELINE_COLUMNS",
    "LoopSettings",
    "LossFn",
    "LossModule",
    "loss_step",
    "fit",
    "classify",
    "evaluate_classifier",
    "measurement_timing",
    "train_static_network",
    "finish_static_network",
    "check_baseline_name",
    "static_result_row",
    "finished_summary",
    "run_baseline",
    "format_baseline_summary",
]

BASELINE_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")

# loss_fn(x, y, generator) -> {"loss": tensor to backpropagate, "accuracy": ..., other scalars}
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], dict]


@dataclass(frozen=True)
class LoopSettings:
    """How long :func:`fit` trains and how each epoch is seeded (``epoch_seed(seed, stage, e)``);
    ``lr_setting`` names the learning-rate setting in the error of a non-finite loss."""

    epochs: int
    batch_size: int
    max_steps_per_epoch: int | None = None
    stop_after_epoch: int | None = None
    stage: str = "baseline"
    lr_setting: str = "the learning rate"


class LossModule(nn.Module):
    """``loss_fn`` as the forward of a module that holds ``model``: DistributedDataParallel then
    sees one forward per step, whatever submodules and methods the step calls (BlockDrop's runs
    the policy network, then the backbone twice)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict:
        return self.loss_fn(x, y, generator)


def loss_step(
    loss_fn, optimizer: torch.optim.Optimizer, scheduler, generator: torch.Generator, dist: DistContext | None = None
) -> StepFn:
    """The step of a static network (or a comparator) for :func:`~instanas_core.train.run_pass`:
    ``loss_fn`` (or its :class:`LossModule` in DDP) computes the loss and statistics, then one
    update. A non-finite statistic raises before the update."""

    def step(i: int, x: torch.Tensor, y: torch.Tensor) -> tuple[int, dict[str, float]]:
        # ---- forward: the loss and the statistics the method reports
        out = loss_fn(x, y, generator)
        stats = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
        check_finite(dist, "training", i, **stats)
        # ---- update
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        scheduler.step()
        return len(y), stats

    return step


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    validate_fn: Callable[[nn.Module], dict],
    optimizer: torch.optim.Optimizer,
    scheduler,
    train_set,
    cfg: Config,
    device: torch.device,
    out: Path,
    columns: tuple[str, ...],
    loop: LoopSettings,
    steps: int,
    state: dict | None = None,
    checkpoint_extra: dict | None = None,
    train_mode: Callable[[nn.Module], None] | None = None,
    progress: bool = False,
    desc: str = "train",
    dist: DistContext | None = None,
    find_unused_parameters: bool = False,
) -> list[dict]:
    """Train ``model`` for ``loop.epochs`` (resuming from ``state``), validating, checkpointing
    (``out/last.pt``) and logging (``out/metrics.csv``) after every epoch, with the one epoch loop
    of the InstaNAS stages (:func:`~instanas_core.train.run_epochs`). Each row is ``epoch``,
    ``lr``, ``train_<statistic>`` for every statistic of ``loss_fn``, the ``validate_fn`` dict and
    ``seconds``; ``columns`` must name exactly these. Returns the rows of ``metrics.csv``.

    With ``dist`` (torchrun), the step runs in DistributedDataParallel
    (``find_unused_parameters`` for models that skip parts of themselves per sample), each rank
    on its share of the global batch, and rank 0 writes the files. A NaN or infinite training
    statistic or validation loss stops the run before that epoch's checkpoint is written.
    """
    exp = cfg.experiment
    first = resume_training(state, {"model": model, "optimizer": optimizer, "scheduler": scheduler})
    metrics = open_metrics(dist, out / "metrics.csv", columns, first)
    stepper = loss_fn
    if dist is not None and dist.enabled:
        stepper = dist.wrap(LossModule(model, loss_fn), find_unused_parameters)

    def epoch_fn(epoch: int) -> EpochResult:
        # ---- train: one pass, re-seeded from (seed, stage, epoch)
        inputs = pass_inputs(exp, loop.stage, epoch, 0, train_set, loop.batch_size, device, dist)
        lr = optimizer.param_groups[0]["lr"]
        (train_mode or nn.Module.train)(model)
        step = loss_step(stepper, optimizer, scheduler, inputs.generator, dist)
        tr = run_pass(
            step,
            inputs.loader,
            steps,
            device,
            exp.use_channels_last,
            f"{desc} {epoch + 1}/{loop.epochs}",
            progress,
            dist,
        )
        if dist is not None:
            dist.sync_buffers(model)
        # ---- validate
        val = validate_fn(model)
        check_finite(None, "validation", **{k.removeprefix("val_"): v for k, v in val.items() if k.endswith("loss")})
        row = {"epoch": epoch, "lr": lr, **{f"train_{k}": v for k, v in tr.items()}, **val}
        state = {
            "epoch": epoch,
            "epochs": loop.epochs,
            "config": config_to_dict(cfg),
            **(checkpoint_extra or {}),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        return EpochResult(row, state)

    hint = f"{loop.lr_setting}, now {optimizer.defaults['lr']:g}"
    run_epochs(EpochLoop(desc, loop.epochs, loop.stop_after_epoch, out, hint, dist), first, metrics, epoch_fn)
    return on_main(dist, lambda: metrics.rows())


# ---- inference ---------------------------------------------------------------------------------
ForwardFn = Callable[[nn.Module, torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


@torch.no_grad()
def classify(
    model: nn.Module,
    loader,
    device: torch.device,
    channels_last: bool = True,
    forward: ForwardFn | None = None,
    dist: DistContext | None = None,
) -> dict[str, torch.Tensor]:
    """Eval-mode predictions over ``loader``: CPU tensors ``label``, ``pred``, ``loss`` (N,) and,
    when ``forward(model, x)`` returns ``(logits, masks)``, ``mask`` (N, ...) -- the executed
    cells of a gated comparator. With ``dist``, ``loader`` is this rank's shard and every rank
    gets all shards' rows."""
    model = unwrap(model)
    model.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for image, label in loader:
        x = to_device(image, device, channels_last)
        y = label.to(device)
        res = forward(model, x) if forward is not None else model(x)
        logits, mask = res if isinstance(res, tuple) else (res, None)  # (B, classes), (B, T)
        rows = {"label": y, "pred": logits.argmax(1), "loss": F.cross_entropy(logits, y, reduction="none")}
        if mask is not None:
            rows["mask"] = mask
        for k, v in rows.items():
            out.setdefault(k, []).append(v.detach().cpu())
    local = {k: torch.cat(v) for k, v in out.items()}
    return dist.gather_concat(local) if dist is not None else local


def evaluate_classifier(
    model: nn.Module,
    loader,
    device: torch.device,
    channels_last: bool = True,
    prefix: str = "val",
    dist: DistContext | None = None,
) -> dict:
    """``{prefix}_loss`` and ``{prefix}_accuracy`` (fraction) of a static network."""
    res = classify(model, loader, device, channels_last, dist=dist)
    return {
        f"{prefix}_loss": float(res["loss"].mean()),
        f"{prefix}_accuracy": float((res["pred"] == res["label"]).float().mean()),
    }


def measurement_timing(cfg: Config) -> TimingConfig:
    """The timing of InstaNAS's measured latency (the evaluate stage's ``measure_*``)."""
    evaluate_cfg = cfg.evaluate
    return TimingConfig(min_run_time=evaluate_cfg.measure_min_run_time, blocks=evaluate_cfg.measure_blocks, warmup=2)


# ---- a static network from scratch: train, then test, cost, latency ---------------------------
def train_static_network(
    cfg: Config,
    model: nn.Module,
    out: Path,
    device: torch.device,
    state: dict | None,
    checkpoint_extra: dict | None = None,
    progress: bool = False,
    desc: str = "baseline",
    dist: DistContext | None = None,
) -> list[dict]:
    """Train a static classifier with the ``baseline`` section's budget on the experiment's
    training split (cross-entropy), validating on its validation split; returns the metrics rows.
    Under torchrun (``dist``) it trains in DistributedDataParallel: a static network uses every
    parameter in every step, so unused-parameter search is off."""
    exp, baseline_cfg = cfg.experiment, cfg.baseline
    train_set, val_set, val_loader, steps = training_data(
        exp, baseline_cfg.batch_size, baseline_cfg.max_steps_per_epoch, device, dist
    )
    optimizer = make_optimizer(
        model.parameters(),
        baseline_cfg.optimizer,
        baseline_cfg.lr,
        baseline_cfg.weight_decay,
        baseline_cfg.momentum,
        nesterov=True,
    )
    scheduler = make_schedule(optimizer, baseline_cfg.schedule, baseline_cfg.epochs, steps)

    def step(x: torch.Tensor, y: torch.Tensor, _gen: torch.Generator) -> dict:
        logits = model(x)  # (B, classes)
        return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.argmax(1) == y).float().mean().detach()}

    loop = LoopSettings(
        baseline_cfg.epochs,
        baseline_cfg.batch_size,
        baseline_cfg.max_steps_per_epoch,
        baseline_cfg.stop_after_epoch,
        "baseline",
        "baseline.lr",
    )
    return fit(
        model,
        step,
        lambda m: evaluate_classifier(m, val_loader, device, exp.use_channels_last, dist=dist),
        optimizer,
        scheduler,
        train_set,
        cfg,
        device,
        out,
        BASELINE_COLUMNS,
        loop,
        steps,
        state,
        checkpoint_extra,
        None,
        progress,
        desc,
        dist,
    )


def finish_static_network(cfg: Config, model: nn.Module, device: torch.device) -> dict:
    """Test accuracy (fraction), parameters, MACs and measured batch-1 latency of a trained
    static network (:func:`measure_model_latency`: mean +- std over timing blocks)."""
    exp, evaluate_cfg = cfg.experiment, cfg.evaluate
    resolution = exp.info.resolution
    test_set = build_split(exp, "test", augment=False)
    loader = make_loader(test_set, evaluate_cfg.batch_size, False, 0, exp, device, train=False)
    res = classify(model, loader, device, exp.use_channels_last)
    latency = measure_model_latency(model, resolution, evaluate_cfg.measure_threads, measurement_timing(cfg), device)
    return {
        "test_accuracy": float((res["pred"] == res["label"]).float().mean()),
        "test_n": int(len(res["label"])),
        "params": count_params(model),
        "macs": count_macs(model, (1, 3, resolution, resolution), device),
        "latency_ms": latency,
    }


def check_baseline_name(name: str) -> None:
    """Refuse an unknown baseline name with the list of known ones."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; known baselines: {', '.join(BASELINE_NAMES)}.")


def static_result_row(cfg: Config, name: str, run_dir, device, final: dict, extra: dict) -> ResultRow:
    """The results row of a static network from :func:`finish_static_network`'s output."""
    lat = final["latency_ms"]
    return ResultRow(
        name=name,
        dataset=cfg.experiment.dataset,
        preset=cfg.preset,
        seed=cfg.experiment.seed,
        accuracy=100.0 * final["test_accuracy"],
        latency_mean_ms=lat["mean_ms"],
        latency_std_ms=lat["std_ms"],
        latency_kind="measured",
        params=int(final["params"]),
        flops=int(final["macs"]),
        run_dir=str(run_dir),
        device=str(device),
        extra=extra,
    )


def run_baseline(
    cfg: Config,
    run_dir: str | Path,
    model_name: str,
    progress: bool = True,
    *,
    resume: bool = False,
    overwrite: bool = False,
    folder_name: str | None = None,
) -> dict:
    """Train, test and time baseline ``model_name`` into ``RUN/baselines/<model_name>/``; append
    its row to ``RUN/results.csv``; return the summary (also ``summary.json``).

    ``folder_name`` puts a second training of the same model (another budget, say) beside the
    first, in ``RUN/baselines/<folder_name>/``.

    ``resume`` continues from ``last.pt``; a baseline that already finished is not trained,
    measured or recorded again (its saved summary is returned). ``overwrite`` starts it again.
    A run stopped early by ``baseline.stop_after_epoch`` writes a summary with
    ``finished=False`` and no results row.
    """
    check_baseline_name(model_name)
    exp, baseline_cfg = cfg.experiment, cfg.baseline
    folder = f"baselines/{folder_name or model_name}"
    with (
        distributed_session(exp.device) as dist,
        begin_stage(cfg, run_dir, "baseline", resume, overwrite, out_name=folder, dist=dist) as start,
    ):
        out, device = start.out, start.device
        previous = on_main(dist, lambda: finished_summary(out)) if start.resume_state is not None else None
        if previous is not None:
            return previous
        spec = BASELINES[model_name]
        with thread_limit(exp.threads):
            t_start = time.time()
            torch.manual_seed(exp.seed)
            model = build_baseline(model_name, exp.info.resolution, exp.info.num_classes)
            if exp.use_channels_last:
                model = model.to(memory_format=torch.channels_last)
            model = model.to(device)
            extra = {"stage": "baseline", "model_name": model_name, "space_hash": exp.space().space_hash()}
            rows = train_static_network(
                cfg, model, out, device, start.resume_state, extra, progress and dist.is_main, model_name, dist
            )

            def finish() -> dict:
                last = rows[-1] if rows else {}
                summary = {
                    "stage": "baseline",
                    "model": model_name,
                    "family": spec.family,
                    "width": spec.size,
                    "width_note": (
                        f"{model_name} keeps its own named {'depth' if spec.family == 'resnet' else 'width'} "
                        f"({spec.size:g}); this run's InstaNAS meta-graph is at width_mult {exp.width_mult:g}"
                        + (f" with the 24-channel stage at stride {exp.stage24_stride}" if exp.stage24_stride else "")
                        + "."
                    ),
                    "dataset": exp.dataset,
                    "optimizer": baseline_cfg.optimizer,
                    "lr": baseline_cfg.lr,
                    "epochs_done": len(rows),
                    "epochs": baseline_cfg.epochs,
                    "finished": len(rows) >= baseline_cfg.epochs,
                    "val_accuracy": float(last.get("val_accuracy") or "nan"),
                }
                if summary["finished"]:
                    final = finish_static_network(cfg, model, device)
                    row = static_result_row(
                        cfg,
                        model_name,
                        run_dir,
                        device,
                        final,
                        {
                            "stage": "baseline",
                            "folder": folder,
                            "family": spec.family,
                            "width": spec.size,
                            "latency_std": "over timing blocks",
                            "epochs": baseline_cfg.epochs,
                            "test_n": final["test_n"],
                        },
                    )
                    append_result(run_dir, row)
                    summary.update(
                        {
                            "split": "test",
                            **final,
                            "accuracy_pct": row.accuracy,
                            "latency_kind": "measured",
                            "latency_std_over": "timing blocks (one static network)",
                            "result_appended": True,
                        }
                    )
                summary["seconds_this_call"] = time.time() - t_start
                save_json(out / "summary.json", summary)
                return summary

            # Test evaluation, latency timing and the results row: rank 0 alone.
            return on_main(dist, finish)


def finished_summary(out: Path) -> dict | None:
    """The saved summary of a stage that already finished and recorded its result, else None."""
    path = out / "summary.json"
    if not path.is_file():
        return None
    try:
        saved = load_json(path)
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict):  # unreadable, or JSON that is not an object
        raise RunDirError(f"{path} is damaged; use --overwrite to run this stage again.")
    return saved if saved.get("finished") and saved.get("result_appended") else None


def format_baseline_summary(s: dict) -> str:
    head = f"baseline {s['model']}: {s['epochs_done']}/{s['epochs']} epochs, val accuracy {s['val_accuracy']:.4f}"
    if not s.get("result_appended"):
        return head + " (stopped early: no test result yet; continue with --resume)"
    lat = s["latency_ms"]
    return (
        f"{head}, test accuracy {s['test_accuracy']:.4f}, {s['params'] / 1e6:.3f} M params, "
        f"{s['macs'] / 1e6:.2f} M MACs, latency {lat['mean_ms']:.3f} +- {lat['std_ms']:.3f} ms "
        f"(batch 1, {lat['threads']} thread(s), {lat['device']}); row appended to results.csv. {s['width_note']}"
    )
