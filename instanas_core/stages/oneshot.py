"""The OneshotNAS comparator of Figure 6 (Bender et al., ICML 2018), as §4.2 describes it: "sample
10,000 models from the meta-graph and train the trade-off frontier points from scratch".

The samples are scored with the shared weights of this run's pre-trained meta-graph on the
*validation* split and the latency table (without the controller: a one-shot architecture has
none), the Pareto front is kept (:func:`~instanas_core.pareto.pareto_indices`), and up to
``comparator.oneshot_retrain_top`` front points, spread along the latency axis, are cut out of a
freshly initialised meta-graph (``extract_child``) and trained from scratch with the baseline
trainer and budget (:mod:`instanas_core.stages.baseline`), each in ``retrain-NNNNN/``.

Written to ``RUN/comparators/oneshot/``: ``samples.csv``, ``samples.npz``, ``frontier.csv``, the
re-training folders and ``summary.json``. Under torchrun the scoring is split over ranks (sample
``i`` on rank ``i mod N``) and gathered.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from ..baselines import OneshotRecord, oneshot_search, pareto_front, shared_weight_eval_fn
from ..config import Config, config_from_dict
from ..distributed import DistContext, distributed_session, on_main
from ..latency import thread_limit
from ..ownership import claim
from ..results import append_result
from ..rundir import RunDirError, load_json, save_json, stage_dir
from ..train import begin_stage, build_models, build_split, ensure_latency_table, make_loader, policy_bits
from .baseline import finished_summary, finish_static_network, static_result_row, train_static_network
from .comparators import RESULT_NAMES, _pretrain_checkpoint, load_pretrained_meta_graph

__all__ = ["ONESHOT_SAMPLE_COLUMNS", "run_oneshot", "spread_picks"]

ONESHOT_SAMPLE_COLUMNS = ("index", "accuracy_pct", "table_latency_ms", "on_frontier", "policy")


def spread_picks(front: list[OneshotRecord], k: int) -> list[OneshotRecord]:
    """Up to ``k`` points of a front sorted by latency, evenly spread along it (both ends kept)."""
    if k <= 0 or not front:
        return []
    if k >= len(front):
        return list(front)
    idx = np.unique(np.round(np.linspace(0, len(front) - 1, k)).astype(int))
    return [front[i] for i in idx]


def _write_samples(out: Path, records: list[OneshotRecord], front: list[OneshotRecord]) -> None:
    on_front = {r.index for r in front}
    policies = torch.stack([r.policy for r in records])  # (N, T, K)
    bits = policy_bits(policies)
    # recorded in the stage folder's manifest, so that --overwrite may replace them
    np.savez_compressed(
        claim(out / "samples.npz", force=True),
        index=np.asarray([r.index for r in records]),
        accuracy_pct=np.asarray([r.accuracy for r in records]),
        table_latency_ms=np.asarray([r.latency_ms for r in records]),
        policy=policies.to(torch.uint8).numpy(),
    )
    for name, subset in (("samples.csv", records), ("frontier.csv", front)):
        with claim(out / name, force=True).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(ONESHOT_SAMPLE_COLUMNS)
            for r in subset:
                w.writerow(
                    [r.index, f"{r.accuracy:.4f}", f"{r.latency_ms:.6f}", int(r.index in on_front), bits[r.index]]
                )


def _load_samples(out: Path, n: int) -> list[OneshotRecord] | None:
    path = out / "samples.npz"
    if not path.is_file():
        return None
    d = np.load(path)
    if len(d["index"]) != n:
        return None
    policy = torch.from_numpy(d["policy"]).float()
    return [
        OneshotRecord(int(i), policy[j], float(a), float(lat))
        for j, (i, a, lat) in enumerate(zip(d["index"], d["accuracy_pct"], d["table_latency_ms"]))
    ]


# Settings that decide which architectures are sampled and how they are scored.
_SAMPLE_KEYS = ("oneshot_samples", "oneshot_bn", "oneshot_eval_batches")


def _check_samples_reusable(cfg: Config, out: Path) -> None:
    """Refuse to resume a one-shot search whose saved samples were made with other settings."""
    saved_path = out / "config.json"
    if not (out / "samples.npz").is_file() or not saved_path.is_file():
        return
    saved = config_from_dict(load_json(saved_path), source=saved_path)
    diffs = [
        f"comparator.{k}: {getattr(saved.comparator, k)!r} -> {getattr(cfg.comparator, k)!r}"
        for k in _SAMPLE_KEYS
        if getattr(saved.comparator, k) != getattr(cfg.comparator, k)
    ]
    diffs += [f"experiment.seed: {saved.experiment.seed!r} -> {cfg.experiment.seed!r}"] * (
        saved.experiment.seed != cfg.experiment.seed
    )
    if diffs:
        raise RunDirError(
            f"cannot resume {out}: its samples were made with other settings ({'; '.join(diffs)}). "
            "Use the same settings, or --overwrite to sample again."
        )


def _retrain_point(
    cfg: Config, run_dir, record: OneshotRecord, resume: bool, progress: bool, dist: DistContext | None = None
) -> dict:
    """Train one frontier architecture from scratch with the baseline trainer; append its row."""
    folder = f"comparators/oneshot/retrain-{record.index:05d}"
    with begin_stage(
        cfg, run_dir, "comparator", resume, False, out_name=folder, sections=("baseline",), dist=dist
    ) as start:
        return _train_point(cfg, run_dir, record, folder, start, progress, dist)


def _train_point(
    cfg: Config, run_dir, record: OneshotRecord, folder: str, start, progress: bool, dist: DistContext | None
) -> dict:
    """The body of :func:`_retrain_point` while its folder is held."""
    exp = cfg.experiment
    out, device = start.out, start.device
    previous = on_main(dist, lambda: finished_summary(out)) if start.resume_state is not None else None
    if previous is not None:
        return previous
    fresh, _ = build_models(exp, device, seed=exp.seed)  # the re-train stage's fresh initialisation
    child = fresh.extract_child(record.policy).train()
    space_hash = fresh.space.space_hash()
    del fresh
    bits = policy_bits(record.policy.unsqueeze(0))[0]
    rows = train_static_network(
        cfg,
        child,
        out,
        device,
        start.resume_state,
        {"stage": "oneshot-retrain", "sample_index": record.index, "space_hash": space_hash},
        progress,
        f"oneshot #{record.index}",
        dist,
    )

    def finish() -> dict:
        name = f"{RESULT_NAMES['oneshot']}-{record.index}"
        summary = {
            "name": name,
            "sample_index": record.index,
            "shared_weight_accuracy_pct": record.accuracy,
            "table_latency_ms": record.latency_ms,
            "policy": bits,
            "epochs_done": len(rows),
            "epochs": cfg.baseline.epochs,
            "finished": len(rows) >= cfg.baseline.epochs,
            "val_accuracy": float((rows[-1] if rows else {}).get("val_accuracy") or "nan"),
            "folder": folder,
        }
        if summary["finished"]:
            final = finish_static_network(cfg, child, device)
            row = static_result_row(
                cfg,
                name,
                run_dir,
                device,
                final,
                {
                    "stage": "comparator",
                    "method": "oneshot",
                    "figure": "6",
                    "folder": folder,
                    "sample_index": record.index,
                    "shared_weight_accuracy_pct": record.accuracy,
                    "table_latency_ms": record.latency_ms,
                    "policy": bits,
                    "latency_std": "over timing blocks",
                    "test_n": final["test_n"],
                },
            )
            append_result(run_dir, row)
            summary.update({**final, "accuracy_pct": row.accuracy, "latency_kind": "measured", "result_appended": True})
        save_json(out / "summary.json", summary)
        return summary

    return on_main(dist, finish)


def _score_samples(
    meta_graph, eval_fn, table, n: int, seed: int, progress: bool, dist: DistContext
) -> list[OneshotRecord]:
    """:func:`oneshot_search`, its shared-weight evaluations split over ranks: rank ``r`` scores
    samples ``i`` with ``i mod N == r`` (the same sampled policies on every rank, seeded), and the
    scores are gathered, so every rank returns what one process would."""
    if not dist.enabled:
        return oneshot_search(meta_graph, eval_fn, table, n, seed, progress)
    calls = itertools.count()

    def this_rank_only(policy_row: torch.Tensor) -> float:
        i = next(calls)
        return float(eval_fn(policy_row)) if i % dist.world_size == dist.rank else float("nan")

    records = oneshot_search(meta_graph, this_rank_only, table, n, seed, progress)
    scores = dist.all_gather([r.accuracy for r in records])
    return [dataclasses.replace(r, accuracy=scores[r.index % dist.world_size][r.index]) for r in records]


def run_oneshot(
    cfg: Config, run_dir: str | Path, progress: bool = True, *, resume: bool = False, overwrite: bool = False
) -> dict:
    """OneshotNAS on ``RUN/pretrain``'s meta-graph into ``RUN/comparators/oneshot/``: sample and
    score ``comparator.oneshot_samples`` architectures, write ``samples.csv`` / ``frontier.csv``,
    re-train up to ``comparator.oneshot_retrain_top`` front points from scratch (``baseline``
    budget) and append one ``OneshotNAS-<sample index>`` row each. ``resume`` reuses the samples
    and continues unfinished re-trainings."""
    exp, comparator_cfg, evaluate_cfg = cfg.experiment, cfg.comparator, cfg.evaluate
    _pretrain_checkpoint(run_dir, "the oneshot comparator")
    folder = "comparators/oneshot"
    with distributed_session(exp.device) as dist:
        if resume and not overwrite:
            on_main(dist, lambda: _check_samples_reusable(cfg, stage_dir(run_dir, folder)))
        with (
            begin_stage(
                cfg, run_dir, "comparator", resume, overwrite, out_name=folder, sections=("baseline",), dist=dist
            ) as start,
            thread_limit(exp.threads),
        ):
            out, device = start.out, start.device
            progress = progress and dist.is_main
            t_start = time.time()
            table, _ = ensure_latency_table(cfg, run_dir, device, progress, dist)
            # A one-shot architecture runs without a controller: its table latency leaves it out.
            child_table = dataclasses.replace(table, controller_ms=0.0)
            records = _load_samples(out, comparator_cfg.oneshot_samples) if resume else None
            reused = records is not None
            pre: dict = {}
            if records is None:
                meta_graph, pre = load_pretrained_meta_graph(cfg, run_dir, device)
                val_set = build_split(exp, "val", augment=False)
                loader = make_loader(val_set, evaluate_cfg.batch_size, False, 0, exp, device, train=False)
                eval_fn = shared_weight_eval_fn(
                    meta_graph, loader, device, comparator_cfg.oneshot_eval_batches, comparator_cfg.oneshot_bn
                )
                records = _score_samples(
                    meta_graph, eval_fn, child_table, comparator_cfg.oneshot_samples, exp.seed, progress, dist
                )
                del meta_graph
            front = pareto_front(records)
            if not reused:
                on_main(dist, lambda: _write_samples(out, records, front))
            search_seconds = time.time() - t_start
            picks = spread_picks(front, comparator_cfg.oneshot_retrain_top)
            retrained = [_retrain_point(cfg, run_dir, r, resume, progress, dist) for r in picks]

            def finish() -> dict:
                summary = {
                    "stage": "comparator",
                    "method": "oneshot",
                    "name": RESULT_NAMES["oneshot"],
                    "dataset": exp.dataset,
                    "samples": len(records),
                    "shared_weight_bn": comparator_cfg.oneshot_bn,
                    "shared_weight_split": "val",
                    "table_latency": "latency table estimate without the controller (ms)",
                    "frontier": [
                        {"index": r.index, "accuracy_pct": r.accuracy, "table_latency_ms": r.latency_ms} for r in front
                    ],
                    "retrained": retrained,
                    "finished": all(r.get("finished") for r in retrained),
                    "search_seconds": search_seconds,
                    "seconds_this_call": time.time() - t_start,
                    **pre,
                }
                save_json(out / "summary.json", summary)
                return summary

            return on_main(dist, finish)
