"""The module-wise latency look-up table and its check against real latency (paper §4.1, Figure 4).

Profiling times every (cell, module) at its real input shape, plus the stem, the head and the
controller, at batch 1, in eval mode under ``torch.inference_mode()``, with a fixed thread count,
using ``torch.utils.benchmark``. Each entry keeps the *minimum* over repeated timing blocks as its
robust statistic (on shared machines the minimum is steadier than a short median) and the
spread (median and inter-quartile range of the blocks).

Estimate for a policy (B, T, K): ``stem + head + controller + sum(policy * table)`` -- the
paper's "accumulate the layer-wise measurements". On CPUs a plain sum misses the cost of the
chained network (residual additions, cache effects, Python call overhead per executed module),
so the table also carries a *calibration*: an affine correction fitted by least squares on a
set of children that are then not used to judge it,

    measured ~ a * raw_sum + b.

Measured here (AMD EPYC, 1 thread, 32 px): the chained child costs about 1.5x the plain sum
(weights of a whole child do not stay in cache as one module's do when timed alone, plus
residual additions and per-call overhead). Richer models (adding the number of modules run,
residual cells, parameter bytes or MACs as features) fitted worse on held-out children: with a
few dozen fitting children the extra coefficients chase measurement noise.
``LatencyTable.estimate`` returns the calibrated value when a calibration is present,
``raw_estimate`` the plain sum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .controller import Controller
from .env import describe_environment
from .flops import count_macs, count_params
from .meta_graph import MetaGraph
from .policy import enforce_at_least_one, sample_random_policy
from .search_space import SearchSpace
from .validation import is_finite_number, json_kind

# torch.utils.benchmark imports cpp_extension, which warns about a missing CUDA toolkit on CPU
# machines; the warning says nothing about timing, so keep it out of every command's output.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402


__all__ = [
    "TimingConfig",
    "LatencyTable",
    "LatencyTableError",
    "time_callable",
    "profile_lookup_table",
    "policy_features",
    "fit_calibration",
    "measure_children",
    "correlation_summary",
    "thread_limit",
]

LUT_FORMAT_VERSION = 1


class LatencyTableError(ValueError):
    """A latency table that cannot be used here (another space, device or a damaged file)."""


@dataclass(frozen=True)
class TimingConfig:
    """How one latency is measured: blocks of repeated calls, the minimum block kept."""

    min_run_time: float = 0.05  # seconds per timing block
    blocks: int = 5  # repeated blocks; the statistic is the minimum over them
    warmup: int = 3

    def __post_init__(self) -> None:
        if self.min_run_time <= 0 or self.blocks < 1 or self.warmup < 0:
            raise ValueError(f"invalid timing configuration {self}: times and counts must be positive.")


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run with a fixed intra-op thread count, restoring the previous one afterwards."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_callable(fn: Callable[[], object], timing: TimingConfig = TimingConfig()) -> dict:
    """Time ``fn()``; returns ms statistics (min, median, IQR) over all timed blocks.

    ``torch.utils.benchmark`` synchronises CUDA around each block, so this is correct on GPUs.
    """
    with torch.inference_mode():
        for _ in range(timing.warmup):
            fn()
        times = []
        for _ in range(timing.blocks):
            m = benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=timing.min_run_time)
            times.extend(m.times)  # per-call time of every inner block, not just their mean
    # The minimum over every inner block: interference from other processes only ever adds time,
    # so the fastest block is the best estimate of the undisturbed cost.
    t = np.asarray(times) * 1e3
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    return {"min_ms": float(t.min()), "median_ms": float(med), "iqr_ms": float(q3 - q1)}


def policy_features(space: SearchSpace, policy: torch.Tensor) -> np.ndarray:
    """Per policy row: (modules run, residual cells executed). policy: (B, T, K) -> (B, 2)."""
    policy = enforce_at_least_one(policy.detach().cpu(), space)
    keeps = torch.tensor([c.keeps_shape for c in space.cells()])  # (T,)
    modules_run = policy.sum((1, 2))  # (B,)
    residual_cells = ((policy.sum(-1) > 0) & keeps).sum(1)  # (B,)
    return torch.stack([modules_run, residual_cells.float()], 1).numpy()


@dataclass
class LatencyTable:
    """Per (cell, module) latency in ms plus stem, head, controller; see module docstring."""

    space: SearchSpace
    cell_module_ms: np.ndarray  # (T, K) robust statistic (minimum over blocks)
    cell_module_median_ms: np.ndarray  # (T, K)
    cell_module_iqr_ms: np.ndarray  # (T, K)
    stem_ms: float
    head_ms: float
    controller_ms: float
    cell_module_macs: np.ndarray  # (T, K)
    cell_module_params: np.ndarray  # (T, K)
    meta: dict = field(default_factory=dict)
    calibration: dict | None = None  # {"coef": [a, b], "fit_children": n, ...}

    @property
    def fixed_ms(self) -> float:
        return self.stem_ms + self.head_ms + self.controller_ms

    def raw_estimate(self, policy: torch.Tensor) -> torch.Tensor:
        """Plain sum of table entries (+ stem, head, controller), ms: (B,) for policy (B, T, K)."""
        policy = enforce_at_least_one(policy.detach(), self.space)
        table = torch.as_tensor(self.cell_module_ms, dtype=policy.dtype, device=policy.device)
        return (policy * table).flatten(1).sum(1) + self.fixed_ms

    def estimate(self, policy: torch.Tensor) -> torch.Tensor:
        """Calibrated latency estimate in ms, (B,). Falls back to the raw sum if uncalibrated."""
        raw = self.raw_estimate(policy)
        if not self.calibration:
            return raw
        a, b = self.calibration["coef"]
        return a * raw + b

    def macs(self, policy: torch.Tensor) -> torch.Tensor:
        policy = enforce_at_least_one(policy.detach().cpu(), self.space)
        return (policy * torch.as_tensor(self.cell_module_macs, dtype=torch.float32)).flatten(1).sum(1)

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": LUT_FORMAT_VERSION,
            "space": self.space.to_dict(),
            "space_hash": self.space.space_hash(),
            "modules": list(self.space.modules),
            "cell_module_ms": self.cell_module_ms.tolist(),
            "cell_module_median_ms": self.cell_module_median_ms.tolist(),
            "cell_module_iqr_ms": self.cell_module_iqr_ms.tolist(),
            "stem_ms": self.stem_ms,
            "head_ms": self.head_ms,
            "controller_ms": self.controller_ms,
            "cell_module_macs": self.cell_module_macs.tolist(),
            "cell_module_params": self.cell_module_params.tolist(),
            "calibration": self.calibration,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)  # atomic: a crash never leaves half a table
        return path

    @classmethod
    def from_dict(cls, d: Any) -> "LatencyTable":
        """The table that :meth:`to_dict` wrote. Every entry is checked (a hand-edited or damaged
        table would otherwise train silently on wrong latencies, or fail far from the file): the
        space is a valid search space matching its hash, each (cell, module) grid has the space's
        shape, and every latency and count is a finite number >= 0."""
        if not isinstance(d, dict):
            raise LatencyTableError(f"it holds {json_kind(d)}, not a JSON object of table entries.")
        version = d.get("format_version", LUT_FORMAT_VERSION)
        if version != LUT_FORMAT_VERSION:
            raise LatencyTableError(f"it is in table format {version!r}; this code reads format {LUT_FORMAT_VERSION}.")
        missing = [key for key in ("space", *_GRIDS, *_SCALARS) if key not in d]
        if missing:
            raise LatencyTableError(f"it has no entry {', '.join(map(repr, missing))}.")
        try:
            space = SearchSpace.from_dict(d["space"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LatencyTableError(f"its 'space' entry is not a search space ({exc}).") from None
        if d.get("space_hash") not in (None, space.space_hash()):
            raise LatencyTableError("the table's space hash does not match its own space description.")
        stage_numbers = [v for st in space.stages for v in dataclasses.astuple(st)]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 for v in stage_numbers):
            raise LatencyTableError("its 'space' entry has a stage that is not four positive integers.")
        try:
            t, k = space.num_cells, space.num_modules
            space.cells()  # stem, resolution and strides are usable numbers
        except (TypeError, ValueError, OverflowError) as exc:
            raise LatencyTableError(f"its 'space' entry is not a search space ({exc}).") from None
        if "modules" in d and d["modules"] != list(space.modules):
            raise LatencyTableError(
                f"its 'modules' entry {d['modules']!r} does not match its space's {list(space.modules)}."
            )
        grids = {key: _grid(d[key], key, t, k, space) for key in _GRIDS}
        scalars = {key: _non_negative_number(d[key], key) for key in _SCALARS}
        meta = d.get("meta", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise LatencyTableError(f"its 'meta' entry is {json_kind(meta)}, not a JSON object.")
        return cls(
            space=space,
            cell_module_ms=grids["cell_module_ms"],
            cell_module_median_ms=grids["cell_module_median_ms"],
            cell_module_iqr_ms=grids["cell_module_iqr_ms"],
            stem_ms=scalars["stem_ms"],
            head_ms=scalars["head_ms"],
            controller_ms=scalars["controller_ms"],
            cell_module_macs=grids["cell_module_macs"],
            cell_module_params=grids["cell_module_params"],
            meta=dict(meta),
            calibration=_calibration(d.get("calibration")),
        )

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Read and check a ``lut.json`` (see :meth:`from_dict`); any problem is one
        :class:`LatencyTableError` naming the file, the entry and what to do."""
        path = Path(path)
        if not path.is_file():
            raise LatencyTableError(
                f"latency table {path} does not exist; create it with "
                f"`instanas profile --resolution R --out {path.parent}`."
            )
        fix = (
            "It was edited by hand or damaged: delete it, and a stage profiles a new one for its run (or write one "
            f"with `instanas profile --resolution R --width-mult W --out {path.parent}`)."
        )
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise LatencyTableError(f"latency table {path} is not a text file (not UTF-8). {fix}") from None
        except ValueError as exc:  # a JSONDecodeError, or a number too long to convert
            raise LatencyTableError(f"latency table {path} is not valid JSON ({exc}). {fix}") from None
        except RecursionError:
            raise LatencyTableError(
                f"latency table {path} is not a table this project wrote (its JSON is nested too deeply). {fix}"
            ) from None
        try:
            return cls.from_dict(d)
        except LatencyTableError as exc:
            raise LatencyTableError(f"latency table {path}: {str(exc).rstrip('.')}. {fix}") from None

    def check_compatible(self, space: SearchSpace, device: str | torch.device | None = None) -> None:
        """Refuse a table made for another space (resolution, width, classes) or device type."""
        if space.space_hash() != self.space.space_hash():
            diffs = [
                f"{f.name}: table {getattr(self.space, f.name)!r} vs run {getattr(space, f.name)!r}"
                for f in dataclasses.fields(SearchSpace)
                if getattr(self.space, f.name) != getattr(space, f.name)
            ]
            raise LatencyTableError(
                "the latency table was profiled for another search space ("
                + "; ".join(diffs)
                + "). Profile one for this space with `instanas profile`."
            )
        if device is not None:
            want = torch.device(device).type
            have = self.meta.get("device_type")
            if have is not None and have != want:
                raise LatencyTableError(
                    f"the latency table was profiled on {have} but this run uses {want}; "
                    f"profile on the device you train for with `instanas profile --device {want}`."
                )


# The (cell, module) grids of a table and its single numbers; all are >= 0 (ms, MACs, parameters).
_GRIDS = ("cell_module_ms", "cell_module_median_ms", "cell_module_iqr_ms", "cell_module_macs", "cell_module_params")
_SCALARS = ("stem_ms", "head_ms", "controller_ms")


def _non_negative_number(value: Any, where: str) -> float:
    """``value`` as a float when it is a finite number >= 0 (a latency in ms, a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LatencyTableError(f"{where} is {json_kind(value)}, but every entry must be a number >= 0.")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise LatencyTableError(f"{where} is {value!r}, but every entry must be a finite number >= 0.")
    return number


def _grid(value: Any, key: str, t: int, k: int, space: SearchSpace) -> np.ndarray:
    """A (cells, modules) grid: ``t`` lists of ``k`` finite numbers >= 0."""
    shape = f"{t} cells x {k} modules ({', '.join(space.modules)})"
    if not isinstance(value, list) or len(value) != t:
        got = f"has {len(value)} rows" if isinstance(value, list) else f"is {json_kind(value)}"
        raise LatencyTableError(f"entry {key!r} does not have the shape {shape}: it {got}.")
    out = np.zeros((t, k))
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != k:
            got = f"has {len(row)} entries" if isinstance(row, list) else f"is {json_kind(row)}"
            raise LatencyTableError(f"entry {key!r} does not have the shape {shape}: its row {key}[{i}] {got}.")
        for j, v in enumerate(row):
            out[i, j] = _non_negative_number(v, f"{key}[{i}][{j}] (cell {i}, module {space.modules[j]})")
    return out


def _calibration(value: Any) -> dict | None:
    """None, or a dict whose ``coef`` is two finite numbers (``measured ~ a * raw_sum + b``)."""
    if value is None:
        return None
    coef = value.get("coef") if isinstance(value, dict) else None
    ok = isinstance(coef, list) and len(coef) == 2 and all(is_finite_number(c) for c in coef)
    if not ok:
        raise LatencyTableError(
            f"its 'calibration' entry is not an object with 'coef': [a, b] of two finite numbers (got {value!r:.80})."
        )
    return dict(value)


def _module_timer(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    return lambda: module(x)


def profile_lookup_table(
    meta_graph: MetaGraph,
    controller: Controller | None = None,
    threads: int | None = 1,
    timing: TimingConfig = TimingConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> LatencyTable:
    """Time every (cell, module), the stem, the head and the controller at batch 1."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    space = meta_graph.space
    meta_graph = meta_graph.to(device).eval()
    t, k = space.num_cells, space.num_modules
    best, med, iqr = (np.zeros((t, k)) for _ in range(3))
    macs, params = np.zeros((t, k)), np.zeros((t, k))
    cells = space.cells()
    with thread_limit(threads), torch.inference_mode():
        stem_in = torch.randn(1, 3, space.resolution, space.resolution, device=device)
        stem_ms = time_callable(_module_timer(meta_graph.stem, stem_in), timing)["min_ms"]
        last = cells[-1]
        head_in = torch.randn(1, last.out_channels, last.out_size, last.out_size, device=device)
        head_ms = time_callable(_module_timer(meta_graph.head, head_in), timing)["min_ms"]
        controller_ms = 0.0
        if controller is not None:
            controller = controller.to(device).eval()
            controller_ms = time_callable(_module_timer(controller, stem_in), timing)["min_ms"]
        bar = tqdm(total=t * k, desc=f"profile {space.resolution}px", disable=not progress, leave=False)
        for ti, spec in enumerate(cells):
            x = torch.randn(1, spec.in_channels, spec.in_size, spec.in_size, device=device)
            for ki, branch in enumerate(meta_graph.cells[ti].branches):
                stats = time_callable(_module_timer(branch, x), timing)
                best[ti, ki], med[ti, ki], iqr[ti, ki] = stats["min_ms"], stats["median_ms"], stats["iqr_ms"]
                macs[ti, ki] = count_macs(branch, tuple(x.shape), device)
                params[ti, ki] = count_params(branch)
                bar.update(1)
        bar.close()
    meta = describe_environment(device, threads)
    meta.update(
        {
            "device_type": device.type,
            "resolution": space.resolution,
            "width_mult": space.width_mult,
            "num_classes": space.num_classes,
            "batch_size": 1,
            "statistic": f"minimum over {timing.blocks} blocks of >= {timing.min_run_time}s",
            "timing": dataclasses.asdict(timing),
        }
    )
    return LatencyTable(space, best, med, iqr, stem_ms, head_ms, controller_ms, macs, params, meta)


def measure_children(
    meta_graph: MetaGraph,
    policies: torch.Tensor,
    controller: Controller | None = None,
    threads: int | None = 1,
    timing: TimingConfig = TimingConfig(),
    device: str | torch.device = "cpu",
    passes: int = 2,
    progress: bool = True,
) -> np.ndarray:
    """Real end-to-end batch-1 latency (controller, then the extracted child) for each policy.

    Returns (N, passes) ms. Passes run one after another over all children, so that the spread
    between passes shows the machine's own noise floor.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    meta_graph = meta_graph.eval()
    if controller is not None:
        controller = controller.to(device).eval()
    res = meta_graph.space.resolution
    x = torch.randn(1, 3, res, res, device=device)
    meta_graph = meta_graph.to(device)
    # Weight-sharing views: the same computation as a copied child, without holding N copies of
    # the weights (500 copied children at width 1.0 took 12 GB).
    children = [meta_graph.extract_child(p, share_weights=True) for p in policies]
    out = np.zeros((len(children), passes))
    with thread_limit(threads):
        bar = tqdm(total=len(children) * passes, desc="measure children", disable=not progress, leave=False)
        for j in range(passes):
            for i, child in enumerate(children):
                if controller is None:
                    fn = _module_timer(child, x)
                else:

                    def fn(child=child):
                        controller(x)
                        return child(x)

                out[i, j] = time_callable(fn, timing)["min_ms"]
                bar.update(1)
        bar.close()
    return out


def fit_calibration(table: LatencyTable, policies: torch.Tensor, measured_ms: np.ndarray) -> dict:
    """Least-squares fit of ``measured ~ a * raw_sum + b`` on the given children."""
    raw = table.raw_estimate(policies).cpu().numpy()
    design = np.column_stack([raw, np.ones_like(raw)])  # (N, 2)
    coef, *_ = np.linalg.lstsq(design, np.asarray(measured_ms, dtype=np.float64), rcond=None)
    return {
        "model": "measured ~ a * raw_sum + b",
        "coef": [float(c) for c in coef],
        "fit_children": int(len(raw)),
    }


def correlation_summary(estimated: np.ndarray, measured: np.ndarray, repeat: np.ndarray | None = None) -> dict:
    """Pearson r, Spearman rho, MAPE, share within +-10%; with ``repeat``, the noise floor:
    the share of children whose two measurements agree within +-10%."""
    from scipy import stats

    est, mea = np.asarray(estimated, float), np.asarray(measured, float)
    rel = np.abs(est - mea) / mea
    out = {
        "n": int(len(est)),
        "pearson_r": float(stats.pearsonr(est, mea)[0]) if len(est) > 2 else math.nan,
        "spearman_rho": float(stats.spearmanr(est, mea)[0]) if len(est) > 2 else math.nan,
        "mape_pct": float(100 * rel.mean()),
        "within_10pct": float((rel <= 0.10).mean()),
    }
    if repeat is not None:
        rep = np.asarray(repeat, float)
        out["repeat_within_10pct"] = float((np.abs(rep - mea) / mea <= 0.10).mean())
    return out


def sample_children(meta_graph: MetaGraph, n: int, seed: int) -> torch.Tensor:
    """N valid, varied random policies (see :func:`sample_random_policy`), seeded."""
    return sample_random_policy(meta_graph, n, torch.Generator().manual_seed(seed))
