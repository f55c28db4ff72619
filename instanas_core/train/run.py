"""A stage's place in the run folder: opening it (name, lock, manifest, resume or overwrite), the
saved configuration a resumed stage must match, and the latency table and search space a checkpoint
was made with; the run's latency table (``RUN/profile/lut.json``, §4.1), profiled when missing."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import Config, config_from_dict, config_to_dict, stage_profile_config
from ..distributed import DistContext, on_main, single_process
from ..latency import (
    LatencyTable,
    LatencyTableError,
)
from ..profile import profile_space
from ..rundir import (
    RunDirError,
    StageFolder,
    load_checkpoint,
    load_json,
    save_environment,
    save_json,
    stage_dir,
)
from .data import resolve_device

__all__ = [
    "RESUME_FREE_SETTINGS",
    "config_diff",
    "StageStart",
    "begin_stage",
    "ensure_latency_table",
    "latency_table_hash",
    "check_latency_table_hash",
    "check_space_hash",
]


def latency_table_hash(path: str | Path) -> str:
    """SHA-256 of a latency table file (``RUN/profile/lut.json``): what a checkpoint was made with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_latency_table_hash(ckpt: dict, lut_path: str | Path, what: str) -> None:
    """Refuse a checkpoint (described by ``what``) made with another latency table than
    ``lut_path`` holds now. Checkpoints older than the ``lut_hash`` entry are accepted."""
    made_with = ckpt.get("lut_hash")
    if made_with is None or made_with == latency_table_hash(lut_path):
        return
    raise RunDirError(
        f"{what} was made with another latency table than {lut_path} holds now (SHA-256 {made_with[:12]}... then, "
        f"{latency_table_hash(lut_path)[:12]}... now): its rewards, policies and latencies belong to the old table. "
        "Put the old lut.json back, or run the stage again from scratch with --overwrite (and the stages after it)."
    )


def check_space_hash(ckpt: dict, space_hash: str, what: str) -> None:
    """Refuse a checkpoint (described by ``what``) made for another search space."""
    made_for = ckpt.get("space_hash")
    if made_for is not None and made_for != space_hash:
        raise RunDirError(
            f"{what} was made for another search space (hash {made_for}) than this configuration's ({space_hash}): "
            "resolution, width, stride or classes differ. Use the preset and --set values it was made with, or "
            "--overwrite to start the stage again."
        )


def ensure_latency_table(
    cfg: Config, run_dir: str | Path, device: torch.device, progress: bool = True, dist: DistContext | None = None
) -> tuple[LatencyTable, Path]:
    """``RUN/profile/lut.json`` if present (checked against this run's space and device), else
    profile one with the configuration's profile settings (:func:`~instanas_core.profile.profile_space`,
    the one profiler; calibrated on ``children`` sampled children when asked) and write it there. Under torchrun rank 0 alone profiles (timings of
    ranks that share a machine would disturb each other) and the others receive its table."""
    if dist is not None and dist.enabled:
        return on_main(dist, lambda: ensure_latency_table(cfg, run_dir, device, progress and dist.is_main))
    path = stage_dir(run_dir, "profile") / "lut.json"
    space = cfg.experiment.space()
    if path.is_file():
        table = LatencyTable.load(path)
        try:
            table.check_compatible(space, device)
        except LatencyTableError as exc:
            raise RunDirError(f"{path}: {exc} Delete it to profile a new one.") from None
        return table, path
    table, _ = profile_space(space, stage_profile_config(cfg), path.parent, progress)
    return table, path


@dataclasses.dataclass
class StageStart:
    """What :func:`begin_stage` hands a stage; use it as a context manager (``with begin_stage(...)
    as start:``) so that the stage folder's lock is held until the stage returns or fails."""

    out: Path
    device: torch.device
    resume_state: dict | None  # the checkpoint to continue from, or None
    dist: DistContext = dataclasses.field(default_factory=DistContext)
    folder: StageFolder | None = None  # rank 0's locked folder (None on the other ranks)

    def __enter__(self) -> "StageStart":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.folder is not None:
            self.folder.close(failed=exc_type is not None)


# The setting that names each stage's folder, for the refusal of a name outside the run folder.
_FOLDER_SETTINGS = {
    "finetune": "finetune.out_dir",
    "evaluate": "evaluate.out_dir",
    "baseline": "the baseline's folder",
    "comparator": "the comparator's folder",
}


def begin_stage(
    cfg: Config,
    run_dir: str | Path,
    stage: str,
    resume: bool,
    overwrite: bool,
    out_name: str | None = None,
    sections: tuple[str, ...] = (),
    dist: DistContext | None = None,
) -> StageStart:
    """Open ``RUN/<stage>`` (:class:`~instanas_core.rundir.StageFolder`: a name inside the run
    folder, locked, prepared for a new, resumed or overwritten stage), check a resumed stage's saved
    config and search space against ``cfg``, write the config and environment, and return the
    checkpoint to resume from (if any).

    Under torchrun (``dist``) rank 0 does the checking and writing (and holds the lock) while the
    others wait; then every rank loads the checkpoint.
    """
    name = out_name or stage
    if dist is None:
        dist = single_process(resolve_device(cfg.experiment.device))
    space_hash = cfg.experiment.space().space_hash()

    def prepare() -> tuple[Path, dict | None, StageFolder]:
        folder = StageFolder(run_dir, name, stage, _FOLDER_SETTINGS.get(stage))
        out = folder.open(resume, overwrite)
        try:
            saved = out / "config.json"
            state = None
            if resume and (out / "last.pt").is_file():
                if saved.is_file():
                    saved_cfg = config_from_dict(load_json(saved), source=saved)
                    _check_same(saved_cfg, cfg, ("experiment", stage) + sections, name)
                state = load_checkpoint(out / "last.pt", map_location="cpu")
                check_space_hash(state, space_hash, f"cannot resume {name}: {out / 'last.pt'}")
            _check_experiment_consistent(cfg, Path(run_dir), name)
            save_json(saved, config_to_dict(cfg))
            save_environment(
                out,
                str(dist.device),
                cfg.experiment.seed,
                {"stage": stage, "preset": cfg.preset, "world_size": dist.world_size},
            )
        except BaseException:
            folder.close(failed=True)
            raise
        return out, state, folder

    prepared = on_main(dist, prepare, share=False)
    folder = None
    if dist.is_main:
        out, state, folder = prepared
    else:
        out = stage_dir(run_dir, name)
        last = out / "last.pt"
        state = load_checkpoint(last, map_location="cpu") if resume and last.is_file() else None
    return StageStart(out, dist.device, state, dist, folder)


# Settings that may differ between an interrupted run and its resumption (and between a finished
# stage and the configuration a notebook asks for): where and how it runs, not what it computes.
RESUME_FREE_SETTINGS = frozenset(
    {
        "stop_after_epoch",
        "num_workers",
        "threads",
        "device",
        "data_root",
        "download",
        "measure_samples",
        "channels_last",  # a memory layout: the same numbers either way
        "out_dir",  # where a stage writes (a resumed stage is in its own folder anyway)
    }
)


def config_diff(saved: Mapping[str, Any], cfg: Config, sections: Sequence[str]) -> list[str]:
    """The settings of ``sections`` that differ between a saved configuration (``config.json``
    as a dict) and ``cfg``, as ``"section.key: saved -> now"``; where a stage runs
    (:data:`RESUME_FREE_SETTINGS`) is left out, and so is a field the saved file lacks (it was
    added to the code since, with its default)."""
    mine = dataclasses.asdict(cfg)
    return [
        f"{sec}.{k}: {saved[sec][k]!r} -> {v!r}"
        for sec in sections
        for k, v in mine[sec].items()
        if k not in RESUME_FREE_SETTINGS and k in saved.get(sec, {}) and saved[sec][k] != v
    ]


def _check_same(saved: Config, cfg: Config, sections: tuple[str, ...], name: str) -> None:
    diffs = config_diff(dataclasses.asdict(saved), cfg, sections)
    if diffs:
        raise RunDirError(
            f"cannot resume {name}: its saved configuration differs ({'; '.join(diffs)}). Use the same preset and "
            "--set values, or --overwrite to start the stage again."
        )


# Settings of the experiment that fix the search space and the data: stages of one run must agree.
_SPACE_KEYS = ("dataset", "width_mult", "stage24_stride", "data_size", "data_seed", "train_per_class", "eval_per_class")


def _check_experiment_consistent(cfg: Config, run_dir: Path, name: str) -> None:
    for other in sorted(run_dir.glob("*/config.json")):
        if other.parent.name in (name, "profile"):
            continue
        try:
            exp = load_json(other).get("experiment", {})
        except (OSError, ValueError, AttributeError):  # unreadable, or not a JSON object: not a stage's config
            continue
        if not isinstance(exp, dict):
            continue
        mine = dataclasses.asdict(cfg.experiment)
        diffs = [f"{k}: {exp.get(k)!r} there, {mine[k]!r} here" for k in _SPACE_KEYS if k in exp and exp[k] != mine[k]]
        if diffs:
            raise RunDirError(
                f"{run_dir} holds a {other.parent.name} stage made with other experiment settings ({'; '.join(diffs)}). "
                "Use the same preset and --set values in every stage of a run, or another --run-dir."
            )
