"""The ``instanas`` command line (also ``python -m instanas_core``).

Each sub-command is a thin wrapper over one function of the package; errors that come from
bad input are printed as one paragraph (set ``INSTANAS_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

__all__ = ["main", "build_parser", "COMMANDS"]

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
    )
    summary = run_profile(cfg, args.out, progress=not args.quiet)
    print(format_summary(summary))
    print(f"  wrote {os.path.join(args.out, 'lut.json')}" + (" and correlation.csv" if args.children else ""))
    return 0


command("profile", "time every (cell, module) and write the latency look-up table (§4.1)")((_profile_args, _profile_run))


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


def _bench_run(args: argparse.Namespace) -> int:
    import json

    from .bench import BenchConfig, run_bench

    cfg = BenchConfig(quick=args.quick, device=args.device, threads=args.threads, seed=args.seed, width_mult=args.width_mult)
    result = run_bench(args.name, cfg, args.out)
    print(json.dumps(result["summary"], indent=1, default=float))
    print(f"wrote {os.path.join(args.out, args.name + '.json')} and .md")
    return 0


command("bench", "run a benchmark and write DIR/NAME.json and DIR/NAME.md")((_bench_args, _bench_run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instanas", description="InstaNAS reproduction: stages, latency profiling and the notebook book."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, _run, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = COMMANDS[args.command][1]
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"instanas {args.command}: interrupted.", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("INSTANAS_DEBUG"):
            raise
        print(f"instanas {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
