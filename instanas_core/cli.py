"""The ``instanas`` command line (also ``python -m instanas_core``).

Each sub-command is a thin wrapper over one function of the package; errors that come from
bad input are printed as one paragraph (set ``INSTANAS_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable

from .data.errors import DatasetError
from .distributed import is_main_process

__all__ = ["main", "build_parser", "COMMANDS", "resolve_stage_config", "one_paragraph"]

# name -> (add_arguments, run); run(args) returns an exit status.
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str):
    def register(fns: tuple[Callable, Callable]):
        COMMANDS[name] = (fns[0], fns[1], help)
        return fns

    return register


# ---- profile -----------------------------------------------------------------------------------
def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolution", type=int, required=True, choices=(32, 64, 224))
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads while timing (default 1)")
    p.add_argument("--children", type=int, default=0, help="sample N children and check the table on them")
    p.add_argument("--fit-fraction", type=float, default=0.25, help="share of children that fit the calibration")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-run-time", type=float, default=0.05, help="seconds per timing block")
    p.add_argument("--blocks", type=int, default=5, help="timing blocks; the minimum is kept")
    p.add_argument(
        "--passes",
        type=int,
        default=2,
        help="timing passes over the children (even): measured = min of the even ones, repeat = min of the odd ones",
    )
    p.add_argument("--out", required=True, help="output folder (lut.json, correlation.csv, summary.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _profile_run(args: argparse.Namespace) -> int:
    from .profile import ProfileConfig, format_summary, run_profile

    cfg = ProfileConfig(
        resolution=args.resolution,
        width_mult=args.width_mult,
        num_classes=args.num_classes,
        threads=args.threads,
        children=args.children,
        fit_fraction=args.fit_fraction,
        device=args.device,
        seed=args.seed,
        min_run_time=args.min_run_time,
        blocks=args.blocks,
        passes=args.passes,
    )
    summary = run_profile(cfg, args.out, progress=not args.quiet)
    print(format_summary(summary))
    print(f"  wrote {os.path.join(args.out, 'lut.json')}" + (" and correlation.csv" if args.children else ""))
    return 0


command("profile", "time every (cell, module) and write the latency look-up table (§4.1)")(
    (_profile_args, _profile_run)
)


# ---- bench ---------------------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    from .bench import BENCHMARKS

    p.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("--quick", action="store_true", help="a reduced version that runs in minutes")
    p.add_argument("--out", required=True, help="output folder (NAME.json, NAME.md)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--children",
        type=int,
        default=None,
        help="lut-accuracy: children per resolution (default 500; resolutions already profiled in --out are reused)",
    )
    p.add_argument(
        "--passes", type=int, default=2, help="lut-accuracy: timing passes per child (even; see profile --passes)"
    )
    p.add_argument(
        "--resolutions",
        type=int,
        nargs="+",
        default=[32, 64, 224],
        choices=(32, 64, 224),
        help="lut-accuracy: which resolutions",
    )
    p.add_argument("--preset", default=None, help="tradeoff: the preset (default cifar10-cpu; smoke with --quick)")
    p.add_argument(
        "--run-dir", default=None, help="tradeoff: run folder (default DIR/tradeoff-PRESET); finished stages are loaded"
    )
    p.add_argument(
        "--baseline-budget",
        default="same",
        choices=("same", "preset"),
        help="tradeoff: MobileNetV2 1.0 trained for InstaNAS's epochs of all stages (same) or the preset's baseline",
    )
    p.add_argument(
        "--cascade-stages",
        type=int,
        nargs="+",
        default=[2, 3],
        help="instance-awareness: the confidence cascades' stage counts (2 to 4)",
    )
    p.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=None,
        help="instance-awareness: mean-latency budgets in ms for the cascades (between the cheapest and the "
        "largest child; default: InstaNAS's own latencies plus five spread over the static front)",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help="instance-awareness: which data sets (default synthetic-difficulty, then cifar10-jpeg unless --quick)",
    )
    p.add_argument(
        "--runtime",
        default="pytorch",
        choices=("pytorch", "onnxruntime"),
        help="routed-latency: onnxruntime also times controller + child exported to ONNX, beside PyTorch",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="batched-inference, train-throughput: bf16 autocast (meant for CUDA)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batched-inference, train-throughput: NHWC memory format (default: on for CPU, off for CUDA, as the stages)",
    )


def _bench_run(args: argparse.Namespace) -> int:
    import json

    from .bench import BenchConfig, run_bench

    cfg = BenchConfig(
        quick=args.quick,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        width_mult=args.width_mult,
        children=args.children,
        resolutions=tuple(args.resolutions),
        passes=args.passes,
        preset=args.preset,
        run_dir=args.run_dir,
        baseline_budget=args.baseline_budget,
        precision=args.precision,
        runtime=args.runtime,
        channels_last=args.channels_last,
        cascade_stages=tuple(args.cascade_stages),
        budgets=tuple(args.budgets) if args.budgets else None,
        datasets=tuple(args.datasets) if args.datasets else None,
    )
    result = run_bench(args.name, cfg, args.out)
    print(json.dumps(result["summary"], indent=1, default=float))
    print(f"wrote {os.path.join(args.out, args.name + '.json')} and .md")
    return 0


command("bench", "run a benchmark and write DIR/NAME.json and DIR/NAME.md")((_bench_args, _bench_run))


# ---- training stages: pretrain, search, finetune, evaluate (§3.1-3.3, §4.2) --------------------
def _stage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default=None,
        help="smoke, cpu, cifar10-cpu, cifar10, cifar100, tinyimagenet, imagenet "
        "(default: the configuration an earlier stage saved in --run-dir)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a config.json (as every stage folder holds) to start from instead of --preset",
    )
    p.add_argument("--dataset", default=None, help="data set name (overrides the preset's)")
    p.add_argument("--run-dir", required=True, help="the experiment's run folder; this stage writes RUN/<stage>/")
    p.add_argument("--resume", action="store_true", help="continue the stage from RUN/<stage>/last.pt")
    p.add_argument("--overwrite", action="store_true", help="delete RUN/<stage>/ and start the stage again")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (overrides the preset's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting: field of this stage or of the experiment, or section.field",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--download",
        action="store_true",
        help="cifar10/cifar100: download the files into the data root when they are missing",
    )


def resolve_stage_config(stage: str, args: argparse.Namespace):
    """The stage's Config: the preset, a ``--config`` file, or the configuration saved by an
    earlier stage of the same run; then --dataset, --device and --set overrides."""
    from pathlib import Path

    from .config import ConfigError, apply_overrides, config_from_dict, get_preset, override_target
    from .rundir import load_json

    run = Path(args.run_dir)
    config_file = getattr(args, "config", None)
    if config_file is not None and args.preset is not None:
        raise ConfigError("give either --preset or --config, not both.")
    if config_file is not None:
        if not Path(config_file).is_file():
            raise ConfigError(f"--config {config_file}: no such file; pass a config.json that a stage wrote.")
        try:
            cfg = config_from_dict(load_json(config_file), source=config_file)
        except ValueError as exc:
            raise ConfigError(f"--config {config_file} is not a configuration this code can read: {exc}") from None
    elif args.preset is not None:
        cfg = get_preset(args.preset)
    else:
        saved = sorted(run.glob(f"{stage}*/config.json")) + sorted(run.glob("*/config.json"))
        if not saved:
            raise ConfigError(
                f"--preset is needed for the first stage of a run ({run} has no saved configuration); "
                "presets: smoke, cpu, cifar10-cpu, cifar10, cifar100, tinyimagenet, imagenet."
            )
        cfg = config_from_dict(load_json(saved[0]), source=saved[0])
    # (setting, value, the option that gave it): --dataset, --device and --download are shorthands
    # for settings that --set may also name; one given both ways is refused like a repeated --set.
    options = []
    if args.dataset is not None:
        options.append(("experiment.dataset", args.dataset, f"--dataset {args.dataset}"))
    if args.device is not None:
        options.append(("experiment.device", args.device, f"--device {args.device}"))
    if getattr(args, "download", False):
        options.append(("experiment.download", "true", "--download"))
    given = {key: option for key, _, option in options}
    for item in args.overrides:
        sec, name, _ = override_target(cfg, item, stage)
        if f"{sec}.{name}" in given:
            raise ConfigError(f"{sec}.{name} is set twice ({given[f'{sec}.{name}']} and --set {item}); give it once.")
    return apply_overrides(cfg, [f"{key}={value}" for key, value, _ in options] + list(args.overrides), section=stage)


def _sets_data_root(overrides: list[str]) -> bool:
    """Whether ``--set`` moves the data root: ``evaluate`` then re-evaluates the finished run's
    variants and baselines there (:mod:`instanas_core.stages.reevaluate`) instead of one model."""
    return any(item.split("=", 1)[0].strip().split(".")[-1] == "data_root" for item in overrides)


def _stage_runner(stage: str):
    def run(args: argparse.Namespace) -> int:
        from .data import DatasetError
        from .stages import STAGE_RUNNERS

        runner, fmt = STAGE_RUNNERS[stage]
        if stage == "evaluate" and _sets_data_root(args.overrides):
            from .stages.reevaluate import format_reevaluate_summary, reevaluate_run

            def runner(cfg, run_dir, resume, overwrite, progress):  # the run's models, on another test split
                return reevaluate_run(cfg, run_dir, progress)

            fmt = format_reevaluate_summary
        try:
            cfg = resolve_stage_config(stage, args)
            summary = runner(cfg, args.run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
        except DatasetError as exc:  # the data layer's errors are not ValueErrors
            raise ValueError(str(exc)) from None
        if is_main_process():  # under torchrun every rank returns the same summary
            print(fmt(summary))
        return 0

    return run


for _name, _help in (
    ("pretrain", "stage (a): pre-train the meta-graph with drop-path (§3.2)"),
    ("search", "stage (b): jointly train controller and meta-graph with the dynamic reward (§3.3)"),
    ("finetune", "stage (c): fine-tune or re-train the meta-graph under a picked controller (§3.1, §4.2)"),
    (
        "evaluate",
        "accuracy, latency (table and measured), architecture statistics, per-sample records; with "
        "--set data_root=DIR, every finished variant and baseline of the run re-evaluated on DIR's test split "
        "into RUN/reevaluate-*/ (no training)",
    ),
):
    command(_name, _help)((_stage_args, _stage_runner(_name)))


# ---- baselines and comparators (Tables 1-3, Figure 6) --------------------------------------------
def _baseline_args(p: argparse.ArgumentParser) -> None:
    from .baselines import BASELINE_NAMES

    p.add_argument("--model", required=True, metavar="NAME", help="baseline to train: " + ", ".join(BASELINE_NAMES))
    _stage_args(p)


def _named_stage_runner(kind: str):
    """The runner of ``instanas baseline --model NAME`` or ``instanas comparator --name NAME``: the
    name is checked before any configuration is read, then the stage runs."""

    def run(args: argparse.Namespace) -> int:
        from .data import DatasetError

        if kind == "baseline":
            from .stages.baseline import check_baseline_name as check
            from .stages.baseline import format_baseline_summary as fmt
            from .stages.baseline import run_baseline as runner

            name = args.model
        else:
            from .stages.comparators import check_comparator_name as check
            from .stages.comparators import format_comparator_summary as fmt
            from .stages.comparators import run_comparator as runner

            name = args.name
        try:
            check(name)
            cfg = resolve_stage_config(kind, args)
            summary = runner(
                cfg, args.run_dir, name, progress=not args.quiet, resume=args.resume, overwrite=args.overwrite
            )
        except DatasetError as exc:
            raise ValueError(str(exc)) from None
        if is_main_process():
            print(fmt(summary))
        return 0

    return run


command("baseline", "train, test and time one baseline of Tables 1-3 into RUN/baselines/NAME/")(
    (_baseline_args, _named_stage_runner("baseline"))
)


def _comparator_args(p: argparse.ArgumentParser) -> None:
    from .stages.comparators import COMPARATOR_STAGE_NAMES

    p.add_argument("--name", required=True, metavar="NAME", help="comparator: " + ", ".join(COMPARATOR_STAGE_NAMES))
    _stage_args(p)


command(
    "comparator",
    "train and evaluate a Figure 6 comparator (blockdrop, convnet-aig, oneshot) into RUN/comparators/NAME/",
)((_comparator_args, _named_stage_runner("comparator")))


# ---- book ----------------------------------------------------------------------------------------
def _book_args(p: argparse.ArgumentParser) -> None:
    from .book import add_book_arguments

    add_book_arguments(p)


def _book_run(args: argparse.Namespace) -> int:
    from .book import run_book_command

    return run_book_command(args)


command("book", "run the notebook book (notebooks/NN_*.py) in order with papermill")((_book_args, _book_run))


# ---- export --------------------------------------------------------------------------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    from .export import EXPORT_FORMATS

    p.add_argument("--run-dir", required=True, help="a run with a finished search (and, if any, fine-tuning)")
    p.add_argument("--variant", default="A", help="the variant letter (its fine-tuned model when there is one)")
    p.add_argument(
        "--format", default="onnx", choices=EXPORT_FORMATS, help="onnx (checked in onnxruntime) or torch-export"
    )
    p.add_argument("--out", required=True, help="output folder: controller, children, manifest.json")
    p.add_argument(
        "--splits",
        nargs="+",
        default=["val", "test"],
        choices=("train", "val", "test"),
        help="the splits whose images decide which architectures are exported (default val test)",
    )
    p.add_argument("--images", type=int, default=None, help="only the first N images of each split (default all)")
    p.add_argument("--check-images", type=int, default=64, help="test images the export is checked on (0: all)")


def _export_run(args: argparse.Namespace) -> int:
    from .export import ExportConfig, export_variant

    args.preset, args.config, args.dataset, args.device, args.overrides = None, None, None, "cpu", []
    cfg = resolve_stage_config("evaluate", args)
    export_cfg = ExportConfig(
        variant=args.variant,
        format=args.format,
        splits=tuple(args.splits),
        check_images=args.check_images,
        images=args.images,
    )
    manifest = export_variant(cfg, args.run_dir, export_cfg, args.out)
    check = manifest["check"]
    worst = max(check["max_abs_error"].values())
    print(
        f"exported {manifest['source']}: controller and {len(manifest['children'])} children to {args.out} "
        f"({args.format}); check on {check['images']} test images: max |error| {worst:.2e} "
        f"(tolerance {check['tolerance']:.0e}), same policies: {check['same_policies']}"
    )
    return 0 if check["passed"] else 1


command("export", "export a variant's controller and children (ONNX or torch.export) with a routing manifest")(
    (_export_args, _export_run)
)


# ---- figures -------------------------------------------------------------------------------------
def _figures_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="a finished book run")
    p.add_argument("--out", default="figures", help="destination folder (default figures/)")
    p.add_argument("--made-by", default=None, metavar="COMMAND", help="the command that made the run, for the README")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a folder that holds files this command did not write (they are kept, "
        "and so is a README it did not write)",
    )


def _figures_run(args: argparse.Namespace) -> int:
    from .book import export_figures

    out = export_figures(args.run_dir, args.out, args.made_by, force=args.force)
    print(f"copied the figures of {args.run_dir} to {out}")
    return 0


command("figures", "copy a finished book run's PNG figures to figures/ with a README of what made them")(
    (_figures_args, _figures_run)
)


# ---- render --------------------------------------------------------------------------------------
def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="a finished book run")
    p.add_argument("--out", required=True, help="destination folder: one HTML page per notebook and index.html")


def _render_run(args: argparse.Namespace) -> int:
    from .book import render_book

    print(f"rendered {args.run_dir}: open {render_book(args.run_dir, args.out)}")
    return 0


command("render", "render a finished book run as HTML pages (figures embedded) with an index")(
    (_render_args, _render_run)
)


# ---- publish -------------------------------------------------------------------------------------
def _publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="a run with the model finished")
    p.add_argument("--model", required=True, help="InstaNAS-<L> (a fine-tuned variant) or a baseline folder's name")
    p.add_argument("--name", required=True, help="the published name: NAME.pt, NAME.json and NAME.md")
    p.add_argument("--out", default=None, help="destination folder (default weights/)")


def _publish_run(args: argparse.Namespace) -> int:
    from .weights import publish_weights

    command = f"instanas publish --run-dir {args.run_dir} --model {args.model} --name {args.name}"
    card = publish_weights(args.run_dir, args.model, args.name, args.out, command=command)
    print(f"published {args.model} of {args.run_dir} as {card.with_suffix('.pt')} (card {card})")
    return 0


command("publish", "publish a finished model's weights (weights_only checkpoint) with a model card into weights/")(
    (_publish_args, _publish_run)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instanas", description="InstaNAS reproduction: stages, latency profiling and the notebook book."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, _run, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that locks are released and a stage that made
    nothing durable cleans up, as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = COMMANDS[args.command][1]
    previous = signal.getsignal(signal.SIGTERM) if _on_main_thread() else None
    if previous is not None:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return run(args)
    except KeyboardInterrupt as exc:
        how, status = ("stopped (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"instanas {args.command}: {how}.{_resume_hint(args)}", file=sys.stderr)
        return status
    except (ValueError, OSError, RuntimeError, DatasetError) as exc:
        if os.environ.get("INSTANAS_DEBUG"):
            raise
        where = f" (rank {os.environ.get('RANK')})" if int(os.environ.get("WORLD_SIZE", "1") or "1") > 1 else ""
        print(f"instanas {args.command}{where}: error: {one_paragraph(exc)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _resume_hint(args: argparse.Namespace) -> str:
    if args.command in ("pretrain", "search", "finetune", "evaluate", "baseline", "comparator"):
        return " Resume with --resume: the stage's last checkpoint is kept."
    if args.command == "book" or (args.command == "bench" and getattr(args, "name", "") == "tradeoff"):
        return " Run the same command again to resume: finished work is kept and skipped."
    return ""


def one_paragraph(exc: BaseException) -> str:
    """The error's message as one paragraph: an OSError names its file and reason; a message a
    library made multi-line (a DataLoader worker's re-raised error carries the worker's traceback)
    keeps its first line."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}. Check the path and free disk space, then run the command again (with --resume for a stage)."
    text = str(exc).strip() or type(exc).__name__
    if "Original Traceback" in text:
        text = text.split("Original Traceback")[-1].strip().splitlines()[-1]
    return " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("  File "))


if __name__ == "__main__":
    raise SystemExit(main())
