"""The results registry as the book's tables and trade-off figures: Tables 1-3 (this run's InstaNAS
and baseline rows beside the paper's, with latency reductions against MobileNetV2 1.0) and the
points of Figures 5-6 with each method's Pareto front (notebooks 06 and 07)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "paper_table_for",
    "latest_results",
    "result_family",
    "comparison_rows",
    "reduction_rows",
    "tradeoff_methods",
    "tradeoff_rows",
    "load_awareness_report",
]


# The paper's table a data set is compared against, and whether it is the same data.
_PAPER_TABLES = {"cifar10": "cifar10", "cifar100": "cifar100", "tinyimagenet": "tinyimagenet"}


def paper_table_for(dataset: str) -> dict:
    """The paper's table for ``dataset``: Table 1 (CIFAR-10), 2 (CIFAR-100) or 3 (TinyImageNet);
    the CPU data sets (digits, CIFAR-10 as JPEG, synthetic shapes) are set beside Table 1 and
    labelled as *not the same data*; ImageNet has no table (Figure 5 only)."""
    from ..data import dataset_info
    from ..paper_numbers import load_paper_numbers

    paper = _PAPER_TABLES.get(dataset, None if dataset == "imagenet" else "cifar10")
    rows = load_paper_numbers(paper) if paper else []
    source = rows[0].source if rows else None
    same = paper == dataset
    title = dataset_info(dataset).title
    if not rows:
        heading = f"{title}: the paper has no table (ImageNet appears in Figure 5 only)"
    elif same:
        heading = f"{source} ({dataset_info(paper).title}): the paper's rows beside this run's"
    else:
        heading = (
            f"{source} ({dataset_info(paper).title}) beside this run on {title}: NOT the same data -- "
            "compare ratios (latency reductions, ranking), not absolute numbers"
        )
    slug = source.lower().replace(" ", "") if source else "no_table"
    return {"paper_dataset": paper, "source": source, "slug": slug, "same_data": same, "heading": heading, "rows": rows}


def latest_results(run_dir: str | Path, dataset: str | None = None) -> list[Any]:
    """Rows of ``RUN/results.csv`` (of ``dataset`` if given), the last one of each (name,
    latency kind): a model evaluated again replaces its earlier row."""
    from ..results import read_results

    latest: dict[tuple, Any] = {}
    for r in read_results(run_dir):
        if dataset is None or r.dataset == dataset:
            latest.pop((r.name, r.latency_kind), None)
            latest[(r.name, r.latency_kind)] = r
    return list(latest.values())


def result_family(name: str) -> str:
    """The family a results row belongs to, as Tables 1-3 and Figures 5-6 group them."""
    for prefix, family in (
        ("InstaNAS", "InstaNAS"),
        ("mobilenetv2", "MobileNetV2"),
        ("shufflenetv2", "ShuffleNetV2"),
        ("resnet", "ResNet"),
        ("meta-mobilenetv2-path", "MobileNetV2 path (in-space)"),
        ("OneshotNAS", "OneshotNAS (re-trained front)"),
        ("BlockDrop", "BlockDrop"),
        ("ConvNet-AIG", "ConvNet-AIG"),
    ):
        if name.startswith(prefix):
            return family
    return "other"


def _short_name(name: str) -> str:
    for prefix in ("InstaNAS-", "mobilenetv2-", "shufflenetv2-", "OneshotNAS-"):
        if name.startswith(prefix):
            return name[len(prefix) :] or name
    return name


def comparison_rows(results: Sequence[Any], dataset: str, path_estimate_ms: float | None = None) -> list[dict]:
    """Tables 1-3: the paper's rows (its table for ``dataset``, latency in its own unit) and this
    run's InstaNAS and baseline rows (ms), each with its latency reduction against MobileNetV2
    1.0 of the same source and latency kind (paper: its MobileNet v2 1.0x row; this run: the
    measured ``mobilenetv2-1.0`` row, or for estimated InstaNAS rows the in-space MobileNetV2
    path's table estimate ``path_estimate_ms``)."""
    from ..data import dataset_info
    from ..paper_numbers import PAPER_CPU

    info = paper_table_for(dataset)
    rows = []
    ref = next((r.latency_mean for r in info["rows"] if r.our_name == "mobilenetv2-1.0"), None)
    for r in info["rows"]:
        red = round(100 * (1 - r.latency_mean / ref), 1) if ref and r.latency_mean is not None else None
        rows.append(
            {
                "source": f"paper, {r.source}",
                "model": r.model,
                "group": r.group,
                "error_pct": r.error_pct,
                "latency": r.latency_mean,
                "latency_std": r.latency_std,
                "latency_unit": "paper's (s?)",
                "latency_kind": f"measured, {PAPER_CPU}",
                "reduction_pct": red,
                "reduction_against": "MobileNet v2 1.0x (paper)" if red is not None else None,
                "params_M": None,
                "MACs_M": None,
            }
        )
    ours = [
        r
        for r in results
        if result_family(r.name) not in ("OneshotNAS (re-trained front)", "BlockDrop", "ConvNet-AIG", "other")
    ]
    measured_ref = next(
        (r.latency_mean_ms for r in ours if r.name == "mobilenetv2-1.0" and r.latency_kind == "measured"), None
    )
    title = dataset_info(dataset).title
    for r in sorted(ours, key=lambda r: (result_family(r.name) == "InstaNAS", r.name, r.latency_kind or "")):
        if r.latency_kind == "measured" and measured_ref:
            red, against = (
                round(100 * (1 - r.latency_mean_ms / measured_ref), 1),
                "mobilenetv2-1.0 (measured, this run)",
            )
        elif r.latency_kind == "estimated" and path_estimate_ms:
            red, against = (
                round(100 * (1 - r.latency_mean_ms / path_estimate_ms), 1),
                "in-space MobileNetV2 path (table)",
            )
        else:
            red, against = None, None
        rows.append(
            {
                "source": f"this run, {title}",
                "model": r.name,
                "group": result_family(r.name),
                "error_pct": round(r.error_pct, 2) if r.error_pct is not None else None,
                "latency": round(r.latency_mean_ms, 4) if r.latency_mean_ms is not None else None,
                "latency_std": round(r.latency_std_ms, 4) if r.latency_std_ms is not None else None,
                "latency_unit": "ms",
                "latency_kind": r.latency_kind,
                "reduction_pct": red,
                "reduction_against": against,
                "params_M": round(r.params / 1e6, 3) if r.params else None,
                "MACs_M": round(r.flops / 1e6, 2) if r.flops else None,
            }
        )
    return rows


def reduction_rows(results: Sequence[Any], dataset: str, path_estimate_ms: float | None = None) -> list[dict]:
    """Per InstaNAS variant: the paper's error and latency reduction against MobileNetV2 1.0
    (its variant of the same letter) beside this run's (measured against the measured
    mobilenetv2-1.0; estimated against the in-space MobileNetV2 path), and the error difference
    to MobileNetV2 1.0 in both (negative: InstaNAS is more accurate)."""
    info = paper_table_for(dataset)
    paper = {r.model[-1]: r for r in info["rows"] if r.group == "InstaNAS"}
    p_ref = next((r for r in info["rows"] if r.our_name == "mobilenetv2-1.0"), None)
    by = {(r.name, r.latency_kind): r for r in results}
    m_ref = by.get(("mobilenetv2-1.0", "measured"))
    letters = sorted({_short_name(r.name) for r in results if result_family(r.name) == "InstaNAS"})
    rows = []
    for v in letters:
        est, mea, p = by.get((f"InstaNAS-{v}", "estimated")), by.get((f"InstaNAS-{v}", "measured")), paper.get(v)
        row = {
            "variant": v,
            "paper_model": p.model if p else None,
            "paper_error_pct": p.error_pct if p else None,
            "paper_error_minus_mobilenetv2_pct": round(p.error_pct - p_ref.error_pct, 2) if p and p_ref else None,
            "paper_reduction_pct": round(100 * (1 - p.latency_mean / p_ref.latency_mean), 1) if p and p_ref else None,
        }
        mine = est or mea
        row["our_error_pct"] = round(mine.error_pct, 2) if mine else None
        row["our_error_minus_mobilenetv2_pct"] = round(mine.error_pct - m_ref.error_pct, 2) if mine and m_ref else None
        row["our_reduction_measured_pct"] = (
            round(100 * (1 - mea.latency_mean_ms / m_ref.latency_mean_ms), 1) if mea and m_ref else None
        )
        row["our_reduction_estimated_vs_path_pct"] = (
            round(100 * (1 - est.latency_mean_ms / path_estimate_ms), 1) if est and path_estimate_ms else None
        )
        rows.append(row)
    return rows


def tradeoff_methods(results: Sequence[Any], families: Sequence[str], latency_kind: str = "measured") -> dict:
    """Figures 5-6: per family (see :func:`result_family`), the latency (ms), error (%) and
    short names of its rows of ``latency_kind``; families without such rows are left out."""
    import numpy as np

    out = {}
    for fam in families:
        rows = sorted(
            (
                r
                for r in results
                if result_family(r.name) == fam
                and r.latency_kind == latency_kind
                and r.latency_mean_ms is not None
                and r.error_pct is not None
            ),
            key=lambda r: r.latency_mean_ms,
        )
        if rows:
            out[fam] = {
                "latency": np.array([r.latency_mean_ms for r in rows]),
                "error": np.array([r.error_pct for r in rows]),
                "names": [_short_name(r.name) for r in rows],
            }
    return out


def tradeoff_rows(methods: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """The points of a trade-off figure as rows, marking each method's Pareto front."""
    from ..plots import pareto_frontier

    rows = []
    for fam, d in methods.items():
        front = set(pareto_frontier(d["latency"], d["error"]).tolist())
        for i, name in enumerate(d["names"]):
            rows.append(
                {
                    "method": fam,
                    "model": name,
                    "latency_ms": round(float(d["latency"][i]), 4),
                    "error_pct": round(float(d["error"][i]), 2),
                    "on_method_front": i in front,
                }
            )
    return rows


def load_awareness_report(path: str | Path) -> dict:
    """The report of ``instanas bench instance-awareness`` (its ``instance-awareness.json``). A
    relative ``path`` not found from the working folder is read from the project's root (the
    committed ``benchmarks/instance-awareness/``); a missing report gets one paragraph saying how
    to make it."""
    import json

    from .errors import BookError

    p = Path(path)
    if not p.is_absolute() and not p.is_file():
        p = Path(__file__).resolve().parents[2] / p
    if not p.is_file():
        raise BookError(
            f"no instance-awareness report at {path}: run `instanas bench instance-awareness --out DIR` "
            "(or --quick) and pass DIR/instance-awareness.json."
        )
    return json.loads(p.read_text())
