"""The run's results registry: one CSV row per evaluated model, ``RUN/results.csv``.

Every stage that produces a number for the paper's tables or figures (InstaNAS's evaluate
stage, a baseline, a comparator of Figure 6) appends one :class:`ResultRow`, so that Tables 1-3
and Figures 5-6 are rebuilt from a single file and compared with
:mod:`instanas_core.paper_numbers`.

* ``accuracy``: top-1 accuracy in **percent** (0-100), like the paper (error % = 100 - it);
* ``latency_mean_ms`` / ``latency_std_ms``: per image at batch 1, in milliseconds;
  ``latency_kind`` says whether it was ``"measured"`` (timed) or ``"estimated"`` (look-up
  table, §4.1);
* ``flops``: multiply-accumulates (MACs) of one image, as :func:`instanas_core.flops.count_macs`
  counts them (the "FLOPs" of the MobileNet papers);
* ``extra``: a free dict, stored as JSON.

The column order is fixed (:data:`RESULT_COLUMNS`); the header is written once. Appends take an
exclusive file lock and write one line in one call, so several stages or processes can append
to the same file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: appends are still single writes, just not locked
    fcntl = None

__all__ = [
    "RESULTS_FILE",
    "RESULT_COLUMNS",
    "LATENCY_KINDS",
    "ResultRow",
    "ResultsError",
    "append_result",
    "read_results",
    "results_path",
]

RESULTS_FILE = "results.csv"
LATENCY_KINDS = ("measured", "estimated")


class ResultsError(ValueError):
    """A results file that cannot be read or appended to (wrong header, bad value)."""


@dataclass(frozen=True)
class ResultRow:
    """One evaluated model. Units: accuracy in %, latency in ms per image, flops in MACs."""

    name: str
    dataset: str
    preset: str = ""
    seed: int | None = None
    accuracy: float | None = None
    latency_mean_ms: float | None = None
    latency_std_ms: float | None = None
    latency_kind: str | None = None
    params: int | None = None
    flops: int | None = None
    run_dir: str = ""
    device: str = ""
    extra: dict = field(default_factory=dict)
    timestamp: str = ""  # ISO 8601, UTC; filled in by append_result when empty

    def __post_init__(self) -> None:
        if not self.name or not self.dataset:
            raise ResultsError("a result needs a name and a dataset.")
        if self.accuracy is not None and not 0.0 <= self.accuracy <= 100.0:
            raise ResultsError(f"accuracy is in percent (0-100); got {self.accuracy}.")
        if self.latency_kind is not None and self.latency_kind not in LATENCY_KINDS:
            raise ResultsError(f"latency_kind must be one of {LATENCY_KINDS} or None; got {self.latency_kind!r}.")
        if self.latency_mean_ms is not None and self.latency_kind is None:
            raise ResultsError("a latency needs latency_kind ('measured' or 'estimated').")

    @property
    def error_pct(self) -> float | None:
        return None if self.accuracy is None else 100.0 - self.accuracy


RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ResultRow))
_INT = {"seed", "params", "flops"}
_FLOAT = {"accuracy", "latency_mean_ms", "latency_std_ms"}
_OPTIONAL_STR = {"latency_kind"}


def results_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RESULTS_FILE


def _encode(row: ResultRow) -> str:
    values = []
    for name in RESULT_COLUMNS:
        v = getattr(row, name)
        if name == "extra":
            v = json.dumps(v, sort_keys=True, default=str)
        elif v is None:
            v = ""
        elif isinstance(v, float):
            v = repr(v)  # shortest exact round trip
        values.append(v)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _header() -> str:
    return ",".join(RESULT_COLUMNS) + "\n"


def append_result(run_dir: str | os.PathLike, row: ResultRow) -> Path:
    """Append ``row`` to ``run_dir/results.csv`` (created with its header when missing).

    ``run_dir`` and ``timestamp`` are filled in when the row leaves them empty.
    """
    path = results_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not row.run_dir or not row.timestamp:
        row = dataclasses.replace(
            row,
            run_dir=row.run_dir or str(run_dir),
            timestamp=row.timestamp or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
    line = _encode(row)
    with open(path, "a+", encoding="utf-8", newline="") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file closes
        f.seek(0)
        first = f.readline()
        if not first:
            f.write(_header())
        elif first != _header():
            raise ResultsError(
                f"{path} has another column layout ({first.strip()!r}); expected {_header().strip()!r}. "
                f"Move it aside or append to a new run directory."
            )
        f.write(line)  # "a" mode: always at the end, whatever the seek above
        f.flush()
    return path


def _decode(record: dict[str, str], where: str) -> ResultRow:
    kwargs: dict = {}
    try:
        for name in RESULT_COLUMNS:
            v = record[name]
            if name == "extra":
                kwargs[name] = json.loads(v) if v else {}
            elif name in _INT:
                kwargs[name] = int(v) if v != "" else None
            elif name in _FLOAT:
                kwargs[name] = float(v) if v != "" else None
            elif name in _OPTIONAL_STR:
                kwargs[name] = v or None
            else:
                kwargs[name] = v
        return ResultRow(**kwargs)
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{where}: malformed result row ({exc}).") from None


def read_results(run_dir: str | os.PathLike) -> list[ResultRow]:
    """Every row of ``run_dir/results.csv`` in the order appended; [] when there is none."""
    path = results_path(run_dir)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise ResultsError(f"{path} has columns {reader.fieldnames}; expected {list(RESULT_COLUMNS)}.")
        return [_decode(rec, f"{path}:{i + 2}") for i, rec in enumerate(reader)]
