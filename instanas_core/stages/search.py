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

import dataclasses
import time
from pathlib import Path

import torch

from ..config import Config, SearchConfig, config_to_dict
from ..controller import Controller
from ..distributed import DistContext, distributed_session, on_main, unwrap
from ..latency import LatencyTable, TimingConfig, thread_limit
from ..meta_graph import MetaGraph
from ..policy import encourage, greedy_policy, policy_entropy, policy_log_prob, sample_policy
from ..reward import (
    RewardBounds,
    combined_reward,
    monotone_reward,
    reference_latencies,
    resolve_bounds,
    schedule_fraction,
)
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
    measure_routed_latency,
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
    "SEARCH_COLUMNS",
    "controller_loss",
    "controller_step",
    "meta_graph_step",
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
    "ctrl_greedy_latency_ms",
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


@dataclasses.dataclass(frozen=True)
class ControllerSchedule:
    """What moves during the search (§3.3 and the named options): the reward bounds ``(U_t, L_t)``,
    and, in the sharpening phase (``search.sharpen_share``), the encouragement and the entropy
    term. ``at(epoch, step)`` gives them for controller step ``step`` of ``epoch``."""

    bounds: RewardBounds
    cfg: SearchConfig
    steps: int  # controller steps per epoch

    def fraction(self, epoch: int, step: int) -> float:
        return schedule_fraction(epoch, self.cfg.epochs, step, self.steps, self.cfg.bound_schedule == "step")

    def at(self, epoch: int, step: int) -> tuple[float, float, float, float]:
        """(U_t, L_t, alpha, entropy_bonus)."""
        cfg = self.cfg
        upper, lower = self.bounds.at_fraction(self.fraction(epoch, step), cfg.bound_end_share)
        alpha, entropy = cfg.alpha, cfg.entropy_bonus
        if cfg.sharpen_share > 0:
            # Sharpening moves per controller step whatever the bound schedule.
            done = schedule_fraction(epoch, cfg.epochs, step, self.steps, per_step=True)
            s = min(1.0, max(0.0, (done - (1.0 - cfg.sharpen_share)) / cfg.sharpen_share))
            alpha = alpha + (1.0 - alpha) * s
            entropy = entropy + (-cfg.sharpen_weight - entropy) * s
        return upper, lower, alpha, entropy


def search_reward(correct: torch.Tensor, latency: torch.Tensor, upper: float, lower: float, cfg: SearchConfig):
    """The controller's reward per sample: Eq. 2 (``search.reward="eq2"``) or the monotone option."""
    if cfg.reward == "monotone":
        return monotone_reward(correct, latency, upper, lower, cfg.reward_correct, cfg.reward_wrong, cfg.latency_weight)
    return combined_reward(correct, latency, upper, lower, cfg.reward_correct, cfg.reward_wrong)


def leave_one_out_advantage(reward: torch.Tensor) -> torch.Tensor:
    """``R_k - mean_{j != k} R_j`` over the K draws of each image (RLOO, Kool et al. 2019): an
    unbiased baseline from the sampled policies themselves. reward (K, B) -> (K, B); K >= 2."""
    k = reward.shape[0]
    return reward - (reward.sum(0, keepdim=True) - reward) / (k - 1)


def controller_inputs(x: torch.Tensor, cfg: SearchConfig, generator: torch.Generator) -> torch.Tensor:
    """What the controller sees: the image itself, or, for the ``controller_input="shuffled"``
    control, another image of the same batch (so it cannot route by the image it serves)."""
    if cfg.controller_input == "shuffled":
        return x[torch.randperm(x.shape[0], generator=generator).to(x.device)]
    return x


def controller_view(cfg: SearchConfig, seed: int = 0):
    """For inference (:func:`~instanas_core.train.infer`): None for the paper's controller, or the
    shuffled control's view, a fixed-seed permutation of each batch."""
    if cfg.controller_input != "shuffled":
        return None
    generator = torch.Generator().manual_seed(seed)
    return lambda x: controller_inputs(x, cfg, generator)


def controller_step(
    controller,
    meta_graph: MetaGraph,
    optimizer: torch.optim.Optimizer,
    table: LatencyTable,
    schedule,
    search_cfg: SearchConfig,
    generator: torch.Generator,
    dist: DistContext | None = None,
    execution: str = "subset",
) -> StepFn:
    """The step of a controller epoch (§3.3, Eq. 1-2) for :func:`~instanas_core.train.run_pass`,
    with the meta-graph fixed (the caller puts it in eval mode and the controller, possibly in
    DDP, in train mode). ``schedule(i)`` gives ``(U_t, L_t, alpha, entropy_bonus)`` at step ``i``
    (a fixed ``(U_t, L_t)`` is the paper's per-epoch schedule, with the configuration's alpha and
    entropy term). A non-finite loss or reward raises before its update. Each image draws ``search.samples`` policies; the advantage is ``R - R(greedy)``
    (self-critical, the paper's) or leave-one-out over the draws (``search.baseline="loo"``)."""
    meta_graph = unwrap(meta_graph)
    k = search_cfg.samples
    loo = search_cfg.baseline == "loo"

    def step(i: int, x: torch.Tensor, y: torch.Tensor) -> tuple[int, dict[str, float]]:
        b = x.shape[0]
        at = schedule(i) if callable(schedule) else tuple(schedule)
        if len(at) == 2:  # fixed (U_t, L_t) for the whole epoch: the paper's schedule and the config's alpha
            at = (*at, search_cfg.alpha, search_cfg.entropy_bonus)
        upper, lower, alpha, entropy_bonus = at
        # ---- policies: K Bernoulli draws of the encouraged probabilities per image, and the greedy one
        probs = controller(controller_inputs(x, search_cfg, generator))  # (B, T, K)
        probs_k = probs.repeat(k, 1, 1) if k > 1 else probs  # (k*B, T, K): draw j of image n at j*B + n
        sampled = sample_policy(probs_k, meta_graph, alpha, generator)
        greedy = greedy_policy(probs, meta_graph)  # (B, T, K): the self-critical baseline
        # ---- reward (Eq. 2 or the option): one forward; eval-mode BatchNorm keeps samples independent
        run = sampled.policy if loo else torch.cat([sampled.policy, greedy])  # (R, T, K)
        with torch.no_grad():
            xs, ys = x.repeat(run.shape[0] // b, 1, 1, 1), y.repeat(run.shape[0] // b)
            correct = meta_graph(xs, run, execution).argmax(1) == ys  # (R,)
            latency = table.estimate(run).to(x.device)  # (R,)
            reward = search_reward(correct, latency, upper, lower, search_cfg)
            greedy_latency = table.estimate(greedy).to(x.device) if loo else latency[k * b :]  # (B,)
        # ---- policy gradient (Eq. 1) with the chosen baseline
        n = k * b
        if loo:
            advantage = leave_one_out_advantage(reward.view(k, b)).reshape(n)  # (k*B,)
        else:
            advantage = reward[:n] - reward[n:].repeat(k)  # (k*B,)
        loss, entropy = controller_loss(probs_k, sampled.actions, advantage, alpha, entropy_bonus)
        nan = float("nan")
        stats = {"reward": reward[:n].mean().item(), "greedy_reward": nan, "loss": loss.item()}
        if loo:
            check_finite(dist, "controller", i, reward=stats["reward"], loss=stats["loss"])
        else:
            stats["greedy_reward"] = reward[n:].mean().item()
            check_finite(dist, "controller", i, **stats)
        # ---- update the controller
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return b, {
            **stats,
            "accuracy": correct[:n].float().mean().item(),
            "greedy_accuracy": nan if loo else correct[n:].float().mean().item(),
            "latency": latency[:n].mean().item(),
            "greedy_latency": greedy_latency.mean().item(),
            "entropy": entropy.item(),
        }

    return step


def meta_graph_step(
    model,
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    table: LatencyTable,
    search_cfg: SearchConfig,
    generator: torch.Generator,
    dist: DistContext | None = None,
    execution: str = "subset",
    alpha: float | None = None,
) -> StepFn:
    """The step of a meta-graph epoch (§3.3) for :func:`~instanas_core.train.run_pass`, with the
    controller fixed: sampled policies, shuffled within the batch ("policy random shuffling";
    under torchrun within each rank's share), task loss only. ``model`` is the meta-graph,
    possibly in DDP; the caller sets train mode on it and eval mode on the controller."""
    meta_graph, controller = unwrap(model), unwrap(controller)
    alpha = search_cfg.alpha if alpha is None else alpha  # the schedule's, while sharpening

    def policies(x: torch.Tensor) -> torch.Tensor:
        # The controller's samples, re-paired with the images of the batch.
        with torch.no_grad():
            policy = sample_policy(
                controller(controller_inputs(x, search_cfg, generator)), meta_graph, alpha, generator
            ).policy
        if search_cfg.policy_shuffle:
            perm = torch.randperm(x.shape[0], generator=generator).to(policy.device)
            policy = policy[perm]
        return policy

    return policy_step(model, policies, optimizer, None, table, dist, execution, "meta-graph training")


def validate(
    meta_graph: MetaGraph,
    controller: Controller,
    loader,
    device: torch.device,
    table: LatencyTable,
    bounds: tuple[float, float],
    search_cfg: SearchConfig,
    channels_last: bool = True,
    dist: DistContext | None = None,
) -> tuple[dict, dict]:
    """Greedy policies on the validation split: accuracy, table latency, reward, diversity (with
    ``dist``, over all ranks' shards)."""
    res = infer(
        meta_graph,
        loader,
        device,
        ("image", "label"),
        controller=controller,
        channels_last=channels_last,
        dist=dist,
        controller_view=controller_view(search_cfg),
    )
    correct = res["pred"] == res["label"]
    latency = table.estimate(res["policy"].float())  # (N,)
    reward = search_reward(correct, latency, bounds[0], bounds[1], search_cfg)
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
        raise RunDirError(
            f"the search starts from a pre-trained meta-graph, but {pre} does not exist: run `instanas pretrain` first."
        )
    with (
        distributed_session(exp.device) as dist,
        begin_stage(cfg, run_dir, "search", resume, overwrite, dist=dist) as start,
    ):
        progress = progress and dist.is_main
        with thread_limit(exp.threads):
            table, lut_path = ensure_latency_table(cfg, run_dir, start.device, progress, dist)
            return _search(cfg, start.out, start.device, table, lut_path, pre, start.resume_state, progress, dist)


def _search(
    cfg: Config,
    out: Path,
    device,
    table: LatencyTable,
    lut_path: Path,
    pre: Path,
    state,
    progress: bool,
    dist: DistContext,
) -> dict:
    exp, search_cfg = cfg.experiment, cfg.search
    meta_graph, controller = build_models(exp, device, seed=exp.seed)
    pretrained = load_checkpoint(pre, map_location=device)
    if pretrained.get("space_hash") != meta_graph.space.space_hash():
        raise RunDirError(
            f"{pre} was trained for another search space than this run's; use the same preset and settings."
        )
    meta_graph.load_state_dict(pretrained["meta_graph"])
    lut_hash = latency_table_hash(lut_path)

    refs = reference_latencies(table)
    bounds = resolve_bounds(
        refs,
        search_cfg.upper_start_factor,
        search_cfg.upper_end_factor,
        search_cfg.upper_start_ms,
        search_cfg.upper_end_ms,
        search_cfg.lower_start_ms,
        search_cfg.lower_end_ms,
    )
    train_set, val_set, val_loader, steps = training_data(
        exp, search_cfg.batch_size, search_cfg.max_steps_per_epoch, device, dist
    )

    c_opt = torch.optim.Adam(
        controller.parameters(), lr=search_cfg.controller_lr, weight_decay=search_cfg.controller_weight_decay
    )
    c_sched = torch.optim.lr_scheduler.StepLR(c_opt, step_size=search_cfg.controller_lr_step or 10**9, gamma=0.1)
    g_opt = make_optimizer(
        meta_graph.parameters(),
        "sgd",
        search_cfg.graph_lr,
        search_cfg.graph_weight_decay,
        search_cfg.graph_momentum,
        nesterov=False,
    )
    if state is not None:
        check_space_hash(state, meta_graph.space.space_hash(), f"cannot resume the search: {out / 'last.pt'}")
        check_latency_table_hash(state, lut_path, f"cannot resume the search: {out / 'last.pt'}")
        bounds = RewardBounds(**state["bounds"])
    parts = {
        "meta_graph": meta_graph,
        "controller": controller,
        "controller_optimizer": c_opt,
        "controller_scheduler": c_sched,
        "graph_optimizer": g_opt,
    }
    first = resume_training(state, parts)
    metrics = open_metrics(dist, out / "metrics.csv", SEARCH_COLUMNS, first)

    def start_files() -> None:
        save_json(
            out / "bounds.json",
            {"bounds": bounds.__dict__, "reference_latencies": refs, "latency_table": str(lut_path)},
        )
        (out / "epochs").mkdir(exist_ok=True)

    on_main(dist, start_files)
    # Both models train in DDP; subset execution makes the meta-graph's used parameters differ per rank.
    graph_model = dist.wrap(meta_graph, find_unused_parameters=True)
    controller_model = dist.wrap(controller)

    # The same validation samples are timed every epoch (seeded), so epochs compare.
    n_measure = min(search_cfg.measure_samples, len(val_set))
    measure_idx = torch.randperm(len(val_set), generator=torch.Generator().manual_seed(exp.seed))[:n_measure]
    timing = TimingConfig(min_run_time=search_cfg.measure_min_run_time, blocks=search_cfg.measure_blocks, warmup=1)

    schedule = ControllerSchedule(bounds, search_cfg, steps)

    def recalibrate(epoch: int, phase: int, policies) -> None:
        # The named option search.recalibrate_bn: BatchNorm statistics for the policies judged next.
        if search_cfg.recalibrate_bn:
            calib = pass_inputs(exp, "search", epoch, phase, train_set, search_cfg.batch_size, device, None)
            with torch.no_grad():
                recalibrate_batchnorm(
                    meta_graph,
                    calib.loader,
                    lambda x: policies(controller(controller_inputs(x, search_cfg, calib.generator)), calib.generator),
                    search_cfg.recalibrate_bn,
                    device,
                    exp.use_channels_last,
                    exp.execution,
                )

    def epoch_fn(epoch: int) -> EpochResult:
        upper, lower, alpha, _ = schedule.at(epoch, steps - 1)  # logged: the values at the epoch's last step
        c_lr, g_lr = c_opt.param_groups[0]["lr"], g_opt.param_groups[0]["lr"]
        desc = f"search {epoch + 1}/{search_cfg.epochs}"
        # ---- controller epoch (meta-graph fixed, eval mode)
        controller.eval()
        recalibrate(epoch, 2, lambda p, g: sample_policy(p, meta_graph, alpha, g).policy)
        inputs = pass_inputs(exp, "search", epoch, 0, train_set, search_cfg.batch_size, device, dist)
        meta_graph.eval()
        controller_model.train()
        step = controller_step(
            controller_model,
            meta_graph,
            c_opt,
            table,
            lambda i: schedule.at(epoch, i),
            search_cfg,
            inputs.generator,
            dist,
            exp.execution,
        )
        ctrl = run_pass(
            step,
            inputs.loader,
            steps,
            device,
            exp.use_channels_last,
            f"{desc} controller",
            progress,
            dist,
            ("loss", "accuracy", "latency", "reward"),
        )
        c_sched.step()
        dist.sync_buffers(controller)
        # ---- meta-graph epoch (controller fixed)
        graph_stats = {"loss": float("nan"), "accuracy": float("nan")}
        if search_cfg.train_meta_graph:
            inputs = pass_inputs(exp, "search", epoch, 1, train_set, search_cfg.batch_size, device, dist)
            controller.eval()
            graph_model.train()
            step = meta_graph_step(
                graph_model, controller, g_opt, table, search_cfg, inputs.generator, dist, exp.execution, alpha
            )
            graph_stats = run_pass(
                step,
                inputs.loader,
                steps,
                device,
                exp.use_channels_last,
                f"{desc} meta-graph",
                progress,
                dist,
                ("loss", "accuracy", "latency"),
            )
            dist.sync_buffers(meta_graph)
        # ---- validation (greedy policies; the validation split, never the test split)
        controller.eval()
        recalibrate(epoch, 3, lambda p, g: greedy_policy(p, meta_graph))
        val, res = validate(
            meta_graph, controller, val_loader, device, table, (upper, lower), search_cfg, exp.use_channels_last, dist
        )
        check_finite(None, "validation", loss=float(res["loss"].mean()), reward=val["val_reward"])
        measured = float("nan")
        if n_measure:
            policies = res["policy"][measure_idx].float()
            # Timed on rank 0 alone, while the others wait: ranks sharing cores would disturb it.
            measured = on_main(
                dist, lambda: float(measure_routed_latency(meta_graph, controller, policies, timing, device).mean())
            )
        row = {
            "epoch": epoch,
            "upper_bound": upper,
            "lower_bound": lower,
            **val,
            "measured_latency_ms": measured,
            "ctrl_reward": ctrl["reward"],
            "ctrl_greedy_reward": ctrl["greedy_reward"],
            "ctrl_sampled_accuracy": ctrl["accuracy"],
            "ctrl_greedy_accuracy": ctrl["greedy_accuracy"],
            "ctrl_latency_ms": ctrl["latency"],
            "ctrl_greedy_latency_ms": ctrl["greedy_latency"],
            "ctrl_entropy": ctrl["entropy"],
            "ctrl_loss": ctrl["loss"],
            "graph_loss": graph_stats["loss"],
            "graph_accuracy": graph_stats["accuracy"],
            "controller_lr": c_lr,
            "graph_lr": g_lr,
        }
        # This epoch's models, for variant picking (written before last.pt).
        epoch_ckpt = {
            "stage": "search",
            "epoch": epoch,
            "space_hash": meta_graph.space.space_hash(),
            "lut_hash": lut_hash,
            "controller": controller.state_dict(),
            "val_accuracy": row["val_accuracy"],
            "mean_latency_ms": row["mean_latency_ms"],
            "measured_latency_ms": measured,
            "upper_bound": upper,
            "lower_bound": lower,
        }
        if search_cfg.keep_graph_checkpoints:
            epoch_ckpt["meta_graph"] = meta_graph.state_dict()
        state = {
            "stage": "search",
            "epoch": epoch,
            "epochs": search_cfg.epochs,
            "space_hash": meta_graph.space.space_hash(),
            "lut_hash": lut_hash,
            "config": config_to_dict(cfg),
            "meta_graph": meta_graph.state_dict(),
            "controller": controller.state_dict(),
            "controller_optimizer": c_opt.state_dict(),
            "controller_scheduler": c_sched.state_dict(),
            "graph_optimizer": g_opt.state_dict(),
            "bounds": dict(bounds.__dict__),
        }
        return EpochResult(row, state, {f"epochs/epoch_{epoch:04d}.pt": epoch_ckpt})

    t_start = time.time()
    lr_hint = f"search.controller_lr={search_cfg.controller_lr:g}, search.graph_lr={search_cfg.graph_lr:g}"
    run_epochs(
        EpochLoop("search", search_cfg.epochs, search_cfg.stop_after_epoch, out, lr_hint, dist),
        first,
        metrics,
        epoch_fn,
    )

    def summarise() -> dict:
        rows = metrics.rows()
        summary = {
            "stage": "search",
            "epochs_done": len(rows),
            "epochs": search_cfg.epochs,
            "finished": len(rows) >= search_cfg.epochs,
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
