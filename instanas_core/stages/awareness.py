"""Is a searched controller instance-aware? Per-image records of one run, judged against its own
meta-graph (issues 15 and 20; paper §3, §4.3).

Everything is measured on one meta-graph (the search's last weights), so that only the routing
differs between the methods compared:

* **InstaNAS** -- controllers of several search epochs (the budgets), each with its deployed
  decoding (greedy, ``p > 0.5``), on every validation and test image;
* **the static front** -- fixed children of the same meta-graph (the cheapest path, all modules,
  each single-module path, children drawn at every density, and the deployed controller's own
  architectures used by >= 2% of the test images: the search trained the meta-graph on those, so
  a front without them would credit routing with better-trained weights), each evaluated on the
  same images;
* **latency** -- every method's latency comes from one model: the look-up table, calibrated
  (least squares, ``ms = a * table + b``) on the batch-1 latency measured in one
  :func:`~instanas_core.latency.measure_children` call (minimum over two passes) of every static
  candidate and of the deployed controller's most used architectures; the controller, timed on its
  own, is added to every routed image. A controller that is not collapsed deploys hundreds of
  architectures, too many to time each; the fit's correlation is reported with the results.

BatchNorm is treated alike for both: with the run's ``search.recalibrate_bn`` option on, each
static child and each controller's routed mixture get statistics re-estimated for their own
policies on the same training batches; without it (the paper's method) every method uses the
meta-graph's running statistics as trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..latency import LatencyTable, TimingConfig, correlation_summary, fit_calibration, measure_children, time_callable
from ..meta_graph import MetaGraph
from ..policy import all_ones_policy, greedy_policy, module_path_policy, sample_policy, sample_random_policy
from ..reward import cheapest_policy
from ..rundir import load_checkpoint, stage_dir
from ..train import build_models, build_split, make_loader, pass_inputs, policy_bits, recalibrate_batchnorm, to_device
from ..train.data import unpack_batch
from .evaluate import difficulty_correlation
from .search import controller_view

__all__ = ["Records", "static_candidates", "collect_records", "random_routing", "level_summary"]


@dataclass
class Records:
    """Per-image records of one run. Architectures are rows of ``policies`` (A, T, K), static
    candidates first (``static`` indexes them); ``conf``/``correct[split]`` hold each static
    candidate's top softmax probability and correctness on every image of the split (S, N);
    ``ms`` is every architecture's calibrated latency (A,), ``table_ms`` its table estimate and
    ``measured`` maps the timed architectures to their measured ms. ``routed[name]``, per
    controller (a search epoch), holds the architecture each test image got (``assign``, (N,)),
    its correctness under that controller's BatchNorm, the greedy-sampled gap and, for the
    deployed (last) controller, ``random_correct``: the correctness of random routing."""

    policies: torch.Tensor
    names: list[str]
    static: list[int]
    conf: dict[str, np.ndarray] = field(default_factory=dict)
    correct: dict[str, np.ndarray] = field(default_factory=dict)
    level: np.ndarray | None = None  # test difficulty level (N,), synthetic-difficulty only
    val_level: np.ndarray | None = None  # ... and validation difficulty level (N_val,)
    ms: np.ndarray | None = None
    table_ms: np.ndarray | None = None
    measured: dict[int, float] = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    controller_ms: float = 0.0
    routed: dict[str, dict] = field(default_factory=dict)


def static_candidates(
    meta_graph: MetaGraph, table: LatencyTable, random_children: int, seed: int
) -> tuple[torch.Tensor, list[str]]:
    """Fixed children spanning the latency range: the cheapest path, all modules, each
    single-module path and ``random_children`` drawn at densities U(0.05, 1). (M, T, K)."""
    space = meta_graph.space
    rows = [cheapest_policy(table)[0], all_ones_policy(space)[0]]
    names = ["cheapest", "all modules"]
    for m in space.modules:
        rows.append(module_path_policy(space, m)[0])
        names.append(f"{m} path")
    g = torch.Generator().manual_seed(seed)
    rows += list(sample_random_policy(meta_graph, random_children, g, density=(0.05, 1.0)))
    names += [f"random {i}" for i in range(random_children)]
    return torch.stack(rows), names


@torch.no_grad()
def _outputs(meta_graph, loader, policy_fn, device, channels_last, fields) -> dict[str, np.ndarray]:
    """(top softmax probability, correct, extra fields) per image with the policies ``policy_fn(x)``."""
    meta_graph.eval()
    conf, correct, extra = [], [], {f: [] for f in fields if f not in ("image", "label")}
    for batch in loader:
        b = unpack_batch(batch, fields)
        x = to_device(b["image"], device, channels_last)
        probs = torch.softmax(meta_graph(x, policy_fn(x)).float(), 1)  # (B, classes)
        top, pred = probs.max(1)
        conf.append(top.cpu())
        correct.append((pred.cpu() == b["label"]))
        for f in extra:
            extra[f].append(b[f])
    out = {"conf": torch.cat(conf).numpy(), "correct": torch.cat(correct).numpy()}
    out.update({f: torch.cat(v).numpy() for f, v in extra.items()})
    return out


def random_routing(policy: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The random-routing control: the controller's own policies (N, T, K) given to a random
    permutation of the images, so the architecture histogram (and the latency distribution) is
    the controller's and only the assignment is random."""
    return policy[torch.randperm(len(policy), generator=generator)]


def _fixed(row: torch.Tensor):
    return lambda x: row.expand(x.shape[0], -1, -1)  # (B, T, K)


@torch.no_grad()
def _routed_pass(
    meta_graph, controller, loader, table, search_cfg, device, channels_last, fields, seed, random_repeats: bool
) -> dict:
    """The controller's deployed decoding over ``loader``: greedy policy, correctness and the
    gap between the table latency of a sample (alpha = 1) and of the greedy policy, per image;
    with ``random_repeats``, also random routing: the same policies permuted over the images
    (the controller's histogram kept, only the assignment random), averaged over 3 permutations."""
    view = controller_view(search_cfg, seed=2)
    generator = torch.Generator().manual_seed(seed)
    policies, correct, gaps, levels, images, labels = [], [], [], [], [], []
    for batch in loader:
        b = unpack_batch(batch, fields)
        x = to_device(b["image"], device, channels_last)
        probs = controller(x if view is None else view(x))  # (B, T, K)
        greedy = greedy_policy(probs, meta_graph)
        sampled = sample_policy(probs, meta_graph, 1.0, generator).policy
        correct.append(meta_graph(x, greedy).argmax(1).cpu() == b["label"])
        policies.append(greedy.cpu())
        gaps.append(table.estimate(sampled.cpu()) - table.estimate(greedy.cpu()))
        images.append(b["image"])
        labels.append(b["label"])
        if "difficulty" in b:
            levels.append(b["difficulty"])
    policy = torch.cat(policies)  # (N, T, K)
    out = {"policy": policy, "correct": torch.cat(correct).numpy(), "gap_ms": float(torch.cat(gaps).mean())}
    if levels:
        out["difficulty"] = torch.cat(levels).numpy()
    if random_repeats:
        x_all, y_all = torch.cat(images), torch.cat(labels)
        total = np.zeros(len(policy))
        for _ in range(3):
            shuffled = random_routing(policy, generator)
            for i in range(0, len(policy), 256):
                x = to_device(x_all[i : i + 256], device, channels_last)
                pred = meta_graph(x, shuffled[i : i + 256].to(device)).argmax(1).cpu()
                total[i : i + 256] += (pred == y_all[i : i + 256]).numpy()
        out["random_correct"] = total / 3
    return out


def _bn_buffers(meta_graph) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in meta_graph.state_dict().items() if "running_" in k or "num_batches" in k}


def collect_records(
    cfg: Config,
    run_dir: str | Path,
    table: LatencyTable,
    epochs: list[int],
    random_children: int,
    timing: TimingConfig,
    device: torch.device,
    progress: bool = False,
    timed_routed: int = 48,
    own_children: int = 10,
) -> Records:
    """Evaluate the controllers of search ``epochs`` and the static candidates on the validation
    and test splits of ``cfg``'s data set, on the search's last meta-graph; time every
    architecture. See the module docstring for BatchNorm and timing."""
    exp, search_cfg = cfg.experiment, cfg.search
    search = stage_dir(run_dir, "search")
    meta_graph, controller = build_models(exp, device, seed=exp.seed)
    meta_graph.load_state_dict(load_checkpoint(search / "last.pt", map_location=device)["meta_graph"])
    meta_graph.eval()
    trained_bn = _bn_buffers(meta_graph)
    has_level = exp.dataset == "synthetic-difficulty"
    fields = ("image", "label", "difficulty") if has_level else ("image", "label")
    loaders = {
        split: make_loader(
            build_split(exp, split, augment=False, return_difficulty=has_level), 256, False, 0, exp, device, False
        )
        for split in ("val", "test")
    }
    calib_set = build_split(exp, "train", augment=exp.augment)
    cl = exp.use_channels_last

    def recalibrate(policy_fn) -> None:
        meta_graph.load_state_dict(trained_bn, strict=False)
        if search_cfg.recalibrate_bn:
            calib = pass_inputs(exp, "awareness", 0, 0, calib_set, search_cfg.batch_size, device, None)
            recalibrate_batchnorm(
                meta_graph, calib.loader, policy_fn, search_cfg.recalibrate_bn, device, cl, exp.execution
            )

    static, names = static_candidates(meta_graph, table, random_children, exp.seed)
    archs: dict[str, int] = {}
    rows: list[torch.Tensor] = []
    arch_names: list[str] = []

    def arch_index(row: torch.Tensor, name: str) -> int:
        key = policy_bits(row[None])[0]
        if key not in archs:
            archs[key] = len(rows)
            rows.append(row.bool())
            arch_names.append(name)
        return archs[key]

    static_idx = [arch_index(r, n) for r, n in zip(static, names)]
    rec = Records(policies=torch.empty(0), names=arch_names, static=[])
    # ---- the controllers: deployed (greedy) policies per test image, under their own BatchNorm
    view = controller_view(search_cfg)
    for epoch in epochs:
        ckpt = load_checkpoint(search / "epochs" / f"epoch_{epoch:04d}.pt", map_location=device)
        controller.load_state_dict(ckpt["controller"])
        controller.eval()
        recalibrate(lambda x: greedy_policy(controller(x if view is None else view(x)), meta_graph))
        deployed = epoch == epochs[-1]
        out = _routed_pass(
            meta_graph, controller, loaders["test"], table, search_cfg, device, cl, fields, epoch, deployed
        )
        out["assign"] = np.array([arch_index(r, f"epoch {epoch} architecture") for r in out.pop("policy")])
        if has_level:
            rec.level = out.pop("difficulty")
        rec.routed[f"epoch {epoch}"] = out
    # The deployed controller's own architectures (those given to >= 2% of the test images, at most
    # own_children) join the static candidates: the search trained the meta-graph on them, so a
    # front without them would credit routing with what is only better-trained weights.
    counts = np.bincount(rec.routed[f"epoch {epochs[-1]}"]["assign"], minlength=len(rows))
    own = [int(a) for a in np.argsort(-counts, kind="stable")[:own_children] if counts[a] >= 0.02 * counts.sum()]
    for a in own:
        if a not in static_idx:
            static_idx.append(a)
            arch_names[a] = f"controller's #{own.index(a) + 1} ({100 * counts[a] / counts.sum():.0f}% of test images)"
    rec.static = static_idx
    # ---- every static candidate as a fixed child, under its own BatchNorm
    it = [rows[a].float() for a in static_idx]
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="static children")
    outputs = []
    for row in it:
        fixed_policy = _fixed(row.to(device))
        recalibrate(fixed_policy)
        outputs.append(
            {split: _outputs(meta_graph, loader, fixed_policy, device, cl, fields) for split, loader in loaders.items()}
        )
    for split in loaders:
        rec.conf[split] = np.stack([o[split]["conf"] for o in outputs])
        rec.correct[split] = np.stack([o[split]["correct"] for o in outputs])
    if has_level:
        rec.val_level = outputs[0]["val"]["difficulty"]
    meta_graph.load_state_dict(trained_bn, strict=False)
    rec.policies = torch.stack(rows).float()
    # ---- latency: time the static candidates and the deployed controller's most used architectures
    timed = list(static_idx) + [
        int(a) for a in np.argsort(-counts)[:timed_routed] if counts[a] > 0 and a not in static_idx
    ]
    with torch.no_grad():
        ms = measure_children(meta_graph, rec.policies[timed], None, 1, timing, device, passes=2, progress=progress)
    rec.measured = {a: float(v) for a, v in zip(timed, ms.min(1))}
    rec.table_ms = table.estimate(rec.policies).numpy().astype(float)
    measured = np.array([rec.measured[a] for a in timed])
    fit = fit_calibration(table, rec.policies[timed], measured)  # the profiler's affine fit, on this run's children
    slope, intercept = fit["coef"]
    rec.ms = slope * table.raw_estimate(rec.policies).numpy().astype(float) + intercept
    rec.calibration = {**fit, **correlation_summary(rec.ms[timed], measured), "timed": len(timed)}
    x1 = torch.randn(1, 3, meta_graph.space.resolution, meta_graph.space.resolution, device=device)
    with torch.no_grad():
        rec.controller_ms = time_callable(lambda: controller(x1), timing)["min_ms"]
    return rec


def level_summary(level: np.ndarray, latency: np.ndarray) -> dict:
    """Spearman rho(level, latency), mean latency per level and the level-4 / level-0 ratio."""
    out = difficulty_correlation(level, latency)
    per = out["mean_latency_per_level"]
    out["ratio_hardest_easiest"] = per[max(per)] / per[min(per)] if per and per[min(per)] > 0 else float("nan")
    return out
