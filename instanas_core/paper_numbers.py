"""The paper's reported numbers as data: every row of Tables 1-3 and the numeric claims of the
text (abstract, §1, §4.1/Figure 4, §4.2/Figures 5-6), each claim with its source sentence.

The data live in ``instanas_core/resources/paper_numbers.csv`` (one file, a ``kind`` column
telling ``table`` rows from ``claim`` rows), read with :func:`load_paper_numbers` and
:func:`load_paper_claims`.

Units, as reported:

* ``error_pct``: top-1 error in percent;
* ``latency_mean`` / ``latency_std``: *as printed in the paper's tables*, unit not stated there.
  They are per-image CPU latencies on the paper's Intel Core i5-7600 (§4.1), most likely in
  seconds (MobileNetV2 1.0x on CIFAR: 0.092). They are kept unconverted
  (:data:`PAPER_LATENCY_UNIT`); compare them with ours only as ratios (latency reductions),
  never as absolute values -- our machine is not theirs.

Inconsistencies of the paper are kept as printed and explained in the ``notes`` column (e.g.
the abstract's 48.8% vs the text's 48.9%; Table 2's MobileNet v2 0.4x std of 0.068; the
CIFAR-100 claim against ShuffleNetV2 2.0x, which Table 2 does not list).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "PAPER_LATENCY_UNIT",
    "PAPER_CPU",
    "PaperRow",
    "PaperClaim",
    "load_paper_numbers",
    "load_paper_claims",
    "find_paper_row",
    "latency_reduction_pct",
]

PAPER_LATENCY_UNIT = "as reported (the paper's table unit, unstated; most likely seconds per image)"
PAPER_CPU = "Intel Core i5-7600 (paper §4.1)"
_RESOURCE = "paper_numbers.csv"


@dataclass(frozen=True)
class PaperRow:
    """One row of Tables 1-3. ``latency_*`` in the paper's own unit (see module docstring)."""

    source: str  # "Table 1", "Table 2" or "Table 3"
    dataset: str  # cifar10, cifar100, tinyimagenet (the data registry's names)
    model: str  # as printed, citation removed
    group: str  # "human-designed", "NAS" or "InstaNAS"
    error_pct: float
    latency_mean: float | None  # None where the paper prints "-"
    latency_std: float | None
    our_name: str | None  # the baseline name in instanas_core.baselines, where we build it
    notes: str = ""

    @property
    def accuracy_pct(self) -> float:
        return 100.0 - self.error_pct


@dataclass(frozen=True)
class PaperClaim:
    """A number stated in the text, with the sentence that states it."""

    source: str  # "Abstract", "§1", "§4.2 (Figure 5)", ...
    dataset: str  # "" where the claim spans data sets
    subject: str
    reference: str
    metric: str  # latency_reduction_pct, accuracy_gain_pct, accuracy_drop_pct, correlation, ...
    value: float | None  # None for qualitative claims
    text: str
    notes: str = ""


def _opt_float(s: str) -> float | None:
    return float(s) if s.strip() else None


def _read_csv() -> list[dict[str, str]]:
    text = resources.files("instanas_core").joinpath("resources", _RESOURCE).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def load_paper_numbers(dataset: str | None = None) -> list[PaperRow]:
    """Rows of Tables 1-3 in the paper's order; ``dataset`` filters (``cifar10``, ...)."""
    rows = [
        PaperRow(
            source=r["source"],
            dataset=r["dataset"],
            model=r["model"],
            group=r["group"],
            error_pct=float(r["error_pct"]),
            latency_mean=_opt_float(r["latency_mean"]),
            latency_std=_opt_float(r["latency_std"]),
            our_name=r["our_name"] or None,
            notes=r["notes"],
        )
        for r in _read_csv()
        if r["kind"] == "table"
    ]
    return [r for r in rows if dataset is None or r.dataset == dataset]


def load_paper_claims(dataset: str | None = None) -> list[PaperClaim]:
    """The text's claims in reading order; ``dataset`` filters (claims spanning data sets have
    ``dataset == ""`` and are returned only without a filter)."""
    claims = [
        PaperClaim(
            source=r["source"],
            dataset=r["dataset"],
            subject=r["model"],
            reference=r["reference"],
            metric=r["metric"],
            value=_opt_float(r["value"]),
            text=r["text"],
            notes=r["notes"],
        )
        for r in _read_csv()
        if r["kind"] == "claim"
    ]
    return [c for c in claims if dataset is None or c.dataset == dataset]


def find_paper_row(dataset: str, model: str) -> PaperRow:
    """The table row of ``model`` (as printed, or our baseline name) on ``dataset``."""
    for r in load_paper_numbers(dataset):
        if model in (r.model, r.our_name):
            return r
    raise KeyError(f"no row for {model!r} on {dataset!r} in the paper's tables.")


def latency_reduction_pct(dataset: str, model: str, reference: str) -> float:
    """``100 * (1 - latency(model) / latency(reference))`` from the tables (unit-free)."""
    m, ref = find_paper_row(dataset, model), find_paper_row(dataset, reference)
    if m.latency_mean is None or ref.latency_mean is None:
        raise ValueError(f"the paper reports no latency for {model!r} or {reference!r} on {dataset!r}.")
    return 100.0 * (1.0 - m.latency_mean / ref.latency_mean)
