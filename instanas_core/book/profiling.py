"""Notebook 01, the latency look-up table (paper §4.1, Figure 4): the run's table (the one the
search reads), a check of it on freshly sampled children timed end to end, stand-alone profiles at
further resolutions in the paper's space, and their rows for the notebook's tables. Every profile is
made with the profiling settings of the configuration the notebook holds
(:func:`~instanas_core.config.stage_profile_config`), never rebuilt from the preset's name."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import ProfileConfig, stage_profile_config
from ..pipeline import quiet_progress
from ..presets import book_settings
from .errors import BookError

__all__ = [
    "ensure_run_table",
    "load_run_table",
    "describe_table",
    "reference_lines",
    "count_check_children",
    "ensure_latency_check",
    "ensure_profile",
    "ensure_extra_profiles",
    "lut_rows",
    "correlation_rows",
]


def ensure_run_table(cfg: Any, run_dir: str | Path, progress: bool = False) -> tuple[Any, Path]:
    """The run's latency look-up table, ``RUN/profile/lut.json``: the one the search stage reads
    (made here if absent, with the preset's profiling settings, exactly as the stage would)."""
    from ..train import ensure_latency_table, resolve_device

    t0 = time.perf_counter()
    existed = (Path(run_dir) / "profile" / "lut.json").is_file()
    with quiet_progress():
        table, path = ensure_latency_table(cfg, run_dir, resolve_device(cfg.experiment.device), progress)
    print(f"{'loaded' if existed else f'profiled in {time.perf_counter() - t0:.1f} s:'} {path}")
    return table, path


def load_run_table(cfg: Any, run_dir: str | Path) -> Any:
    """The run's latency look-up table (made if absent, as the search would)."""
    from ..train import ensure_latency_table, resolve_device

    with quiet_progress():
        return ensure_latency_table(cfg, run_dir, resolve_device(cfg.experiment.device), False)[0]


def describe_table(table: Any) -> str:
    """A few lines on a look-up table: its space, machine, reference paths and calibration."""
    from ..reward import reference_latencies

    sp, m, refs = table.space, table.meta, reference_latencies(table)
    strides = ", ".join(str(st.stride) for st in sp.stages)
    lines = [
        f"space: {sp.resolution} px, width {sp.width_mult}, {sp.num_classes} classes, stage strides {strides}",
        f"timed on {m.get('device_name')} ({m.get('threads')} thread(s), torch {m.get('torch')}, {m.get('date')}): "
        f"{m.get('statistic')}",
        f"stem {table.stem_ms:.3f} ms, head {table.head_ms:.3f} ms, controller {table.controller_ms:.3f} ms",
        "estimates: all modules {all_modules_ms:.3f} ms, MobileNetV2 path (every cell ir_k3_e6) "
        "{mobilenetv2_ms:.3f} ms, cheapest valid path {cheapest_ms:.3f} ms".format(**refs),
    ]
    c = table.calibration
    lines.append(
        f"calibration: measured ~ {c['coef'][0]:.3f} x sum + {c['coef'][1]:.3f} ms "
        f"(fitted on {c['fit_children']} children)"
        if c
        else "calibration: none (the estimate is the plain sum of the entries)"
    )
    return "\n".join(lines)


def reference_lines(table: Any) -> dict[str, float]:
    """Estimated latencies (ms) of the in-space reference paths, for histograms and tables."""
    from ..reward import reference_latencies

    refs = reference_latencies(table)
    return {
        "MobileNetV2 path (every cell ir_k3_e6)": refs["mobilenetv2_ms"],
        "all modules": refs["all_modules_ms"],
        "cheapest path": refs["cheapest_ms"],
    }


def count_check_children(preset: str, children: int = 0) -> int:
    """How many children to time for Figure 4: ``children`` if positive, else the preset's
    default (:attr:`~instanas_core.presets.BookSettings.check_children`)."""
    return children if children > 0 else book_settings(preset).check_children


def ensure_latency_check(cfg: Any, run_dir: str | Path, table: Any, children: int, progress: bool = False) -> Path:
    """Judge the run's table on ``children`` freshly sampled children (a seed other than the
    calibration's), each timed end to end with the controller in the configuration's profile
    passes (the repeat gives the machine's noise floor): the one profiler's
    :func:`~instanas_core.profile.check_table`, with ``cfg``'s own profile settings. Writes
    ``RUN/profile/check/{correlation.csv,summary.json}``; loads them when made with the same
    settings and table. Returns the folder."""
    from ..profile import check_table

    pcfg = stage_profile_config(cfg)
    out = Path(run_dir) / "profile" / "check"
    settings = {
        "children": int(children),
        "seed": pcfg.seed + 1,
        "threads": pcfg.threads,
        "device": pcfg.device,
        "passes": pcfg.passes,
        "timing": dataclasses.asdict(pcfg.timing),
        "space_hash": table.space.space_hash(),
        "table_date": table.meta.get("date"),
    }
    if (out / "summary.json").is_file() and (out / "correlation.csv").is_file():
        summary = json.loads((out / "summary.json").read_text())
        if summary.get("settings") == settings:
            print(f"loaded the check of {children} children in {out}")
            return out
    if children < 3:
        raise BookError(f"Figure 4 needs at least 3 children to correlate, got {children}.")
    t0 = time.perf_counter()
    extra = {"settings": settings, "table": str(Path(run_dir) / "profile" / "lut.json")}
    with quiet_progress():
        check_table(table, pcfg, children, out, progress, extra)
    print(f"timed {children} children in {pcfg.passes} passes in {time.perf_counter() - t0:.1f} s -> {out}")
    return out


def ensure_profile(cfg: ProfileConfig, out_dir: str | Path, progress: bool = False) -> dict:
    """A stand-alone profile of ``cfg`` in ``out_dir`` (:func:`instanas_core.profile.run_profile`:
    table, children split into calibration and judged ones); loaded when there and made with the
    same configuration. Returns its summary."""
    from ..profile import run_profile

    out = Path(out_dir)
    needed = [out / "lut.json", out / "summary.json"] + ([out / "correlation.csv"] if cfg.children else [])
    if all(p.is_file() for p in needed):
        summary = json.loads((out / "summary.json").read_text())
        want = json.loads(json.dumps(dataclasses.asdict(cfg)))
        have = summary.get("config", {})
        if have != want:
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            raise BookError(
                f"{out} holds a profile made with another configuration (found vs wanted: {diff}); "
                "use a fresh run_dir or delete that folder to profile again."
            )
        print(f"loaded the profile in {out}")
        return summary
    t0 = time.perf_counter()
    with quiet_progress():
        summary = run_profile(cfg, out, progress=progress)
    print(f"profiled in {time.perf_counter() - t0:.1f} s -> {out}")
    return summary


# The paper's data set at each resolution (Tables 1-3, Figure 5) sets the head's class count.
_CLASSES_AT = {32: 10, 64: 200, 224: 1000}


def ensure_extra_profiles(cfg: Any, run_dir: str | Path, resolutions: Sequence[int], children: int) -> list[Path]:
    """Figure 4 at further resolutions, in the paper's space there (width 1.0, the class count
    of the paper's data set), with ``cfg``'s other profiling settings: a profile per resolution
    with ``children`` children, a quarter of them fitting the calibration
    (``RUN/profile/extra-<R>px``). Returns the folders."""
    pcfg = stage_profile_config(cfg)
    folders = []
    for res in resolutions:
        extra = dataclasses.replace(
            pcfg,
            resolution=int(res),
            width_mult=1.0,
            num_classes=_CLASSES_AT.get(int(res), pcfg.num_classes),
            children=max(int(children), 8),
        )
        folders.append(Path(run_dir) / "profile" / f"extra-{res}px")
        ensure_profile(extra, folders[-1])
    return folders


def lut_rows(table: Any) -> list[dict]:
    """The look-up table as rows (one per cell) for ``BookContext.table``."""
    rows = []
    for spec, ms in zip(table.space.cells(), table.cell_module_ms):
        row = {
            "cell": spec.index,
            "in": spec.in_channels,
            "out": spec.out_channels,
            "stride": spec.stride,
            "size_px": spec.in_size,
        }
        row.update({f"{m}_ms": round(float(v), 4) for m, v in zip(table.space.modules, ms)})
        rows.append(row)
    return rows


def correlation_rows(panels: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Figure 4's numbers per panel, beside the paper's r (§4.1)."""
    rows = []
    for p in panels:
        s = p["summary"]
        e, raw, cal = s["eval"], s["eval_raw_sum"], s.get("calibration")
        rows.append(
            {
                "panel": p["title"],
                "children_judged": e["n"],
                "pearson_r": round(e["pearson_r"], 4),
                "paper_r": p["paper_r"],
                "spearman_rho": round(e["spearman_rho"], 4),
                "mape_pct": round(e["mape_pct"], 2),
                "within_10pct": round(100 * e["within_10pct"], 1),
                "noise_floor_within_10pct": round(100 * e["repeat_within_10pct"], 1),
                "raw_sum_within_10pct": round(100 * raw["within_10pct"], 1),
                "calibration_a": round(cal["coef"][0], 4) if cal else None,
                "calibration_b_ms": round(cal["coef"][1], 4) if cal else None,
            }
        )
    return rows
