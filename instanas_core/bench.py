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
* ``instance-awareness`` -- is the controller instance-aware, against the static front, confidence
  cascades and random routing (:mod:`instanas_core.bench_awareness`).

``--device cuda``, ``--precision bf16`` (autocast) and ``--channels-last`` apply to
``batched-inference`` and ``train-throughput``; ``benchmarks/gpu/`` holds an H200 run.
``tradeoff --baseline-budget same`` (default) trains MobileNetV2 1.0 for as many epochs as
InstaNAS's stages together.

Throughput bounds: routing can save at most the share of modules a policy leaves out, so a
speed-up over the masked reference is bounded by 1 / density. Drop-path at the end of §3.2's
schedule (rate 0.5) keeps half the modules, which caps pre-training at 2x before any overhead.

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
from .ownership import claim, open_output_folder
from .policy import drop_path_policy, module_path_policy, policy_log_prob, sample_policy, sample_random_policy
from .profile import ProfileConfig, run_profile
from .routing import InstaNASNet

__all__ = ["BENCHMARKS", "BenchConfig", "run_bench", "controller_emitting", "tradeoff_baseline_budget"]

BENCH_DENSITY = (0.05, 0.6)
PRECISIONS = ("fp32", "bf16")
BASELINE_BUDGETS = ("same", "preset")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    device: str = "cpu"
    threads: int | None = None  # None: torch's default; latency benchmarks use 1
    seed: int = 0
    width_mult: float = 1.0
    children: int | None = None  # lut-accuracy: children per resolution (None: 500, or 60/40 quick)
    resolutions: tuple[int, ...] = (32, 64, 224)  # lut-accuracy
    passes: int = 2  # lut-accuracy: timing passes per child (see ProfileConfig.passes)
    preset: str | None = None  # tradeoff: None -> cifar10-cpu (smoke with --quick)
    run_dir: str | None = None  # tradeoff: the run folder (None -> DIR/tradeoff-<preset>); finished stages are loaded
    baseline_budget: str = "same"  # tradeoff: "same" (InstaNAS's epochs, all stages) or "preset" (the book's baseline)
    precision: str = "fp32"  # batched-inference, train-throughput: "fp32" or "bf16" (autocast)
    runtime: str = "pytorch"  # routed-latency: "onnxruntime" adds the children exported to ONNX, side by side
    # batched-inference, train-throughput: NHWC model and input; None as the stages do (CPU yes, CUDA no)
    channels_last: bool | None = None
    # instance-awareness: the cascades' stage counts, and mean-latency budgets in ms (None: InstaNAS's
    # own latencies plus five spread over the static front)
    cascade_stages: tuple[int, ...] = (2, 3)
    budgets: tuple[float, ...] | None = None
    datasets: tuple[str, ...] | None = (
        None  # instance-awareness: None -> synthetic-difficulty (+ cifar10-jpeg unless quick)
    )

    @property
    def use_channels_last(self) -> bool:
        return self.device == "cpu" if self.channels_last is None else self.channels_last

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        if self.runtime not in ("pytorch", "onnxruntime"):
            raise ValueError(f"--runtime must be pytorch or onnxruntime, got {self.runtime!r}.")
        bad = [k for k in self.cascade_stages if not 2 <= k <= 4]
        if bad or not self.cascade_stages:
            raise ValueError(
                f"--cascade-stages must list stage counts from 2 to 4 (a cheap child, then one or more larger "
                f"ones), got {list(self.cascade_stages)}."
            )
        known = ("synthetic-difficulty", "cifar10-jpeg")
        if self.datasets is not None and (not self.datasets or any(d not in known for d in self.datasets)):
            raise ValueError(f"--datasets must be among {', '.join(known)}, got {list(self.datasets)}.")
        if self.budgets is not None and (not self.budgets or any(not b > 0 for b in self.budgets)):
            raise ValueError(f"--budgets must list positive mean latencies in ms, got {list(self.budgets)}.")
        if self.baseline_budget not in BASELINE_BUDGETS:
            raise ValueError(f"baseline_budget must be one of {BASELINE_BUDGETS}, got {self.baseline_budget!r}.")


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
    open_output_folder(out, "bench")
    claim(out / f"{name}.json").write_text(json.dumps(result, indent=1, default=float))
    if table_rows:
        keys = list(table_rows[0])
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in table_rows:
            lines.append("| " + " | ".join(_fmt(row[k]) for k in keys) + " |")
        m = result["machine"]
        lines += [
            "",
            f"Measured on {m['device_name']} ({m['device']}), {m['threads']} thread(s), torch {m['torch']}, {m['date']}.",
        ]
        claim(out / f"{name}.md").write_text(f"# {name}\n\n" + "\n".join(lines) + "\n")
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
    saved = {"passes": 2, **summary.get("config", {}), "children": pcfg.children}  # older runs made 2 passes
    return summary if saved == dataclasses.asdict(pcfg) else None


def bench_lut_accuracy(cfg: BenchConfig, out: Path) -> dict:
    default = {32: 60, 64: 40} if cfg.quick else {32: 500, 64: 500, 224: 500}
    plan = {r: cfg.children or default.get(r, 500) for r in (cfg.resolutions if not cfg.quick else default)}
    raw, rows = {}, []
    for res, n in plan.items():
        pcfg = ProfileConfig(
            resolution=res,
            width_mult=cfg.width_mult,
            children=n,
            device=cfg.device,
            seed=cfg.seed,
            threads=cfg.threads or 1,
            passes=cfg.passes,
        )
        folder = out / "lut-accuracy" / str(res)
        summary = _finished_profile(folder, pcfg)
        if summary is None:
            summary = run_profile(pcfg, folder)
        else:
            print(f"{res} px: reusing {folder} ({summary['config']['children']} children)")
        n = summary["config"]["children"]
        raw[res] = summary
        e = summary["eval"]
        rows.append(
            {
                "resolution": res,
                "children": n,
                "passes": summary["config"].get("passes", 2),
                "judged": e["n"],
                "pearson_r": e["pearson_r"],
                "spearman_rho": e["spearman_rho"],
                "mape_pct": e["mape_pct"],
                "within_10pct": e["within_10pct"],
                "repeat_within_10pct": e["repeat_within_10pct"],
                "raw_sum_mape_pct": summary["eval_raw_sum"]["mape_pct"],
            }
        )
    result = {"raw": raw, "summary": rows, "machine": _machine(cfg, cfg.threads or 1)}
    _write(out, "lut-accuracy", result, rows)
    _plot_lut_accuracy(out, plan, result["machine"])
    return result


def _plot_lut_accuracy(out: Path, plan: dict, machine: dict) -> Path:
    """Figure 4 from the benchmark's folders: ``out/figures/lut-accuracy.png`` (and .pdf)."""
    from .plots import plot_latency_correlation, save_figure
    from .profile import load_profile_panel, stack_panels

    panels = [load_profile_panel(out / "lut-accuracy" / str(res)) for res in plan]
    context = f"{machine['device_name']}, {machine['threads']} thread(s), torch {machine['torch']}, batch 1"
    fig = plot_latency_correlation(
        **stack_panels(panels),
        context=context,
        title="Look-up table vs measured latency of sampled children (instanas bench lut-accuracy)",
    )
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

            per_policy.append(
                {
                    "density": float(p.mean()),
                    "routed_ms": time_callable(lambda: net(x), timing)["min_ms"],
                    "static_ms": time_callable(static, timing)["min_ms"],
                    "subset_no_cache_ms": time_callable(lambda: (controller(x), graph(x, pd, "subset")), timing)[
                        "min_ms"
                    ],
                    "masked_ms": time_callable(lambda: (controller(x), graph(x, pd, "masked")), timing)["min_ms"],
                }
            )
        path = graph.extract_child(module_path_policy(graph, "ir_k3_e6")[0]).to(device).eval()
        mbv2 = build_baseline("mobilenetv2-1.0", 32, 10).to(device).eval()
        refs = {
            "controller_ms": time_callable(lambda: controller(x), timing)["min_ms"],
            "meta_mobilenetv2_path_ms": time_callable(lambda: path(x), timing)["min_ms"],
            "torchvision_mobilenetv2_1.0_ms": time_callable(lambda: mbv2(x), timing)["min_ms"],
        }
    if cfg.runtime == "onnxruntime":
        _onnxruntime_latency(graph, controller, policies, per_policy, x, timing, threads, 10 if cfg.quick else 30)
    ratio = np.array([r["routed_ms"] / r["static_ms"] for r in per_policy])
    summary = {
        "policies": n,
        "mean_density": float(np.mean([r["density"] for r in per_policy])),
        "routed_over_static_median": float(np.median(ratio)),
        "dispatch_overhead_pct_median": float(100 * (np.median(ratio) - 1)),
        "dispatch_overhead_pct_p90": float(100 * (np.percentile(ratio, 90) - 1)),
        "subset_no_cache_over_static_median": float(
            np.median([r["subset_no_cache_ms"] / r["static_ms"] for r in per_policy])
        ),
        "masked_over_routed_median": float(np.median([r["masked_ms"] / r["routed_ms"] for r in per_policy])),
        "routed_ms_mean": float(np.mean([r["routed_ms"] for r in per_policy])),
        **refs,
    }
    onnx = [r for r in per_policy if "onnxruntime_static_ms" in r]
    if onnx:
        summary["onnxruntime_policies"] = len(onnx)
        summary["pytorch_static_ms_mean"] = float(np.mean([r["static_ms"] for r in onnx]))
        summary["onnxruntime_static_ms_mean"] = float(np.mean([r["onnxruntime_static_ms"] for r in onnx]))
        summary["onnxruntime_over_pytorch_median"] = float(
            np.median([r["onnxruntime_static_ms"] / r["static_ms"] for r in onnx])
        )
    result = {
        "config": dataclasses.asdict(cfg),
        "raw": per_policy,
        "summary": summary,
        "machine": _machine(cfg, threads),
    }
    return _write(out, "routed-latency", result, [{"figure": k, "value": v} for k, v in summary.items()])


def _onnxruntime_latency(graph, controller, policies, per_policy, x, timing, threads: int, count: int) -> None:
    """The first ``count`` policies again, controller + extracted child exported to ONNX and run in
    onnxruntime (CPU, one thread), timed interleaved with PyTorch's controller + child at batch 1;
    adds ``onnxruntime_static_ms`` (and a fresh ``static_ms`` for the pair) to their rows."""
    import tempfile

    from .export import onnx_callable

    xn = x.cpu().numpy()
    with tempfile.TemporaryDirectory() as tmp, thread_limit(threads):
        ort_controller = onnx_callable(controller, x, Path(tmp) / "controller.onnx", "probs")
        for i, p in enumerate(policies[:count]):
            child = graph.extract_child(p).to(x.device).eval()
            ort_child = onnx_callable(child, x, Path(tmp) / f"child_{i}.onnx", "logits")

            def pytorch(child=child):
                with torch.inference_mode():
                    controller(x)
                    return child(x)

            def onnxruntime(ort_child=ort_child):
                ort_controller(xn)
                return ort_child(xn)

            best = {"pt": [], "ort": []}
            for _ in range(3):  # interleaved, best of three
                best["pt"].append(time_callable(pytorch, timing)["min_ms"])
                best["ort"].append(time_callable(onnxruntime, timing)["min_ms"])
            per_policy[i]["pytorch_pair_ms"] = min(best["pt"])
            per_policy[i]["onnxruntime_static_ms"] = min(best["ort"])
            per_policy[i]["static_ms"] = min(per_policy[i]["static_ms"], per_policy[i]["pytorch_pair_ms"])


# ---- batched-inference ---------------------------------------------------------------------------
def _autocast(cfg: BenchConfig, device: torch.device):
    """bf16 autocast where asked (convolutions and the linear layer in bf16, BatchNorm in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def _layout(cfg: BenchConfig, *tensors_or_modules):
    """Channels-last (NHWC) memory format where asked; returns the arguments converted."""
    if not cfg.use_channels_last:
        return tensors_or_modules
    return tuple(t.to(memory_format=torch.channels_last) for t in tensors_or_modules)


def _throughput(
    fns: dict[str, Callable[[], object]], images: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Best-of-``repeats`` images per second of each of ``fns`` (one warm-up call each first).
    The calls alternate between the functions, so a slow spell of a shared machine touches all of
    them alike rather than one."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: images / t for name, t in best.items()}


def bench_batched_inference(cfg: BenchConfig, out: Path) -> dict:
    batch = 256
    repeats = 2 if cfg.quick else 5
    width = min(0.5, cfg.width_mult) if cfg.quick else cfg.width_mult
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph, x = _layout(cfg, build_meta_graph(32, width).to(device).eval(), torch.randn(batch, 3, 32, 32, device=device))
    policy = sample_random_policy(graph, batch, torch.Generator().manual_seed(cfg.seed), density=BENCH_DENSITY).to(
        device
    )
    with torch.inference_mode(), _autocast(cfg, device):
        routed_out = graph(x, policy, "subset").float()  # (B, classes)
        masked_out = graph(x, policy, "masked").float()
        speed = _throughput(
            {"subset": lambda: graph(x, policy, "subset"), "masked": lambda: graph(x, policy, "masked")},
            batch,
            repeats,
            device,
        )
        routed, masked = speed["subset"], speed["masked"]
    # fp32: the two paths differ only in summation order. CUDA convolutions default to TF32 (10
    # bits of mantissa) and bf16 keeps 8, and the paths round at different places, so "equal"
    # there means equal within that resolution relative to the logits' scale (plus the same
    # predicted class, reported beside it).
    tf32 = device.type == "cuda" and torch.backends.cudnn.allow_tf32
    scale = float(masked_out.abs().max())
    tol = 5e-2 * scale if cfg.precision == "bf16" else 5e-3 * scale if tf32 else 1e-4
    summary = {
        "batch": batch,
        "width_mult": width,
        "precision": cfg.precision,
        "channels_last": cfg.use_channels_last,
        "device": str(device),
        "tf32_convolutions": tf32,
        "mean_density": float(policy.float().mean()),
        "routed_images_per_s": routed,
        "masked_images_per_s": masked,
        "speedup": routed / masked,
        "max_abs_output_diff": float((routed_out - masked_out).abs().max()),
        "same_prediction_share": float((routed_out.argmax(1) == masked_out.argmax(1)).float().mean()),
        "outputs_equal": bool(torch.allclose(routed_out, masked_out, rtol=1e-4, atol=tol)),
        "output_tolerance": tol,
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
    repeats = 5 if cfg.quick else 10  # single steps are noisy on a shared machine: best of many
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    graph = build_meta_graph(32, width).to(device).train()
    controller = build_controller(graph).to(device).train()
    graph, controller, x = _layout(cfg, graph, controller, torch.randn(batch, 3, 32, 32, device=device))
    y = torch.randint(0, 10, (batch,), device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    search_policy = sample_random_policy(graph, batch, gen, density=BENCH_DENSITY).to(device)

    def pretrain_step(execution):
        policy = drop_path_policy(graph, batch, 0.5, gen).to(device)
        graph.zero_grad(set_to_none=True)
        with _autocast(cfg, device):
            loss = F.cross_entropy(graph(x, policy, execution), y)
        loss.backward()

    def meta_step(execution):
        policy = search_policy[torch.randperm(batch, generator=gen).to(device)]  # policy shuffling
        graph.zero_grad(set_to_none=True)
        with _autocast(cfg, device):
            loss = F.cross_entropy(graph(x, policy, execution), y)
        loss.backward()

    def controller_step(execution):
        with _autocast(cfg, device):
            probs = controller(x).float()  # (B, T, K); sampling and log P in fp32
            with torch.no_grad():
                sample = sample_policy(probs, graph, alpha=0.8, generator=gen)
                r = (graph(x, sample.policy, execution).argmax(1) == y).float()
                rg = (graph(x, (probs.detach() > 0.5).float(), execution).argmax(1) == y).float()
        controller.zero_grad(set_to_none=True)
        (-(r - rg) * policy_log_prob(sample.actions, probs)).mean().backward()

    rows = []
    for name, step in (
        ("pretrain_drop_path", pretrain_step),
        ("search_meta_graph_epoch", meta_step),
        ("search_controller_epoch", controller_step),
    ):
        fig = {"step": name}
        speed = _throughput({e: (lambda e=e: step(e)) for e in ("subset", "masked")}, batch, repeats, device)
        for execution, value in speed.items():
            fig[f"{execution}_images_per_s"] = value
        fig["speedup"] = fig["subset_images_per_s"] / fig["masked_images_per_s"]
        rows.append(fig)
    summary = {
        "batch": batch,
        "width_mult": width,
        "repeats": repeats,
        "precision": cfg.precision,
        "channels_last": cfg.use_channels_last,
        "device": str(device),
        "search_policy_density": float(search_policy.mean()),
        "steps": rows,
    }
    result = {"config": dataclasses.asdict(cfg), "summary": summary, "machine": _machine(cfg, torch.get_num_threads())}
    return _write(out, "train-throughput", result, rows)


# ---- tradeoff ------------------------------------------------------------------------------------
TRADEOFF_BASELINE = "mobilenetv2-1.0"
MATCHED_ACCURACY_PT = 0.5  # "comparable accuracy": at most this many points below the baseline


def _variant_policies(cfg, run_dir: Path, letter: str, images: int) -> dict:
    """Variant ``letter``'s meta-graph and controller, and the greedy policies (n, T, K) the
    controller gives the first ``images`` test images."""
    from .pipeline import variant_config
    from .policy import greedy_policy
    from .train import build_split, make_loader, to_device
    from .stages.evaluate import load_trained

    vcfg = variant_config(cfg, letter)
    device = torch.device(cfg.experiment.device)
    graph, controller, _ = load_trained(vcfg, run_dir, device, vcfg.finetune.out_dir, letter)
    data = build_split(vcfg.experiment, "test", augment=False)
    loader = make_loader(data, images, False, 0, vcfg.experiment, device, train=False)
    image, _ = next(iter(loader))
    with torch.no_grad():
        x = to_device(image[:images], device, vcfg.experiment.use_channels_last)
        policy = greedy_policy(controller(x), graph).cpu()  # (n, T, K)
    return {"graph": graph, "controller": controller, "policy": policy, "device": device}


def tradeoff_baseline_budget(pcfg, budget: str) -> dict:
    """How the tradeoff's MobileNetV2 1.0 is trained.

    ``same``: as many passes over the training split as InstaNAS made in all its stages
    (pre-training + search, where controller and meta-graph epochs each count, + fine-tuning),
    with the preset's baseline optimiser and schedule; it gets its own folder
    ``baselines/mobilenetv2-1.0-<N>ep`` unless the preset's baseline already has N epochs.
    ``preset``: the preset's baseline as the book trains it (its fine-tuning budget).
    """
    instanas = {"pretrain": pcfg.pretrain.epochs, "search": pcfg.search.epochs, "finetune": pcfg.finetune.epochs}
    total = sum(instanas.values())
    if budget == "preset" or total == pcfg.baseline.epochs:
        return {"overrides": [], "folder": None, "instanas_epochs": instanas}
    return {"overrides": [f"epochs={total}"], "folder": f"{TRADEOFF_BASELINE}-{total}ep", "instanas_epochs": instanas}


def bench_tradeoff(cfg: BenchConfig, out: Path) -> dict:
    from .baselines import build_baseline, measure_model_latency
    from .data import use_shared_cifar10_jpeg
    from .pipeline import ensure_baseline, ensure_variant
    from .presets import book_settings, get_preset
    from .train import measure_routed_latency

    preset = cfg.preset or ("smoke" if cfg.quick else "cifar10-cpu")
    run_dir = Path(cfg.run_dir) if cfg.run_dir else out / f"tradeoff-{preset}"
    pcfg = get_preset(preset)
    if pcfg.experiment.dataset == "cifar10-jpeg":
        use_shared_cifar10_jpeg()  # the copy beside a checkout, as the notebooks find it
    if cfg.device != "cpu":
        pcfg = dataclasses.replace(pcfg, experiment=dataclasses.replace(pcfg.experiment, device=cfg.device))
    letters = list(book_settings(preset).variants)  # the variants the book trains at this preset
    trained = {L: ensure_variant(pcfg, run_dir, L) for L in letters}
    budget = tradeoff_baseline_budget(pcfg, cfg.baseline_budget)
    base = ensure_baseline(pcfg, run_dir, TRADEOFF_BASELINE, budget["overrides"], budget["folder"])

    threads = cfg.threads or 1
    images = 16 if cfg.quick else 64
    rounds = 1 if cfg.quick else 3
    timing = TimingConfig(min_run_time=0.01 if cfg.quick else 0.05, blocks=2 if cfg.quick else 5)
    res, classes = pcfg.experiment.info.resolution, pcfg.experiment.info.num_classes
    # Variants that give the test images the same policies (letters that share a search epoch
    # when the Pareto front is short) are one network: they are timed once and share the figure.
    groups: list[dict] = []
    for L in letters:
        v = _variant_policies(pcfg, run_dir, L, images)
        same = next((g for g in groups if torch.equal(g["policy"], v["policy"])), None)
        if same is None:
            groups.append({**v, "letters": [L], "rounds": []})
        else:
            same["letters"].append(L)
    # The baseline's latency does not depend on its weights: a fresh copy of the architecture is timed.
    torch.manual_seed(cfg.seed)
    base_model = build_baseline(TRADEOFF_BASELINE, res, classes)
    base_rounds: list = []
    with thread_limit(threads):
        # Rounds alternate between the baseline and every distinct variant, so a slow spell of
        # the machine touches all of them alike; each keeps its minimum over the rounds.
        for _ in range(rounds):
            base_rounds.append(measure_model_latency(base_model, res, threads, timing, cfg.device)["min_ms"])
            for g in groups:
                g["rounds"].append(
                    measure_routed_latency(g["graph"], g["controller"], g["policy"], timing, g["device"], threads)
                )
    base_ms = float(np.min(base_rounds))
    rows = [
        {
            "model": TRADEOFF_BASELINE,
            "test_accuracy_pct": base["accuracy_pct"],
            "measured_ms": base_ms,
            "estimated_ms": None,
            "distinct_policies": 1,
            "timed_as": TRADEOFF_BASELINE,
        }
    ]
    for g in groups:
        per_image = np.min(np.stack(g["rounds"]), axis=0)  # (images,)
        distinct = int(torch.unique(g["policy"].reshape(len(g["policy"]), -1), dim=0).shape[0])
        for L in g["letters"]:
            ev = trained[L]["evaluate"]
            rows.append(
                {
                    "model": f"InstaNAS-{L}",
                    "test_accuracy_pct": 100 * ev["accuracy"],
                    "measured_ms": float(per_image.mean()),
                    "estimated_ms": ev["latency_estimate_ms"]["mean"],
                    "distinct_policies": distinct,
                    "timed_as": "InstaNAS-" + "=".join(g["letters"]),
                }
            )
    rows = [rows[0]] + sorted(rows[1:], key=lambda r: r["model"])
    for r in rows:
        r["reduction_vs_baseline_pct"] = 100 * (1 - r["measured_ms"] / base_ms)
        r["accuracy_vs_baseline_pt"] = r["test_accuracy_pct"] - rows[0]["test_accuracy_pct"]
    matched = [r for r in rows[1:] if r["accuracy_vs_baseline_pt"] >= -MATCHED_ACCURACY_PT]
    best = min(matched, key=lambda r: r["measured_ms"]) if matched else None
    summary = {
        "preset": preset,
        "dataset": pcfg.experiment.dataset,
        "run_dir": str(run_dir),
        "baseline": TRADEOFF_BASELINE,
        "baseline_budget": cfg.baseline_budget,
        "baseline_epochs": base["epochs_done"],
        "baseline_folder": f"baselines/{budget['folder'] or TRADEOFF_BASELINE}",
        "instanas_epochs": budget["instanas_epochs"],
        "matched_accuracy_pt": MATCHED_ACCURACY_PT,
        "images_timed_per_variant": images,
        "timing_rounds": rounds,
        "distinct_variants": ["=".join(g["letters"]) for g in groups],
        "best_matched_variant": best["model"] if best else None,
        "latency_reduction_at_matched_accuracy_pct": best["reduction_vs_baseline_pct"] if best else None,
        "rows": rows,
    }
    result = {"config": dataclasses.asdict(cfg), "summary": summary, "machine": _machine(cfg, threads)}
    return _write(out, "tradeoff", result, rows)


def bench_instance_awareness(cfg: BenchConfig, out: Path) -> dict:
    """See :mod:`instanas_core.bench_awareness` (imported on use: it trains, the others time)."""
    from .bench_awareness import bench_instance_awareness as run

    return run(cfg, out)


BENCHMARKS: dict[str, Callable[[BenchConfig, Path], dict]] = {
    "instance-awareness": bench_instance_awareness,
    "lut-accuracy": bench_lut_accuracy,
    "routed-latency": bench_routed_latency,
    "batched-inference": bench_batched_inference,
    "train-throughput": bench_train_throughput,
    "tradeoff": bench_tradeoff,
}


def run_bench(name: str, cfg: BenchConfig, out_dir: str | Path) -> dict:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}.")
    out = open_output_folder(out_dir, "bench")
    suffixes = (".json", ".md", ".png") if name == "instance-awareness" else (".json", ".md")
    for suffix in suffixes:  # refused now, not after minutes of timing, if they are someone else's
        claim(out / f"{name}{suffix}")
    return BENCHMARKS[name](cfg, out)
