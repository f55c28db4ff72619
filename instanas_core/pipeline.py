"""The stages as one pipeline over a run folder: each ``ensure_*`` returns what a finished stage
left in ``RUN/`` (its ``summary.json``) or runs the stage there, so a caller needs no knowledge of
which stages ran before it (paper §3.1: pre-train, search, fine-tune or re-train, evaluate; the
baselines of Tables 1-3 and the comparators of Figure 6).

The notebook book (:mod:`instanas_core.book`) and ``instanas bench tradeoff`` both build on this
module; it knows nothing of notebooks. A finished stage made with other settings is refused (or, for
an evaluation, which is cheap, made again), so a changed override never silently shows an old result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = [
    "PipelineError",
    "quiet_progress",
    "stage_config",
    "launch_stage",
    "ensure_stage",
    "ensure_pretrain_and_search",
    "variant_config",
    "ensure_evaluation",
    "ensure_variant",
    "ensure_baseline",
    "ensure_comparator",
]


class PipelineError(RuntimeError):
    """A stage that cannot be run or loaded as asked (bad override, a finished stage made with
    other settings, a failed ``torchrun``)."""


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence the warning tqdm.auto gives, even when disabled, in a kernel without ipywidgets."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield


# What each stage writes its summary.json into, and the sections of its config that made it.
_STAGE_SECTIONS = {
    "pretrain": ("experiment", "pretrain"),
    "search": ("experiment", "search"),
    "finetune": ("experiment", "finetune"),
    "evaluate": ("experiment", "evaluate"),
}


def stage_config(cfg: Any, stage: str, overrides: Sequence[str] = ()) -> Any:
    """``cfg`` with ``key=value`` overrides (``instanas <stage> --set`` syntax: a field of the
    stage or of the experiment, or ``section.field``), e.g. ``["epochs=3"]`` for fewer epochs."""
    from .config import ConfigError
    from .config_io import apply_overrides

    try:
        return apply_overrides(cfg, list(overrides), section=stage)
    except ConfigError as exc:
        raise PipelineError(f"bad override for the {stage} stage: {exc}") from None


def _stage_folder(stage: str, cfg: Any) -> str:
    return cfg.finetune.out_dir if stage == "finetune" else stage


def launch_stage(stage: str, cfg: Any, run_dir: str | Path, nproc: int, overwrite: bool = False) -> dict:
    """Run ``stage`` with ``cfg`` in ``nproc`` processes through ``torchrun --standalone`` (a
    subprocess: a notebook's kernel cannot be one rank of a process group), streaming its output;
    returns the stage's ``summary.json``. The configuration travels as a ``config.json`` file
    (``instanas <stage> --config``), so overrides made in the notebook reach every rank."""
    import subprocess

    from .config_io import config_to_dict
    from .rundir import load_json, save_json

    if stage not in ("pretrain", "search", "finetune"):
        raise PipelineError(f"only pretrain, search and finetune run under torchrun from a notebook, not {stage!r}.")
    if nproc < 1:
        raise PipelineError(f"nproc must be at least 1, got {nproc}.")
    run = Path(run_dir)
    config_file = save_json(run / "launch" / f"{stage}-config.json", config_to_dict(cfg))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "instanas_core",
        stage,
        "--config",
        str(config_file),
        "--run-dir",
        str(run),
        "--quiet",
        "--overwrite" if overwrite else "--resume",
    ]
    print("launching: " + " ".join(cmd[1:]), flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            tail = (tail + [line.rstrip()])[-15:]
        code = proc.wait()
    if code != 0:
        raise PipelineError(
            f"torchrun {stage} with {nproc} processes exited with status {code}; its last lines:\n" + "\n".join(tail)
        )
    return load_json(run / _stage_folder(stage, cfg) / "summary.json")


def ensure_stage(
    stage: str, cfg: Any, run_dir: str | Path, check_config: bool = True, progress: bool = False, nproc: int = 1
) -> dict:
    """The summary of ``RUN/<stage>`` (``RUN/<finetune.out_dir>`` for fine-tuning): loaded when
    the stage finished there, else the stage is run (``resume=True``: an interrupted stage
    continues from its last checkpoint; the stages refuse an existing folder otherwise).

    ``check_config``: a finished stage made with other settings of this stage or of the
    experiment is refused (a notebook re-run with new overrides must not silently show the old
    result); with ``False`` it is accepted and said so (a later notebook needing a stage as
    input takes whatever an earlier notebook trained). An evaluation is cheap and is simply
    redone when its settings differ.

    ``nproc`` > 1 runs the stage in that many processes with ``torchrun`` (:func:`launch_stage`).
    """
    from .rundir import load_json
    from .stages import STAGE_RUNNERS
    from .train import config_diff

    if stage not in STAGE_RUNNERS:
        raise PipelineError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_RUNNERS)}.")
    runner, fmt = STAGE_RUNNERS[stage]
    out = Path(run_dir) / _stage_folder(stage, cfg)
    overwrite = False
    if (out / "summary.json").is_file() and (out / "config.json").is_file():
        summary = load_json(out / "summary.json")
        diff = config_diff(load_json(out / "config.json"), cfg, _STAGE_SECTIONS[stage])
        if summary.get("finished", True) and (not diff or not check_config):
            note = f" (made with other settings: {'; '.join(diff)})" if diff else ""
            print(f"loaded {out}: {fmt(summary)}{note}")
            return summary
        if diff and stage == "evaluate":
            overwrite = True
        elif diff and summary.get("finished", True):
            raise PipelineError(
                f"{out} holds a finished {stage} stage made with other settings ({'; '.join(diff)}). "
                "Use another run_dir for these settings, or delete that folder to train it again."
            )
    t0 = time.perf_counter()
    if nproc > 1:
        summary = launch_stage(stage, cfg, run_dir, nproc, overwrite)
    else:
        with quiet_progress():
            summary = runner(cfg, run_dir, resume=not overwrite, overwrite=overwrite, progress=progress)
    print(f"{fmt(summary)} [{time.perf_counter() - t0:.1f} s in this notebook]")
    return summary


def ensure_pretrain_and_search(cfg: Any, run_dir: str | Path) -> dict:
    """Pre-training and search as a later notebook's inputs: loaded when an earlier notebook
    made them (whatever overrides it used), else run with the preset's settings."""
    ensure_stage("pretrain", cfg, run_dir, check_config=False)
    return ensure_stage("search", cfg, run_dir, check_config=False)


def variant_config(cfg: Any, letter: str, overrides: Sequence[str] = ()) -> Any:
    """The fine-tuning and evaluation settings of variant ``letter``: ``RUN/finetune-<L>``,
    evaluated on the test split (``overrides`` apply to the finetune section)."""
    cfg = stage_config(cfg, "finetune", overrides)
    ft = dataclasses.replace(cfg.finetune, variant=letter, out_dir=f"finetune-{letter}")
    ev = dataclasses.replace(cfg.evaluate, source=f"finetune-{letter}", split="test")
    return dataclasses.replace(cfg, finetune=ft, evaluate=ev)


def ensure_evaluation(cfg: Any, run_dir: str | Path, folder: str) -> dict:
    """The evaluation of ``cfg.evaluate.source`` in ``RUN/<folder>`` (``evaluate.out_dir``; loaded
    when made with the same settings): the book keeps one folder per evaluated model."""
    from .rundir import load_json
    from .stages import format_evaluate_summary, run_evaluate
    from .train import config_diff

    run = Path(run_dir)
    dest = run / folder
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, out_dir=folder))
    model = run / cfg.evaluate.source / "last.pt"
    if (dest / "summary.json").is_file() and (dest / "config.json").is_file():
        stale = (
            model.is_file() and model.stat().st_mtime_ns > (dest / "summary.json").stat().st_mtime_ns
        )  # trained again since
        if not stale and not config_diff(load_json(dest / "config.json"), cfg, _STAGE_SECTIONS["evaluate"]):
            summary = load_json(dest / "summary.json")
            print(f"loaded {dest}: {format_evaluate_summary(summary)}")
            return summary
    t0 = time.perf_counter()
    with quiet_progress():
        summary = run_evaluate(cfg, run, overwrite=True, progress=False)
    print(f"{format_evaluate_summary(summary)} [{time.perf_counter() - t0:.1f} s] -> {dest}")
    return summary


def ensure_variant(cfg: Any, run_dir: str | Path, letter: str, overrides: Sequence[str] = ()) -> dict:
    """Variant ``letter``: fine-tuned (or re-trained, as the preset's ``finetune.mode`` says) in
    ``RUN/finetune-<L>`` and evaluated on the test split in ``RUN/evaluate-<L>``; the search is
    made first if missing. Returns ``{"variant", "finetune", "evaluate", "folder"}``."""
    ensure_pretrain_and_search(cfg, run_dir)
    vcfg = variant_config(cfg, letter, overrides)
    ft = ensure_stage("finetune", vcfg, run_dir)
    ev = ensure_evaluation(vcfg, run_dir, f"evaluate-{letter}")
    return {"variant": letter, "finetune": ft, "evaluate": ev, "folder": str(Path(run_dir) / f"evaluate-{letter}")}


def ensure_baseline(
    cfg: Any, run_dir: str | Path, name: str, overrides: Sequence[str] = (), folder_name: str | None = None
) -> dict:
    """Baseline ``name`` trained, tested and timed in ``RUN/baselines/<folder_name or name>``
    (its row in ``RUN/results.csv``); a finished one is loaded (``run_baseline`` with ``resume``)."""
    from .stages import format_baseline_summary, run_baseline

    cfg = stage_config(cfg, "baseline", overrides)
    existed = (Path(run_dir) / "baselines" / (folder_name or name) / "summary.json").is_file()
    t0 = time.perf_counter()
    with quiet_progress():
        summary = run_baseline(cfg, run_dir, name, False, resume=True, folder_name=folder_name)
    took = f"[{time.perf_counter() - t0:.1f} s]" if not (existed and summary.get("result_appended")) else "(loaded)"
    print(f"{format_baseline_summary(summary)} {took}")
    return summary


def ensure_comparator(cfg: Any, run_dir: str | Path, name: str, overrides: Sequence[str] = ()) -> dict:
    """Comparator ``name`` of Figure 6 (``oneshot``, ``blockdrop``, ``convnet-aig``) in
    ``RUN/comparators/<name>``, from the run's pre-trained meta-graph (made if missing)."""
    from .stages import format_comparator_summary, run_comparator

    ensure_stage("pretrain", cfg, run_dir, check_config=False)
    cfg = stage_config(cfg, "comparator", overrides)
    t0 = time.perf_counter()
    with quiet_progress():
        summary = run_comparator(cfg, run_dir, name, False, resume=True)
    print(f"{format_comparator_summary(summary)}\n[{time.perf_counter() - t0:.1f} s in this notebook]")
    return summary
