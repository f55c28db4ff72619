"""The run folder: one per experiment, one sub-folder per stage (paper §3.1's three stages plus
profiling and evaluation), everything needed to resume, compare and plot.

Layout::

    RUN/
      profile/   lut.json, summary.json                        (latency table, §4.1)
      pretrain/  config.json, environment.json, metrics.csv, last.pt, summary.json
      search/    config.json, environment.json, metrics.csv, last.pt,
                 epochs/epoch_0000.pt ..., variants.json, summary.json
      finetune/  config.json, environment.json, metrics.csv, last.pt, summary.json
      evaluate/  config.json, environment.json, records.csv, records.npz,
                 selection_rates.csv, summary.json

``metrics.csv`` has one row per epoch under a fixed header. Checkpoints are written atomically
(temporary file, then ``os.replace``) and read with ``torch.load(weights_only=True)``; they hold
plain containers of tensors and numbers only, RNG states included (:func:`capture_rng_state`).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import pickle
import random
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .env import describe_environment

__all__ = [
    "RunDirError",
    "stage_dir",
    "prepare_stage_dir",
    "save_json",
    "load_json",
    "save_environment",
    "MetricsLog",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "seed_everything",
    "epoch_seed",
]


class RunDirError(ValueError):
    """A run folder that cannot be used as asked (missing stage, existing output, mismatch)."""


def stage_dir(run_dir: str | os.PathLike, stage: str) -> Path:
    return Path(run_dir) / stage


def prepare_stage_dir(run_dir: str | os.PathLike, stage: str, resume: bool, overwrite: bool) -> Path:
    """Create ``RUN/<stage>``; refuse to mix a new run into an existing one unless asked.

    ``resume``: keep what is there (the stage continues from ``last.pt``). ``overwrite``: delete
    the stage's files first.
    """
    out = stage_dir(run_dir, stage)
    if out.exists() and any(out.iterdir()):
        if overwrite:
            import shutil

            shutil.rmtree(out)
        elif not resume:
            raise RunDirError(
                f"{out} already holds a {stage} stage. Pass --resume to continue it or --overwrite to start it again."
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (non-finite floats become null)."""
    text = json.dumps(_jsonable(obj), indent=1)
    return _write_atomically(Path(path), lambda tmp: tmp.write_text(text), "file")


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_environment(out: Path, device: str, seed: int, extra: dict | None = None) -> Path:
    """``environment.json``: package versions, device, git commit, seed and command line."""
    env = describe_environment(device)
    env.update({"seed": seed, "argv": sys.argv})
    if extra:
        env.update(extra)
    return save_json(out / "environment.json", env)


class MetricsLog:
    """``metrics.csv`` with a fixed header, one row per epoch, appended as epochs finish.

    Opening an existing file checks its header; :meth:`truncate` drops rows of epochs that a
    resumed run will redo (a crash between writing a row and the checkpoint leaves one).
    """

    def __init__(self, path: str | os.PathLike, columns: Iterable[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), None)
            if header != self.columns:
                raise RunDirError(
                    f"{self.path} has columns {header}, expected {self.columns}; it was written by another "
                    "version of the code. Use --overwrite."
                )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)

    def append(self, row: dict) -> None:
        missing = set(self.columns) - set(row)
        extra = set(row) - set(self.columns)
        if missing or extra:
            raise ValueError(f"metrics row does not match the header: missing {sorted(missing)}, extra {sorted(extra)}.")
        line = io.StringIO()
        csv.writer(line).writerow([_format(row[c]) for c in self.columns])
        try:
            with self.path.open("a", newline="") as f:
                f.write(line.getvalue())  # one write: a kill leaves a whole row or a partial last line
        except OSError as exc:
            raise RunDirError(
                f"could not append to {self.path}: {exc.strerror or exc}. The checkpoint of this epoch was "
                "written; free some space and run the same command again with --resume."
            ) from None

    def rows(self) -> list[dict]:
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def truncate(self, keep_epochs_below: int) -> None:
        """Keep only rows with ``epoch < keep_epochs_below`` (and drop a partial last line that a
        kill or a full disk left)."""
        rows = [
            r for r in self.rows()
            if None not in r and all(r.get(c) is not None for c in self.columns) and int(r["epoch"]) < keep_epochs_below
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in rows:
                w.writerow([r[c] for c in self.columns])
        os.replace(tmp, self.path)


def _format(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return v


def _write_atomically(path: Path, write: Callable[[Path], None], what: str) -> Path:
    """``write(tmp)``, flush to disk, then ``os.replace(tmp, path)``: a crash or a full disk never
    leaves half a file at ``path``, and the previous file stays until the new one is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = "The previous file there is intact. " if path.exists() else ""
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise RunDirError(
            f"could not write the {what} {path}: {reason}. {kept}Free some space (or choose another --run-dir) "
            "and run the same command again with --resume."
        ) from None
    return path


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """``torch.save`` to a temporary file, fsync, then ``os.replace``: a crash (even SIGKILL) or a
    full disk never leaves half a checkpoint, and the last good one survives a failed save."""
    return _write_atomically(Path(path), lambda tmp: torch.save(state, tmp), "checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(
            f"checkpoint {path} cannot be loaded ({first}). It is damaged or was not written by this "
            "project (only plain tensors and numbers are loaded, never code). Delete it and use --overwrite, "
            "or restore it from a copy."
        ) from None


def capture_rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) RNG states as weights-only-loadable containers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_STAGE_CODES = {"pretrain": 1, "search": 2, "finetune": 3, "evaluate": 4}


def epoch_seed(seed: int, stage: str, epoch: int, phase: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, stage, epoch, phase): every epoch re-seeds its
    data order, augmentation and policy sampling from it, so a run resumed at an epoch boundary
    replays exactly what the uninterrupted run would have done."""
    return (seed * 1_000_003 + _STAGE_CODES.get(stage, 9) * 100_003 + epoch * 101 + phase) % 2**63
