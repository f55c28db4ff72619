"""Benchmarks: does instance-awareness save real time, and how good is the latency table?

Each benchmark writes ``DIR/NAME.json`` (raw measurements, a ``summary`` of figures and the
machine's description) and ``DIR/NAME.md`` (a Markdown table). Timings live here, never in
tests. ``instanas bench NAME [--quick] --out DIR``.

* ``lut-accuracy``    -- §4.1 / Figure 4: table estimate vs measured child latency at 32, 64, 224.
* ``routed-latency``  -- batch-1 latency of controller + routed meta-graph vs controller +
  statically extracted child (the dispatch overhead), the subset and masked paths, our
  MobileNetV2 path and torchvision's MobileNetV2 1.0 (CIFAR-adapted).
* ``batched-inference`` -- images/s at batch 256, routed (subset) vs masked, outputs compared.
* ``train-throughput`` -- images/s of drop-path pre-training steps and of the search's two epoch
  kinds, subset vs masked, in the same process.
* ``tradeoff``        -- the paper's headline at CPU scale: InstaNAS variants A-E against
  MobileNetV2 1.0 trained with the same budget (``cifar10-cpu`` preset on CIFAR-10 JPEG q75;
  ``--quick``: the smoke preset), accuracy on the test split and batch-1 latency measured in one
  process with one timing method, controller included; the latency reduction at matched accuracy.

Policies: unless stated otherwise benchmarks use :func:`sample_random_policy` with densities
drawn from ``U(0.05, 0.6)`` -- the search's reward interval starts at 0.7x the all-modules
latency and shrinks from there, so searched policies are sparser than the all-modules path. The
measured mean density is reported with every figure, since any saving scales with it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .controller import build_controller
from .env import describe_environment
from .latency import TimingConfig, thread_limit, time_callable
from .meta_graph import build_meta_graph
from .policy import drop_path_policy, module_path_policy, policy_log_prob, sample_policy, sample_random_policy
from .profile import ProfileConfig, run_profile
from .routing import InstaNASNet

__all__ = ["BENCHMARKS", "BenchConfig", "run_bench", "controller_emitting"]

BENCH_DENSITY = (0.05, 0.6)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    device: str = "cpu"
    threads: int | None = None  # None: torch's default; latency benchmarks use 1
    seed: int = 0
    width_mult: float = 1.0
    children: int | None = None  # lut-accuracy: children per resolution (None: 500, or 60/40 quick)
    resolutions: tuple[int, ...] = (32, 64, 224)  # lut-accuracy
    preset: str | None = None  # tradeoff: None -> cifar10-cpu (smoke with --quick)
    run_dir: str | None = None  # tradeoff: the run folder (None -> DIR/tradeoff-<preset>); finished stages are loaded


def controller_emitting(controller, policy_row: torch.Tensor):
    """Make a controller output ``policy_row`` for any input (fc weights 0, bias +-8 logits), so
    that the routed path's real decision machinery runs but its decision is the one to test."""
    with torch.no_grad():
        controller.fc.weight.zero_()
        controller.fc.bias.copy_((policy_row.flatten().float() * 2 - 1) * 8.0)
    return controller


def _machine(cfg: BenchConfig, threads) -> dict:
    return describe_environment(cfg.device, threads)


def _write(out: Path, name: str, result: dict, table_rows: list[dict]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=float))
    if table_rows:
        keys = list(table_rows[0])
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in table_rows:
            lines.append("| " + " | ".join(_fmt(row[k]) for k in keys) + " |")
        m = result["machine"]
        lines += ["", f"Measured on {m['device_name']} ({m['device']}), {m['threads']} thread(s), torch {m['torch']}, {m['date']}."]
        (out / f"{name}.md").write_text(f"# {name}\n\n" + "\n".join(lines) + "\n")
    return result


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---- lut-accuracy --------------------------------------------------------------------------------
def _finished_profile(folder: Path, pcfg: ProfileConfig) -> dict | None:
    """A resolution profiled earlier into ``folder`` with the same settings apart from the number
    of children (a long benchmark continues where it stopped; the count is reported)."""
    path = folder / "summary.json"
    if not path.is_file() or not (folder / "correlation.csv").is_file():
        return None
    summary = json.loads(path.read_text())
    saved = dict(summary.get("config", {}), children=pcfg.children)
    return summary if saved == dataclasses.asdict(pcfg) else None


def bench_lut_accuracy(cfg: BenchConfig, out: Path) -> dict:
    default = {32: 60, 64: 40} if cfg.quick else {32: 500, 64: 500, 224: 500}
    plan = {r: cfg.children or default.get(r, 500) for r in (cfg.resolutions if not cfg.quick else default)}
    raw, rows = {}, []
    for res, n in plan.items():
        pcfg = ProfileConfig(resolution=res, width_mult=cfg.width_mult, children=n, device=cfg.device,
                             seed=cfg.seed, threads=cfg.threads or 1)
        folder = out / "lut-accuracy" / str(res)
        summary = _finished_profile(folder, pcfg)
        if summary is None:
            summary = run_profile(pcfg, folder)
        else:
            print(f"{res} px: reusing {folder} ({summary['config']['children']} children)")
        n = summary["config"]["children"]
        raw[res] = summary
        e = summary["eval"]
        rows.append({"resolution": res, "children": n, "judged": e["n"], "pearson_r": e["pearson_r"],
                     "spearman_rho": e["spearman_rho"], "mape_pct": e["mape_pct"],
                     "within_10pct": e["within_10pct"], "repeat_within_10pct": e["repeat_within_10pct"],
                     "raw_sum_mape_pct": summary["eval_raw_sum"]["mape_pct"]})
    result = {"raw": raw, "summary": rows, "machine": _machine(cfg, cfg.threads or 1)}
    _write(out, "lut-accuracy", result, rows)
    _plot_lut_accuracy(out, plan, result["machine"])
    return result


def _plot_lut_accuracy(out: Path, plan: dict, machine: dict) -> Path:
    """Figure 4 from the benchmark's folders: ``out/figures/lut-accuracy.png`` (and .pdf)."""
    from .book import load_profile_panel, stack_panels
    from .plots import save_figure, plot_latency_correlation

    panels = [load_profile_panel(out / "lut-accuracy" / str(res)) for res in plan]
    context = f"{machine['device_name']}, {machine['threads']} thread(s), torch {machine['torch']}, batch 1"
    fig = plot_latency_correlation(**stack_panels(panels), context=context,
                                   title="Look-up table vs measured latency of sampled children (instanas bench lut-accuracy)")
    png = save_figure(fig, out, "lut-accuracy")["png"]
    return png


# ---- routed-latency ------------------------------------------------------------------------------
def bench_routed_latency(cfg: BenchConfig, out: Path) -> dict:
    from .baselines import build_baseline

    threads = cfg.threads or 1
    n = 20 if cfg.quick else 100
    timing = TimingConfig(min_run_time=0.02 if cfg.quick else 0.05, blocks=3 if cfg.quick else 5)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = build_meta_graph(32, cfg.width_mult).to(device).eval()
    controller = build_controller(graph).to(device).eval()
    net = InstaNASNet(controller, graph).eval()
    x = torch.randn(1, 3, 32, 32, device=device)
    policies = sample_random_policy(graph, n, torch.Generator().manual_seed(cfg.seed), density=BENCH_DENSITY)
    per_policy = []
    with thread_limit(threads):
        for p in policies:
            controller_emitting(controller, p)
            child = graph.extract_child(p).to(device).eval()
            pd = p.unsqueeze(0).to(device)

            def static(child=child):
                controller(x)
                return child(x)

            per_policy.append({
                "density": float(p.mean()),
                "routed_ms": time_callable(lambda: net(x), timing)["min_ms"],
                "static_ms": time_callable(static, timing)["min_ms"],
                "subset_no_cache_ms": time_callable(lambda: (controller(x), graph(x, pd, "subset")), timing)["min_ms"],
                "masked_ms": time_callable(lambda: (controller(x), graph(x, pd, "masked")), timing)["min_ms"],
            })
        path = graph.extract_child(module_path_policy(graph, "ir_k3_e6")[0]).to(device).eval()
        mbv2 = build_baseline("mobilenetv2-1.0", 32, 10).to(device).eval()
        refs = {
            "controller_ms": time_callable(lambda: controller(x), timing)["min_ms"],
            "meta_mobilenetv2_path_ms": time_callable(lambda: path(x), timing)["min_ms"],
            "torchvision_mobilenetv2_1.0_ms": time_callable(lambda: mbv2(x), timing)["min_ms"],
        }
    ratio = np.array([r["routed_ms"] / r["static_ms"] for r in per_policy])
    summary = {
        "policies": n,
        "mean_density": float(np.mean([r["density"] for r in per_policy])),
        "routed_over_static_median": float(np.median(ratio)),
        "dispatch_overhead_pct_median": float(100 * (np.median(ratio) - 1)),
        "dispatch_overhead_pct_p90": float(100 * (np.percentile(ratio, 90) - 1)),
        "subset_no_cache_over_static_median": float(np.median([r["subset_no_cache_ms"] / r["static_ms"] for r in per_policy])),
        "masked_over_routed_median": float(np.median([r["masked_ms"] / r["routed_ms"] for r in per_policy])),
        "routed_ms_mean": float(np.mean([r["routed_ms"] for r in per_policy])),
        **refs,
    }
    result = {"config": dataclasses.asdict(cfg), "raw": per_policy, "summary": summary, "machine": _machine(cfg, threads)}
    return _write(out, "routed-latency", result, [{"figure": k, "value": v} for k, v in summary.items()])


# ---- batched-inference ---------------------------------------------------------------------------
def _throughput(fn: Callable[[], object], images: int, repeats: int, device: torch.device) -> float:
    """Best-of-``repeats`` images per second of ``fn`` (one warm-up call first)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return images / best


def bench_batched_inference(cfg: BenchConfig, out: Path) -> dict:
    batch = 256
    repeats = 2 if cfg.quick else 5
    width = min(0.5, cfg.width_mult) if cfg.quick else cfg.width_mult
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = build_meta_graph(32, width).to(device).eval()
    x = torch.randn(batch, 3, 32, 32, device=device)
    policy = sample_random_policy(graph, batch, torch.Generator().manual_seed(cfg.seed), density=BENCH_DENSITY).to(device)
    with torch.inference_mode():
        routed_out = graph(x, policy, "subset")
        masked_out = graph(x, policy, "masked")
        max_diff = float((routed_out - masked_out).abs().max())
        routed = _throughput(lambda: graph(x, policy, "subset"), batch, repeats, device)
        masked = _throughput(lambda: graph(x, policy, "masked"), batch, repeats, device)
    summary = {
        "batch": batch, "width_mult": width, "mean_density": float(policy.float().mean()),
        "routed_images_per_s": routed, "masked_images_per_s": masked, "speedup": routed / masked,
        "max_abs_output_diff": max_diff, "outputs_equal": bool(torch.allclose(routed_out, masked_out, rtol=1e-4, atol=1e-4)),
    }
    result = {"config": dataclasses.asdict(cfg), "summary": summary, "machine": _machine(cfg, torch.get_num_threads())}
    return _write(out, "batched-inference", result, [{"figure": k, "value": v} for k, v in summary.items()])


# ---- train-throughput ----------------------------------------------------------------------------
def bench_train_throughput(cfg: BenchConfig, out: Path) -> dict:
    """Images/s of the three training step kinds, subset vs masked, same process and data.

    * pre-train: drop-path policies (rate 0.5, the end of §3.2's schedule), forward + backward;
    * search, meta-graph epoch: sampled controller policies shuffled in the batch, fwd + bwd;
    * search, controller epoch: meta-graph forward without gradient for the sampled and the
      greedy policy, controller forward + backward through log P (Eq. 1).
    """
    batch = 32  # the paper's batch size (§4.2)
    width = min(0.5, cfg.width_mult) if cfg.quick else cfg.width_mult
    repeats = 2 if cfg.quick else 4
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = build_meta_graph(32, width).to(device).train()
    controller = build_controller(graph).to(device).train()
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    search_policy = sample_random_policy(graph, batch, gen, density=BENCH_DENSITY).to(device)

    def pretrain_step(execution):
        policy = drop_path_policy(graph, batch, 0.5, gen).to(device)
        graph.zero_grad(set_to_none=True)
        F.cross_entropy(graph(x, policy, execution), y).backward()

    def meta_step(execution):
        policy = search_policy[torch.randperm(batch, generator=gen).to(device)]  # policy shuffling
        graph.zero_grad(set_to_none=True)
        F.cross_entropy(graph(x, policy, execution), y).backward()

    def controller_step(execution):
        probs = controller(x)
        sample = sample_policy(probs, graph, alpha=0.8, generator=gen)
        with torch.no_grad():
            r = (graph(x, sample.policy, execution).argmax(1) == y).float()
            rg = (graph(x, (probs.detach() > 0.5).float(), execution).argmax(1) == y).float()
        controller.zero_grad(set_to_none=True)
        (-(r - rg) * policy_log_prob(sample.actions, probs)).mean().backward()

    rows = []
    for name, step in (("pretrain_drop_path", pretrain_step), ("search_meta_graph_epoch", meta_step),
                       ("search_controller_epoch", controller_step)):
        fig = {"step": name}
        for execution in ("subset", "masked"):
            fig[f"{execution}_images_per_s"] = _throughput(lambda: step(execution), batch, repeats, device)
        fig["speedup"] = fig["subset_images_per_s"] / fig["masked_images_per_s"]
        rows.append(fig)
    summary = {"batch": batch, "width_mult": width, "search_policy_density": float(search_policy.mean()), "steps": rows}
    result = {"config": dataclasses.asdict(cfg), "summary": summary, "machine": _machine(cfg, torch.get_num_threads())}
    return _write(out, "train-throughput", result, rows)


# ---- tradeoff ------------------------------------------------------------------------------------
TRADEOFF_BASELINE = "mobilenetv2-1.0"
MATCHED_ACCURACY_PT = 0.5  # "comparable accuracy": at most this many points below the baseline


def _variant_latency(cfg, run_dir: Path, letter: str, images: int, timing: TimingConfig, threads: int) -> dict:
    """Batch-1 latency of variant ``letter`` (controller + the child each test image gets), on
    the first ``images`` test images, distinct policies timed once."""
    from .book import variant_config
    from .policy import greedy_policy
    from .stages.common import build_split, make_loader, measure_routed_latency, to_device
    from .stages.evaluate import load_trained

    vcfg = variant_config(cfg, letter)
    device = torch.device(cfg.experiment.device)
    graph, controller, _ = load_trained(vcfg, run_dir, device, vcfg.finetune.out_dir, letter)
    data = build_split(vcfg.experiment, "test", augment=False)
    loader = make_loader(data, images, False, 0, vcfg.experiment, device, train=False)
    image, _ = next(iter(loader))
    with torch.no_grad():
        x = to_device(image[:images], device, vcfg.experiment.channels_last)
        policy = greedy_policy(controller(x), graph).cpu()  # (n, T, K)
    ms = measure_routed_latency(graph, controller, policy, timing, device, threads)
    return {"mean_ms": float(ms.mean()), "std_ms": float(ms.std()), "images": len(ms),
            "distinct_policies": int(torch.unique(policy.reshape(len(policy), -1), dim=0).shape[0]),
            "modules_per_image": float(policy.sum((1, 2)).mean())}


def bench_tradeoff(cfg: BenchConfig, out: Path) -> dict:
    from . import book
    from .baselines import build_baseline, measure_model_latency

    preset = cfg.preset or ("smoke" if cfg.quick else "cifar10-cpu")
    run_dir = Path(cfg.run_dir) if cfg.run_dir else out / f"tradeoff-{preset}"
    pcfg = book.book_preset(preset)
    if pcfg.experiment.dataset == "cifar10-jpeg":
        book._use_shared_cifar10_jpeg()  # the copy beside a checkout, as the notebooks find it
    if cfg.device != "cpu":
        pcfg = dataclasses.replace(pcfg, experiment=dataclasses.replace(pcfg.experiment, device=cfg.device))
    letters = book.book_variants(preset)
    trained = {L: book.ensure_variant(pcfg, run_dir, L) for L in letters}
    base = book.ensure_baseline(pcfg, run_dir, TRADEOFF_BASELINE)

    threads = cfg.threads or 1
    images = 16 if cfg.quick else 64
    timing = TimingConfig(min_run_time=0.01 if cfg.quick else 0.05, blocks=2 if cfg.quick else 5)
    res, classes = pcfg.experiment.info.resolution, pcfg.experiment.info.num_classes
    rows = []
    with thread_limit(threads):
        # The baseline's latency does not depend on its weights: a fresh copy of the architecture is timed.
        torch.manual_seed(cfg.seed)
        base_ms = measure_model_latency(build_baseline(TRADEOFF_BASELINE, res, classes), res, threads, timing, cfg.device)["min_ms"]
        rows.append({"model": TRADEOFF_BASELINE, "test_accuracy_pct": base["accuracy_pct"],
                     "measured_ms": base_ms, "estimated_ms": None, "distinct_policies": 1})
        for L in letters:
            ev = trained[L]["evaluate"]
            lat = _variant_latency(pcfg, run_dir, L, images, timing, threads)
            rows.append({"model": f"InstaNAS-{L}", "test_accuracy_pct": 100 * ev["accuracy"], "measured_ms": lat["mean_ms"],
                         "estimated_ms": ev["latency_estimate_ms"]["mean"], "distinct_policies": lat["distinct_policies"]})
    for r in rows:
        r["reduction_vs_baseline_pct"] = 100 * (1 - r["measured_ms"] / base_ms)
        r["accuracy_vs_baseline_pt"] = r["test_accuracy_pct"] - rows[0]["test_accuracy_pct"]
    matched = [r for r in rows[1:] if r["accuracy_vs_baseline_pt"] >= -MATCHED_ACCURACY_PT]
    best = min(matched, key=lambda r: r["measured_ms"]) if matched else None
    summary = {
        "preset": preset, "dataset": pcfg.experiment.dataset, "run_dir": str(run_dir), "baseline": TRADEOFF_BASELINE,
        "matched_accuracy_pt": MATCHED_ACCURACY_PT, "images_timed_per_variant": images,
        "best_matched_variant": best["model"] if best else None,
        "latency_reduction_at_matched_accuracy_pct": best["reduction_vs_baseline_pct"] if best else None,
        "rows": rows,
    }
    result = {"config": dataclasses.asdict(cfg), "summary": summary, "machine": _machine(cfg, threads)}
    return _write(out, "tradeoff", result, rows)


BENCHMARKS: dict[str, Callable[[BenchConfig, Path], dict]] = {
    "lut-accuracy": bench_lut_accuracy,
    "routed-latency": bench_routed_latency,
    "batched-inference": bench_batched_inference,
    "train-throughput": bench_train_throughput,
    "tradeoff": bench_tradeoff,
}


def run_bench(name: str, cfg: BenchConfig, out_dir: str | Path) -> dict:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[name](cfg, Path(out_dir))
