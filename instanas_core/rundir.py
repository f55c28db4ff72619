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
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .env import describe_environment
from .ownership import (
    LOCK_NAME,
    MANIFEST_NAME,
    FolderLock,
    OwnershipError,
    clear_recorded,
    delete_listed,
    foreign_entries,
    read_manifest,
    record_written,
    resolve_inside,
    start_manifest,
)

__all__ = [
    "RunDirError",
    "stage_dir",
    "StageFolder",
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


class RunDirError(OwnershipError):
    """A run folder that cannot be used as asked (missing stage, existing output, mismatch)."""


def stage_dir(run_dir: str | os.PathLike, stage: str) -> Path:
    return Path(run_dir) / stage


class StageFolder:
    """``RUN/<name>`` opened for one stage (:func:`open`): the name checked to stay inside the run
    folder, the folder locked (:class:`~instanas_core.ownership.FolderLock`) until :meth:`close`,
    and prepared for a new, resumed or overwritten stage.

    * new or empty: a fresh manifest;
    * ``resume``: kept as it is (the stage continues from ``last.pt``);
    * ``overwrite``: the files its manifest lists are deleted, nothing else; refused when the
      folder holds files this project did not write;
    * otherwise a folder with content is refused.

    :meth:`close` with ``failed=True`` before the stage made anything durable (``last.pt`` or
    ``summary.json``) deletes what it wrote, so that the retry needs no ``--overwrite``.
    """

    def __init__(self, run_dir: str | os.PathLike, name: str, stage: str, setting: str | None = None) -> None:
        self.stage = stage
        self.out = resolve_inside(run_dir, name, setting or f"the {stage} folder")
        self.lock = FolderLock(self.out, f"the {stage} stage")

    def open(self, resume: bool, overwrite: bool) -> Path:
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunDirError(f"{out} is a file, not a folder; move it away or choose another --run-dir.")
        created = not out.exists()
        self.lock.acquire()
        try:
            manifest = read_manifest(out)
            owner = (manifest or {}).get("owner", self.stage)
            if owner != self.stage:
                raise RunDirError(
                    f"{out} belongs to the {owner} stage (its {MANIFEST_NAME} says so); the {self.stage} stage does not "
                    "write there. Choose another folder name for it."
                )
            recorded = [r for r in (manifest or {}).get("files", []) if (out / r).exists()]
            if not recorded and not foreign_entries(out):
                start_manifest(out, self.stage, created or bool((manifest or {}).get("created_folder")))
            elif overwrite:
                clear_recorded(out)
            elif resume:
                if manifest is None:  # made before manifests existed: record from now on
                    start_manifest(out, self.stage, False)
            else:
                raise RunDirError(
                    f"{out} already holds a {self.stage} stage. Pass --resume to continue it or --overwrite to start "
                    "it again (which deletes only the files the stage wrote there)."
                )
        except BaseException:
            self.lock.release()
            raise
        return out

    def close(self, failed: bool = False) -> None:
        """Release the lock; after a failure with nothing durable made, remove what was written."""
        try:
            if failed and self.lock.held and not any((self.out / f).is_file() for f in ("last.pt", "summary.json")):
                self._remove_partial()
        finally:
            self.lock.release()

    def _remove_partial(self) -> None:
        manifest = read_manifest(self.out)
        if manifest is None:
            return
        delete_listed(self.out, manifest["files"])
        # Folders the stage made before writing into them (search's epochs/) hold nothing now.
        for sub in sorted((p for p in self.out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(sub.iterdir()):
                sub.rmdir()
        left = [p.name for p in self.out.iterdir() if p.name not in (MANIFEST_NAME, LOCK_NAME)]
        if not left:
            (self.out / MANIFEST_NAME).unlink(missing_ok=True)
            if manifest.get("created_folder"):
                (self.out / LOCK_NAME).unlink(missing_ok=True)
                self.out.rmdir()


def prepare_stage_dir(run_dir: str | os.PathLike, stage: str, resume: bool, overwrite: bool) -> Path:
    """Create and prepare ``RUN/<stage>`` as :class:`StageFolder` does, without holding its lock
    afterwards (for callers that write the folder in one short step)."""
    folder = StageFolder(run_dir, stage, stage)
    out = folder.open(resume, overwrite)
    folder.close()
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
    """Read a JSON file of a run folder; a file that is not JSON is refused with a
    :class:`RunDirError` that names it (json's own message names only a line and column)."""
    path = Path(path)
    fix = "It was edited by hand or damaged: restore it from a copy, or run the stage that wrote it again with --overwrite."
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunDirError(f"{path} is not a JSON text file (its bytes are not UTF-8). {fix}") from None
    except ValueError as exc:  # a JSONDecodeError, or a number too long to convert
        raise RunDirError(f"{path} is not valid JSON ({exc}). {fix}") from None
    except RecursionError:
        raise RunDirError(f"{path} is not a file this project wrote (its JSON is nested too deeply). {fix}") from None


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
            header = next(iter(self._read_lines()), None)
            if header != self.columns:
                raise RunDirError(
                    f"{self.path} has columns {header}, expected {self.columns}; it was written by another "
                    "version of the code. Use --overwrite."
                )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record_written(self.path)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)

    def append(self, row: dict) -> None:
        missing = set(self.columns) - set(row)
        extra = set(row) - set(self.columns)
        if missing or extra:
            raise ValueError(
                f"metrics row does not match the header: missing {sorted(missing)}, extra {sorted(extra)}."
            )
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

    def _read_lines(self) -> list[list[str]]:
        """Every line of the file as its list of fields; a file that is not CSV text is refused."""
        return self._read(csv.reader)

    def rows(self) -> list[dict]:
        return self._read(csv.DictReader)

    def _read(self, reader) -> list:
        try:
            with self.path.open(newline="", encoding="utf-8") as f:
                return list(reader(f))
        except (UnicodeDecodeError, csv.Error) as exc:
            reason = "its bytes are not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise RunDirError(f"{self.path} is not a metrics table ({reason}). {_METRICS_FIX}") from None

    def truncate(self, keep_epochs_below: int) -> None:
        """Keep only rows with ``epoch < keep_epochs_below`` (and drop a partial last line that a
        kill or a full disk left).

        A resumed stage keeps the rows before its checkpoint's epoch and later reads them back as
        numbers, so each kept row is checked here, before any work: a value that is not a number
        (the file was edited or damaged) is refused with the line and column that hold it.
        """
        lines = self._read_lines()
        with self.path.open("rb") as f:
            f.seek(max(0, self.path.stat().st_size - 1))
            partial_end = f.read(1) not in (b"\n", b"")  # append() ends every row with a line break
        kept = []
        for number, fields in enumerate(lines[1:], start=2):  # line 1 is the header
            if not fields:
                continue
            problem = self._row_problem(fields, keep_epochs_below)
            if problem is not None:
                if number == len(lines) and (partial_end or len(fields) != len(self.columns)):
                    continue  # the last line as a kill during append() can leave it
                raise RunDirError(f"{self.path}, line {number}{problem} {_METRICS_FIX}")
            if int(fields[self.columns.index("epoch")]) < keep_epochs_below:
                kept.append(fields)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for fields in kept:
                w.writerow(fields)
        os.replace(tmp, self.path)

    def _row_problem(self, fields: list[str], keep_epochs_below: int) -> str | None:
        """What is wrong with one row (the text after "line N"), or None. Rows of the epochs a
        resumed stage redoes are dropped, so only their epoch number is checked."""
        if len(fields) != len(self.columns):
            return f" has {len(fields)} fields, but the header has {len(self.columns)}."
        epoch = fields[self.columns.index("epoch")]
        if not re.fullmatch(r"[0-9]+", epoch):
            return f": column 'epoch' holds {epoch!r}, not an epoch number (0, 1, ...)."
        if int(epoch) >= keep_epochs_below:
            return None
        for column, value in zip(self.columns, fields):
            if value != "" and not _is_number(value):  # "" is how append() writes NaN and infinity
                return f" (epoch {epoch}): column {column!r} holds {value!r}, which is not a number."
        return None


_METRICS_FIX = (
    "The file was edited by hand or damaged: correct that value or restore the file from a copy, or start the stage "
    "again with --overwrite."
)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return v


def _write_atomically(path: Path, write: Callable[[Path], None], what: str) -> Path:
    """``write(tmp)``, flush to disk, then ``os.replace(tmp, path)``: a crash or a full disk never
    leaves half a file at ``path``, and the previous file stays until the new one is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record_written(path)  # before the file exists: a kill leaves a record, never an unrecorded file
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
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    A file that refers to Python code (a pickle of arbitrary objects) is refused as not this
    project's: loading it would run that code. torch's own message about such a file advises
    loading it with ``weights_only=False``; that advice is never passed on.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"checkpoint {path} does not exist.")
    fix = "Delete it and use --overwrite, or restore it from a copy."
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of foreign files; the refusal below says what matters
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        text = str(exc)
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            code = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            if code:
                raise RunDirError(
                    f"checkpoint {path} is not a checkpoint this project wrote: it refers to Python code "
                    f"({code.group(1)}), and loading it would run that code, so it was not loaded. {fix}"
                ) from None
            detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
            first = detail.group(1).strip() if detail else "it holds more than plain tensors and numbers"
        else:
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise RunDirError(
            f"checkpoint {path} cannot be loaded ({first}). It is damaged or was not written by this "
            f"project (only plain tensors and numbers are loaded, never code). {fix}"
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
