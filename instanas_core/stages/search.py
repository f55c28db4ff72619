"""Stage (b): the joint search of controller and meta-graph (paper §3.1 b, §3.3, Eq. 1-2).

Each search epoch ``t`` is a cycle of two phases:

1. **controller epoch** (meta-graph fixed, in eval mode): per sample, the controller's
   probabilities ``p`` are mutated by the encouragement ``alpha`` into ``p'`` and sampled
   (Bernoulli) into a policy; the greedy policy (``p > 0.5``) is the self-critical baseline. Both
   are run through the meta-graph (one batched forward), rewarded by Eq. 2 with the epoch's bounds
   ``(U_t, L_t)`` and the look-up table's latency ``z``, and the controller takes the Eq. 1
   gradient ``(R(sampled) - R(greedy)) * grad log P(sampled | p')`` plus the entropy term (sign
   in :class:`~instanas_core.config.SearchConfig`);
2. **meta-graph epoch** (controller fixed): sampled policies are shuffled within the batch
   ("policy random shuffling") and the meta-graph trains on the task loss.

Then the greedy policies are scored on the *validation* split (accuracy, mean table latency,
distinct architectures) and the real routed latency of a few validation samples is timed. Every
epoch's controller (and meta-graph, when ``keep_graph_checkpoints``) is saved to
``epochs/epoch_NNNN.pt`` so that variants A-E can be picked along the accuracy/latency trade-off
(:func:`~instanas_core.stages.variants.pick_variants`), as the paper picks its five models from a
single search.

``U_t`` shrinks linearly from ``U_start`` to ``U_end`` over the epochs; both bounds are logged in
``metrics.csv`` (columns ``upper_bound``, ``lower_bound``).

Under torchrun (:mod:`instanas_core.distributed`) the controller and the meta-graph are both in
DistributedDataParallel, so the gradients of both epochs are averaged over ranks; every rank
samples its own policies (per-rank generator seeds), shuffles them within its own share of the
batch, and its rewards enter the reduced statistics. Validation is sharded and gathered; the
real latency is timed on rank 0.

Checkpoints carry the SHA-256 of the latency table they were made with (``lut_hash``): a
search does not resume, nor does fine-tuning start from it, once ``RUN/profile/lut.json`` has
changed.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import Config, SearchConfig, config_to_dict
from ..controller import Controller
from ..distributed import DistContext, distributed_session, on_main, rank_seed, unwrap
from ..latency import LatencyTable, TimingConfig, thread_limit
from ..meta_graph import MetaGraph
from ..policy import encourage, greedy_policy, policy_entropy, policy_log_prob, sample_policy
from ..reward import RewardBounds, combined_reward, reference_latencies, resolve_bounds
from ..rundir import (
    RunDirError,
    capture_rng_state,
    epoch_seed,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    save_json,
    seed_everything,
    stage_dir,
)
from .common import (
    Meter,
    NonFiniteError,
    begin_stage,
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
    measure_routed_latency,
    non_finite_stop,
    open_metrics,
    progress_bar,
    steps_per_epoch,
    to_device,
)

__all__ = [
    "SEARCH_COLUMNS",
    "controller_loss",
    "train_controller_epoch",
    "train_graph_epoch",
    "validate",
    "run_search",
    "format_search_summary",
]

SEARCH_COLUMNS = (
    "epoch",
    "upper_bound",
    "lower_bound",
    "val_accuracy",
    "mean_latency_ms",
    "latency_std_ms",
    "measured_latency_ms",
    "val_reward",
    "val_distinct_policies",
    "val_modules_per_sample",
    "ctrl_reward",
    "ctrl_greedy_reward",
    "ctrl_sampled_accuracy",
    "ctrl_greedy_accuracy",
    "ctrl_latency_ms",
    "ctrl_entropy",
    "ctrl_loss",
    "graph_loss",
    "graph_accuracy",
    "controller_lr",
    "graph_lr",
    "seconds",
)


def controller_loss(
    probs: torch.Tensor,
    actions: torch.Tensor,
    advantage: torch.Tensor,
    alpha: float,
    entropy_bonus: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1 as a loss, plus the entropy term.

    probs: (B, T, K) controller output (with grad); actions: (B, T, K) sampled Bernoulli draws;
    advantage: (B,) ``R(sampled) - R(greedy)`` (no grad). The log-probability is taken under the
    distribution actually sampled, ``p' = alpha p + (1 - alpha)(1 - p)``, so the estimator is
    unbiased; ``loss = -mean(adv * log P) - entropy_bonus * mean(H(p'))``. Returns (loss, H mean).
    """
    p_enc = encourage(probs, alpha)  # (B, T, K)
    log_p = policy_log_prob(actions, p_enc)  # (B,)
    entropy = policy_entropy(p_enc)  # (B,)
    loss = -(advantage.detach() * log_p).mean() - entropy_bonus * entropy.mean()
    return loss, entropy.mean().detach()


def train_controller_epoch(
    controller: Controller,
    graph: MetaGraph,
    optimizer: torch.optim.Optimizer,
    loader,
    device: torch.device,
    table: LatencyTable,
    bounds: tuple[float, float],
    sc: SearchConfig,
    generator: torch.Generator,
    steps: int,
    channels_last: bool = True,
    progress: bool = False,
    desc: str = "controller",
    dist: DistContext | None = None,
    *,
    execution: str = "subset",
) -> dict:
    """One controller epoch with the meta-graph fixed (eval mode, no gradient). Either model may
    be wrapped in DistributedDataParallel; statistics are means over all ranks. A non-finite
    loss or reward raises :class:`~instanas_core.stages.common.NonFiniteError` before its step."""
    upper, lower = bounds
    net = unwrap(graph)
    net.eval()
    controller.train()
    meter = Meter()
    bar = progress_bar(limited(loader, steps), steps, desc, progress)
    for step, (image, label) in enumerate(bar):
        x = to_device(image, device, channels_last)
        y = label.to(device, non_blocking=True)
        b = x.shape[0]
        probs = controller(x)  # (B, T, K)
        sampled = sample_policy(probs, net, sc.alpha, generator)
        greedy = greedy_policy(probs, net)  # (B, T, K): the self-critical baseline
        with torch.no_grad():
            # One forward for both policies: eval-mode BatchNorm makes samples independent.
            logits = net(torch.cat([x, x]), torch.cat([sampled.policy, greedy]), execution)  # (2B, classes)
            correct = logits.argmax(1) == torch.cat([y, y])  # (2B,)
            latency = table.estimate(torch.cat([sampled.policy, greedy])).to(device)  # (2B,)
            reward = combined_reward(correct, latency, upper, lower, sc.reward_correct, sc.reward_wrong)
        advantage = reward[:b] - reward[b:]  # (B,)
        loss, entropy = controller_loss(probs, sampled.actions, advantage, sc.alpha, sc.entropy_bonus)
        stats = {
            "reward": reward[:b].mean().item(),
            "greedy_reward": reward[b:].mean().item(),
            "loss": loss.item(),
        }
        check_finite(dist, "controller", step, **stats)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.update(
            b,
            reward=stats["reward"],
            greedy_reward=stats["greedy_reward"],
            acc=correct[:b].float().mean().item(),
            greedy_acc=correct[b:].float().mean().item(),
            latency=latency[:b].mean().item(),
            entropy=entropy.item(),
            loss=stats["loss"],
        )
        bar.set_postfix(
            loss=f"{meter.mean('loss'):.2f}", acc=f"{meter.mean('acc'):.3f}",
            lat=f"{meter.mean('latency'):.3f}", reward=f"{meter.mean('reward'):.2f}",
        )
    meter = meter.all_reduced(dist)
    return {k: meter.mean(k) for k in ("reward", "greedy_reward", "acc", "greedy_acc", "latency", "entropy", "loss")}


def train_graph_epoch(
    graph: MetaGraph,
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    loader,
    device: torch.device,
    table: LatencyTable,
    sc: SearchConfig,
    generator: torch.Generator,
    steps: int,
    channels_last: bool = True,
    progress: bool = False,
    desc: str = "meta-graph",
    dist: DistContext | None = None,
    *,
    execution: str = "subset",
) -> dict:
    """One meta-graph epoch with the controller fixed: sampled policies, shuffled within the batch
    (policy random shuffling, §3.3; under torchrun within each rank's share), task loss only."""
    net, ctrl = unwrap(graph), unwrap(controller)
    ctrl.eval()
    graph.train()
    meter = Meter()
    bar = progress_bar(limited(loader, steps), steps, desc, progress)
    for step, (image, label) in enumerate(bar):
        x = to_device(image, device, channels_last)
        y = label.to(device, non_blocking=True)
        with torch.no_grad():
            policy = sample_policy(ctrl(x), net, sc.alpha, generator).policy  # (B, T, K)
        if sc.policy_shuffle:
            perm = torch.randperm(x.shape[0], generator=generator).to(policy.device)
            policy = policy[perm]  # re-pair policies and samples within the batch
        logits = graph(x, policy, execution)
        loss = F.cross_entropy(logits, y)
        loss_value = loss.item()
        check_finite(dist, "meta-graph training", step, loss=loss_value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.update(
            len(y), loss=loss_value, acc=(logits.argmax(1) == y).float().mean().item(),
            latency=table.estimate(policy).mean().item(),
        )
        bar.set_postfix(loss=f"{meter.mean('loss'):.3f}", acc=f"{meter.mean('acc'):.3f}", lat=f"{meter.mean('latency'):.3f}")
    meter = meter.all_reduced(dist)
    return {"loss": meter.mean("loss"), "accuracy": meter.mean("acc")}


def validate(
    graph: MetaGraph,
    controller: Controller,
    loader,
    device: torch.device,
    table: LatencyTable,
    bounds: tuple[float, float],
    sc: SearchConfig,
    channels_last: bool = True,
    dist: DistContext | None = None,
) -> tuple[dict, dict]:
    """Greedy policies on the validation split: accuracy, table latency, reward, diversity (with
    ``dist``, over all ranks' shards)."""
    res = infer(
        graph, loader, device, ("image", "label"), controller=controller, channels_last=channels_last, dist=dist
    )
    correct = res["pred"] == res["label"]
    latency = table.estimate(res["policy"].float())  # (N,)
    reward = combined_reward(correct, latency, bounds[0], bounds[1], sc.reward_correct, sc.reward_wrong)
    flat = res["policy"].reshape(len(correct), -1)
    stats = {
        "val_accuracy": float(correct.float().mean()),
        "mean_latency_ms": float(latency.mean()),
        "latency_std_ms": float(latency.std(unbiased=False)),
        "val_reward": float(reward.mean()),
        "val_distinct_policies": int(torch.unique(flat, dim=0).shape[0]),
        "val_modules_per_sample": float(flat.sum(1).float().mean()),
    }
    return stats, res


def run_search(
    cfg: Config, run_dir: str | Path, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> dict:
    """Run (or resume) the search stage; needs ``RUN/pretrain/last.pt``. Returns the summary."""
    exp = cfg.experiment
    pre = stage_dir(run_dir, "pretrain") / "last.pt"
    if not pre.is_file():
        raise RunDirError(f"the search starts from a pre-trained meta-graph, but {pre} does not exist: run `instanas pretrain` first.")
    with (
        distributed_session(exp.device) as dist,
        begin_stage(cfg, run_dir, "search", resume, overwrite, dist=dist) as start,
    ):
        progress = progress and dist.is_main
        with thread_limit(exp.threads):
            table, lut_path = ensure_latency_table(cfg, run_dir, start.device, progress, dist)
            return _search(cfg, start.out, start.device, table, lut_path, pre, start.resume_state, progress, dist)


def _search(
    cfg: Config, out: Path, device, table: LatencyTable, lut_path: Path, pre: Path, state, progress: bool,
    dist: DistContext,
) -> dict:
    exp, sc = cfg.experiment, cfg.search
    graph, controller = build_models(exp, device, seed=exp.seed)
    pretrained = load_checkpoint(pre, map_location=device)
    if pretrained.get("space_hash") != graph.space.space_hash():
        raise RunDirError(f"{pre} was trained for another search space than this run's; use the same preset and settings.")
    graph.load_state_dict(pretrained["meta_graph"])
    lut_hash = latency_table_hash(lut_path)

    refs = reference_latencies(table)
    bounds = resolve_bounds(
        refs, sc.upper_start_factor, sc.upper_end_factor, sc.upper_start_ms, sc.upper_end_ms,
        sc.lower_start_ms, sc.lower_end_ms,
    )
    train_set = build_split(exp, "train", augment=exp.augment)
    val_set = build_split(exp, "val", augment=False)
    probe = make_loader(train_set, sc.batch_size, True, 0, exp, device, train=True, dist=dist)
    steps = steps_per_epoch(probe, sc.max_steps_per_epoch)
    val_loader = make_loader(val_set, max(sc.batch_size, 64), False, 0, exp, device, train=False, dist=dist)

    c_opt = torch.optim.Adam(controller.parameters(), lr=sc.controller_lr, weight_decay=sc.controller_weight_decay)
    c_sched = torch.optim.lr_scheduler.StepLR(c_opt, step_size=sc.controller_lr_step or 10**9, gamma=0.1)
    g_opt = make_optimizer(graph.parameters(), "sgd", sc.graph_lr, sc.graph_weight_decay, sc.graph_momentum, nesterov=False)
    first = 0
    if state is not None:
        check_space_hash(state, graph.space.space_hash(), f"cannot resume the search: {out / 'last.pt'}")
        check_latency_table_hash(state, lut_path, f"cannot resume the search: {out / 'last.pt'}")
        graph.load_state_dict(state["meta_graph"])
        controller.load_state_dict(state["controller"])
        c_opt.load_state_dict(state["controller_optimizer"])
        c_sched.load_state_dict(state["controller_scheduler"])
        g_opt.load_state_dict(state["graph_optimizer"])
        restore_rng_state(state["rng"])
        bounds = RewardBounds(**state["bounds"])
        first = state["epoch"] + 1
    metrics = open_metrics(dist, out / "metrics.csv", SEARCH_COLUMNS, first)

    def start_files() -> None:
        save_json(
            out / "bounds.json",
            {"bounds": bounds.__dict__, "reference_latencies": refs, "latency_table": str(lut_path)},
        )
        (out / "epochs").mkdir(exist_ok=True)

    on_main(dist, start_files)
    # Both models train in DDP; subset execution makes the meta-graph's used parameters differ per rank.
    graph_model = dist.wrap(graph, find_unused_parameters=True)
    controller_model = dist.wrap(controller)

    # The same validation samples are timed every epoch (seeded), so epochs compare.
    n_measure = min(sc.measure_samples, len(val_set))
    measure_idx = torch.randperm(len(val_set), generator=torch.Generator().manual_seed(exp.seed))[:n_measure]
    timing = TimingConfig(min_run_time=sc.measure_min_run_time, blocks=sc.measure_blocks, warmup=1)
    lr_hint = f"search.controller_lr={sc.controller_lr:g}, search.graph_lr={sc.graph_lr:g}"
    t_start = time.time()
    for epoch in range(first, sc.epochs):
        t0 = time.time()
        upper, lower = bounds.at(epoch, sc.epochs)
        c_lr, g_lr = c_opt.param_groups[0]["lr"], g_opt.param_groups[0]["lr"]
        try:
            # ---- controller epoch (meta-graph fixed)
            s = epoch_seed(exp.seed, "search", epoch, 0)
            seed_everything(rank_seed(s, dist.rank))
            gen = torch.Generator().manual_seed(rank_seed(s, dist.rank))
            loader = make_loader(train_set, sc.batch_size, True, s, exp, device, train=True, dist=dist)
            ctrl = train_controller_epoch(
                controller_model, graph, c_opt, loader, device, table, (upper, lower), sc, gen, steps,
                exp.use_channels_last, progress, f"search {epoch + 1}/{sc.epochs} controller", dist,
                execution=exp.execution,
            )
            c_sched.step()
            dist.sync_buffers(controller)
            # ---- meta-graph epoch (controller fixed)
            graph_stats = {"loss": float("nan"), "accuracy": float("nan")}
            if sc.train_meta_graph:
                s = epoch_seed(exp.seed, "search", epoch, 1)
                seed_everything(rank_seed(s, dist.rank))
                gen = torch.Generator().manual_seed(rank_seed(s, dist.rank))
                loader = make_loader(train_set, sc.batch_size, True, s, exp, device, train=True, dist=dist)
                graph_stats = train_graph_epoch(
                    graph_model, controller, g_opt, loader, device, table, sc, gen, steps, exp.use_channels_last,
                    progress, f"search {epoch + 1}/{sc.epochs} meta-graph", dist, execution=exp.execution,
                )
                dist.sync_buffers(graph)
            # ---- validation (greedy policies; the validation split, never the test split)
            val, res = validate(
                graph, controller, val_loader, device, table, (upper, lower), sc, exp.use_channels_last, dist
            )
            check_finite(None, "validation", loss=float(res["loss"].mean()), reward=val["val_reward"])
        except NonFiniteError as exc:
            raise non_finite_stop(exc, "search", epoch, sc.epochs, out, lr_hint) from None
        measured = float("nan")
        if n_measure:
            policies = res["policy"][measure_idx].float()
            # Timed on rank 0 alone, while the others wait: ranks sharing cores would disturb it.
            measured = on_main(
                dist, lambda: float(measure_routed_latency(graph, controller, policies, timing, device).mean())
            )
        row = {
            "epoch": epoch,
            "upper_bound": upper,
            "lower_bound": lower,
            **val,
            "measured_latency_ms": measured,
            "ctrl_reward": ctrl["reward"],
            "ctrl_greedy_reward": ctrl["greedy_reward"],
            "ctrl_sampled_accuracy": ctrl["acc"],
            "ctrl_greedy_accuracy": ctrl["greedy_acc"],
            "ctrl_latency_ms": ctrl["latency"],
            "ctrl_entropy": ctrl["entropy"],
            "ctrl_loss": ctrl["loss"],
            "graph_loss": graph_stats["loss"],
            "graph_accuracy": graph_stats["accuracy"],
            "controller_lr": c_lr,
            "graph_lr": g_lr,
            "seconds": time.time() - t0,
        }

        def save() -> None:
            # This epoch's models (for variant picking), then the resume state, then the metrics row.
            epoch_ckpt = {
                "stage": "search",
                "epoch": epoch,
                "space_hash": graph.space.space_hash(),
                "lut_hash": lut_hash,
                "controller": controller.state_dict(),
                "val_accuracy": row["val_accuracy"],
                "mean_latency_ms": row["mean_latency_ms"],
                "measured_latency_ms": measured,
                "upper_bound": upper,
                "lower_bound": lower,
            }
            if sc.keep_graph_checkpoints:
                epoch_ckpt["meta_graph"] = graph.state_dict()
            save_checkpoint(out / "epochs" / f"epoch_{epoch:04d}.pt", epoch_ckpt)
            save_checkpoint(
                out / "last.pt",
                {
                    "stage": "search",
                    "epoch": epoch,
                    "epochs": sc.epochs,
                    "space_hash": graph.space.space_hash(),
                    "lut_hash": lut_hash,
                    "config": config_to_dict(cfg),
                    "meta_graph": graph.state_dict(),
                    "controller": controller.state_dict(),
                    "controller_optimizer": c_opt.state_dict(),
                    "controller_scheduler": c_sched.state_dict(),
                    "graph_optimizer": g_opt.state_dict(),
                    "bounds": dict(bounds.__dict__),
                    "rng": capture_rng_state(),
                    "metrics": row,
                },
            )
            metrics.append(row)

        on_main(dist, save)
        if sc.stop_after_epoch is not None and epoch >= sc.stop_after_epoch and epoch < sc.epochs - 1:
            break

    def summarise() -> dict:
        rows = metrics.rows()
        summary = {
            "stage": "search",
            "epochs_done": len(rows),
            "epochs": sc.epochs,
            "finished": len(rows) >= sc.epochs,
            "bounds": dict(bounds.__dict__),
            "reference_latencies": refs,
            "seconds_this_call": time.time() - t_start,
            "first": _floats(rows[0]) if rows else {},
            "last": _floats(rows[-1]) if rows else {},
        }
        if summary["finished"]:
            from .variants import pick_variants

            summary["variants"] = pick_variants(out)
        save_json(out / "summary.json", summary)
        return summary

    return on_main(dist, summarise)


def _floats(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v) if v != "" else float("nan")
        except ValueError:
            out[k] = v
    return out


def format_search_summary(s: dict) -> str:
    last, first = s.get("last", {}), s.get("first", {})
    if not last:
        return "search: no epoch finished"
    text = (
        f"search: {s['epochs_done']}/{s['epochs']} epochs, U {first.get('upper_bound', float('nan')):.3f} -> "
        f"{last['upper_bound']:.3f} ms (L {last['lower_bound']:.3f}), val accuracy {last['val_accuracy']:.4f}, "
        f"mean latency {last['mean_latency_ms']:.3f} ms (table) / {last['measured_latency_ms']:.3f} ms (measured), "
        f"{int(last['val_distinct_policies'])} distinct policies, {s['seconds_this_call']:.1f} s"
    )
    if "variants" in s:
        text += "; variants " + ", ".join(f"{k}=epoch {v['epoch']}" for k, v in s["variants"].items())
    return text
