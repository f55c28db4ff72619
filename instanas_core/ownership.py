"""What a command may write and delete: output-folder names, a manifest of the files a command
wrote, and one lock per output folder.

Three rules keep every command from deleting or corrupting what it did not create:

* **Names.** A folder setting (``finetune.out_dir``, a baseline's folder, ...) is a plain
  relative name that resolves to a new sub-folder *inside* the run folder: never ``.``, ``..``, an
  absolute path or a symbolic link out of it (:func:`resolve_inside`).
* **Manifests.** An output folder holds ``.instanas-manifest.json``, the list of the files this
  project wrote there. Files are recorded *before* they are written (:func:`record_written`, called
  by every writer of :mod:`instanas_core.rundir`), so a kill between the two leaves a record of a
  file that may be missing, never a file without a record. ``--overwrite`` deletes exactly the
  recorded files (:func:`clear_recorded`); a file that is not recorded is never deleted and never
  written over (:func:`claim`).
* **Locks.** :class:`FolderLock` takes an exclusive ``fcntl.flock`` on ``.instanas.lock`` for as
  long as a stage writes its folder. A second writer is refused with the holder's process and
  host; the kernel drops the lock of a process that dies, even by SIGKILL, so no stale lock can
  block ``--resume``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Iterable

__all__ = [
    "MANIFEST_NAME",
    "LOCK_NAME",
    "OwnershipError",
    "FolderBusyError",
    "check_folder_name",
    "resolve_inside",
    "read_manifest",
    "start_manifest",
    "record_written",
    "recorded_files",
    "foreign_entries",
    "claim",
    "open_output_folder",
    "clear_recorded",
    "delete_listed",
    "FolderLock",
]

MANIFEST_NAME = ".instanas-manifest.json"
LOCK_NAME = ".instanas.lock"
_OWN = (MANIFEST_NAME, LOCK_NAME)
# One path component: starts with a letter or digit (so never "." or ".." or a hidden name).
# A temporary file of an atomic writer (``last.pt.tmp1234``, ``metrics.csv.tmp``).
_TMP = re.compile(r"\.tmp\d*$")
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


class OwnershipError(ValueError):
    """A folder or file that this command did not create and must not delete or write over."""


class FolderBusyError(OwnershipError):
    """An output folder locked by another running process."""


# ---- names ---------------------------------------------------------------------------------------
def check_folder_name(name: str, setting: str) -> str:
    """``name`` if it is a relative folder name of plain components (``finetune-B``,
    ``baselines/mobilenetv2-1.0``); else one paragraph naming ``setting`` and the valid form."""
    parts = str(name).split("/")
    if not name or any(not _COMPONENT.match(p) for p in parts):
        raise OwnershipError(
            f"{setting} must name a new sub-folder of the run folder: plain names of letters, digits, '.', '_', "
            f"'+', '=' and '-' starting with a letter or digit, separated by '/' (such as 'finetune-B'); got "
            f"{name!r}. '.', '..', absolute paths and hidden names are refused because --overwrite would delete "
            "the folder they point at."
        )
    return name


def resolve_inside(run_dir: str | os.PathLike, name: str, setting: str) -> Path:
    """``RUN/name`` after :func:`check_folder_name`, refused unless it resolves (symbolic links
    followed) to a folder strictly inside the run folder."""
    check_folder_name(name, setting)
    run = Path(run_dir)
    out = run / name
    real_run, real_out = run.resolve(), out.resolve()
    if real_out == real_run or real_run not in real_out.parents:
        raise OwnershipError(
            f"{setting}={name!r} resolves to {real_out}, which is not a sub-folder of the run folder {real_run} "
            "(a symbolic link points out of it). Remove the link or choose another name."
        )
    return out


# ---- manifests -----------------------------------------------------------------------------------
def _manifest_path(folder: Path) -> Path:
    return folder / MANIFEST_NAME


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The folder's manifest, or None when it has none. A damaged manifest is refused: without
    it nothing in the folder can be told apart from files of someone else."""
    path = _manifest_path(Path(folder))
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OwnershipError(
            f"{path} (the record of the files instanas wrote in {path.parent}) cannot be read ({exc}). Nothing in "
            "that folder is deleted or written over without it: move the folder away and run the command again."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise OwnershipError(
            f"{path} is not a manifest this project wrote (expected an object with a 'files' list). Move the "
            "folder away and run the command again."
        )
    return data


def _write_manifest(folder: Path, manifest: dict) -> None:
    path = _manifest_path(folder)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)  # atomic: a kill leaves the old or the new record, never half of one


def start_manifest(folder: str | os.PathLike, owner: str, created_folder: bool) -> dict:
    """Write a fresh manifest for ``owner`` (a stage or command name) in ``folder``."""
    folder = Path(folder)
    manifest = {
        "owner": owner,
        "created_folder": bool(created_folder),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": [],
    }
    _write_manifest(folder, manifest)
    return manifest


def _owning_folder(path: Path) -> Path | None:
    # A stage writes its own folder and at most one level below it (search/epochs/epoch_0001.pt).
    for folder in (path.parent, path.parent.parent):
        if _manifest_path(folder).is_file():
            return folder
    return None


def record_written(path: str | os.PathLike) -> None:
    """Record ``path`` in the manifest of the output folder it is written into, before it is
    written. A path in no manifest's folder is left alone (a stand-alone file of the user's
    choosing, such as ``--out report.json``)."""
    path = Path(path)
    folder = _owning_folder(path)
    if folder is None:
        return
    manifest = read_manifest(folder)
    rel = path.relative_to(folder).as_posix()
    if rel not in manifest["files"]:
        manifest["files"].append(rel)
        _write_manifest(folder, manifest)


def recorded_files(folder: str | os.PathLike) -> list[str]:
    manifest = read_manifest(folder)
    return list(manifest["files"]) if manifest else []


def _nested_owned(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` with a manifest of their own (a stage inside a stage, such as
    ``comparators/oneshot/retrain-00003``), outermost first."""
    return sorted((m.parent for m in folder.rglob(MANIFEST_NAME) if m.parent != folder), key=lambda p: len(p.parts))


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """Files (and symbolic links) under ``folder`` that no manifest lists, as relative paths.
    A sub-folder with a manifest of its own answers for its files; in a folder without a
    manifest every file is foreign."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if read_manifest(folder) is None:
        return [
            p.relative_to(folder).as_posix()
            for p in sorted(folder.rglob("*"))
            if (p.is_symlink() or p.is_file()) and p.relative_to(folder).as_posix() not in _OWN
        ]
    found = _foreign_here(folder)
    for sub in _nested_owned(folder):
        found += [f"{sub.relative_to(folder).as_posix()}/{rel}" for rel in _foreign_here(sub)]
    return found


def _foreign_here(folder: Path) -> list[str]:
    """The unlisted files of one owned folder, its nested owned folders left out."""
    mine = set(recorded_files(folder)) | set(_OWN)
    nested = _nested_owned(folder)
    return [
        rel
        for p in sorted(folder.rglob("*"))
        if (p.is_symlink() or p.is_file()) and not any(n in p.parents for n in nested)
        for rel in [p.relative_to(folder).as_posix()]
        if rel not in mine and _TMP.sub("", rel) not in mine  # a writer's temporary file left by a kill
    ]


def _listing(names: Iterable[str], limit: int = 5) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def claim(path: str | os.PathLike, force: bool = False) -> Path:
    """Make ``path`` a file this command may write: refuse to write over a file that exists and
    that the folder's manifest does not list (unless ``force``), then record it. Returns ``path``."""
    path = Path(path)
    folder = _owning_folder(path)
    recorded = folder is not None and path.relative_to(folder).as_posix() in recorded_files(folder)
    if (path.exists() or path.is_symlink()) and not recorded and not force:
        raise OwnershipError(
            f"{path} exists and was not written by this command (it is not in "
            f"{(folder or path.parent) / MANIFEST_NAME}); it is not written over. Move it away, or choose another "
            "output folder."
        )
    record_written(path)
    return path


def open_output_folder(folder: str | os.PathLike, owner: str) -> Path:
    """``folder`` made ready for a command that writes named files into it (``--out DIR``): created
    if missing, given a manifest if it has none. Files already there stay untouched; the command
    checks each file with :func:`claim` before writing it, so it never writes over one it did not write."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OwnershipError(f"{folder} is a file, not a folder; choose a folder for the output.")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if read_manifest(folder) is None:
        start_manifest(folder, owner, created)
    return folder


def clear_recorded(folder: str | os.PathLike) -> list[str]:
    """Delete the files the manifest of ``folder`` lists (never anything else), then the
    sub-folders that held them once they are empty; the manifest is reset. Returns what was
    deleted. Refused, deleting nothing, when the folder holds files it does not list."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    foreign = foreign_entries(folder)
    if manifest is None or foreign:
        why = "has no record of what instanas wrote there" if manifest is None else "holds files instanas did not write"
        raise OwnershipError(
            f"--overwrite refused: {folder} {why} ({_listing(foreign) or 'no files'}). Only files listed in its "
            f"{MANIFEST_NAME} are ever deleted. Move those files away (a folder made by an older version of this "
            "project: delete it yourself if you mean to), or choose another run folder."
        )
    deleted = []
    for sub in reversed(_nested_owned(folder)):  # innermost first: a nested stage's own files
        sub_manifest = read_manifest(sub)
        deleted += [f"{sub.relative_to(folder).as_posix()}/{r}" for r in delete_listed(sub, sub_manifest["files"])]
        (sub / MANIFEST_NAME).unlink()
        (sub / LOCK_NAME).unlink(missing_ok=True)
        if sub_manifest.get("created_folder") and not any(sub.iterdir()):
            sub.rmdir()
    deleted += delete_listed(folder, manifest["files"])
    start_manifest(folder, manifest.get("owner", "?"), manifest.get("created_folder", False))
    return deleted


def delete_listed(folder: Path, files: list[str]) -> list[str]:
    """Delete ``files`` (relative to ``folder``), then the sub-folders that held them once empty."""
    deleted = []
    for rel in files:
        p = folder / rel
        leftovers = (
            [t for t in p.parent.glob(p.name + ".tmp*") if _TMP.sub("", t.name) == p.name] if p.parent.is_dir() else []
        )
        for q in [p] + leftovers:
            if q.is_symlink() or q.is_file():
                q.unlink()
                deleted.append(q.relative_to(folder).as_posix())
    for rel in sorted({str(Path(r).parent) for r in files} - {"."}, key=len, reverse=True):
        sub = folder / rel
        if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
            sub.rmdir()
    return deleted


# ---- locks ---------------------------------------------------------------------------------------
class FolderLock:
    """An exclusive lock on an output folder while one process writes it (``with FolderLock(d):``).

    ``fcntl.flock`` on ``d/.instanas.lock``, which also says who holds it (process, host,
    command, since when) for the refusal of a second writer. The kernel releases the lock when the
    holder's process ends in any way, so a lock left by a killed process never blocks ``--resume``;
    the file itself stays (deleting it would let two processes lock two different files)."""

    def __init__(self, folder: str | os.PathLike, what: str = "this folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            try:
                info = json.loads(holder)
            except json.JSONDecodeError:
                info = {}
            raise FolderBusyError(
                f"{self.folder} is in use: another process is writing {self.what} there (process "
                f"{info.get('pid', '?')} on host {info.get('host', '?')}, `{info.get('command', '?')}`, since "
                f"{info.get('since', '?')}). Two writers would interleave its checkpoints and metrics.csv. Wait "
                "for it to finish or stop it, then run the command again (add --resume to continue its work); a "
                "lock of a process that was killed is released by the system."
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
