"""A finished run re-evaluated on another copy of its data set (issue 16), with no training.

``instanas evaluate --run-dir RUN --set data_root=DIR`` evaluates every fine-tuned variant
(``RUN/finetune-<L>``) and every finished baseline (``RUN/baselines/<NAME>``) of the run on the
test split found at ``DIR`` -- for ``cifar10-jpeg``, a ``test.npz`` beside ``train.npz`` is that
split, labelled "CIFAR-10 test (JPEG q75)" -- and writes a new results table beside the run's own:
``RUN/reevaluate-<title>-<hash of DIR>/`` holds ``results.csv`` (the columns of
:mod:`instanas_core.results`), ``results.md`` (each model's accuracy there beside its accuracy in
``RUN/results.csv``) and ``summary.json``; each variant's evaluation folder (records, selection
rates) lies inside it. ``RUN/results.csv`` is not touched.

Latency: an InstaNAS variant's routing depends on the image, so its table latency is computed
again and its routed latency timed again (``evaluate.measure_samples`` images); a baseline is a
static network whose latency does not depend on the data, so its measured latency is carried over
from its own folder and labelled so (``extra["latency_from"]``). Comparators (Figure 6) are not
re-evaluated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from pathlib import Path

import torch

from ..baselines import build_baseline
from ..config import Config
from ..data import dataset_title
from ..latency import thread_limit
from ..ownership import claim, open_output_folder
from ..results import RESULTS_FILE, ResultRow, append_result, read_results
from ..rundir import RunDirError, load_checkpoint, load_json, save_json
from ..train import build_split, make_loader, resolve_device
from .baseline import classify
from .evaluate import run_evaluate

__all__ = ["reevaluation_folder", "reevaluate_run", "format_reevaluate_summary"]


def reevaluation_folder(cfg: Config) -> str:
    """``reevaluate-<title>-<hash>``: the test split's title as a slug and a hash of the data root,
    so two copies of the data never share a folder."""
    exp = cfg.experiment
    title = re.sub(r"[^a-z0-9]+", "-", dataset_title(exp.dataset, exp.data_root).lower()).strip("-")
    root = str(Path(exp.data_root).expanduser().resolve()) if exp.data_root else ""
    return f"reevaluate-{title}-{hashlib.sha1(root.encode()).hexdigest()[:8]}"


def _finished_baselines(run: Path) -> list[Path]:
    folders = sorted(p for p in (run / "baselines").glob("*") if (p / "summary.json").is_file())
    return [p for p in folders if load_json(p / "summary.json").get("finished") and (p / "last.pt").is_file()]


def reevaluate_run(cfg: Config, run_dir: str | Path, progress: bool = True) -> dict:
    """Evaluate the run's variants and baselines on ``cfg.experiment.data_root``'s test split (see
    the module docstring); returns the summary (also ``summary.json``)."""
    run = Path(run_dir)
    variants = sorted(p.name.split("-", 1)[1] for p in run.glob("finetune-*") if (p / "last.pt").is_file())
    baselines = _finished_baselines(run)
    if not variants and not baselines:
        raise RunDirError(
            f"{run} has no fine-tuned variant (finetune-<L>/last.pt) and no finished baseline "
            "(baselines/<NAME>/last.pt): there is nothing to re-evaluate. Run the book, or `instanas finetune` "
            "and `instanas baseline`, first."
        )
    name = reevaluation_folder(cfg)
    out = open_output_folder(run / name, "reevaluate")
    table = claim(out / RESULTS_FILE)
    table.unlink(missing_ok=True)  # a re-evaluation into the same folder replaces the last one's rows
    t0 = time.time()
    title = dataset_title(cfg.experiment.dataset, cfg.experiment.data_root)
    for letter in variants:
        if progress:
            print(f"variant {letter} on {title} ...", flush=True)
        ev = dataclasses.replace(cfg.evaluate, source=f"finetune-{letter}", split="test")
        run_evaluate(
            dataclasses.replace(cfg, evaluate=ev),
            run,
            overwrite=True,
            progress=False,
            results_dir=out,
            out_name=f"{name}/evaluate-{letter}",
        )
    for folder in baselines:
        if progress:
            print(f"baseline {folder.name} on {title} ...", flush=True)
        append_result(out, _baseline_row(cfg, run, folder))
    rows = _compare(read_results(run) if (run / RESULTS_FILE).is_file() else [], read_results(out))
    summary = {
        "stage": "reevaluate",
        "dataset": cfg.experiment.dataset,
        "title": title,
        "data_root": str(cfg.experiment.data_root),
        "variants": variants,
        "baselines": [p.name for p in baselines],
        "rows": rows,
        "seconds": time.time() - t0,
        "folder": str(out),
    }
    claim(out / "results.md").write_text(_markdown(summary))
    save_json(claim(out / "summary.json"), summary)
    return summary


def _baseline_row(cfg: Config, run: Path, folder: Path) -> ResultRow:
    """A finished baseline's weights tested on the new split; its latency carried over."""
    exp = cfg.experiment
    saved = load_json(folder / "summary.json")
    device = resolve_device(exp.device)
    with thread_limit(exp.threads), torch.no_grad():
        model = build_baseline(saved["model"], exp.info.resolution, exp.info.num_classes)
        model.load_state_dict(load_checkpoint(folder / "last.pt", map_location=device)["model"])
        if exp.use_channels_last:
            model = model.to(memory_format=torch.channels_last)
        model = model.to(device)
        loader = make_loader(
            build_split(exp, "test", augment=False), cfg.evaluate.batch_size, False, 0, exp, device, train=False
        )
        res = classify(model, loader, device, exp.use_channels_last)
    lat = saved["latency_ms"]
    return ResultRow(
        name=saved["model"],
        dataset=exp.dataset,
        preset=cfg.preset,
        seed=exp.seed,
        accuracy=100.0 * float((res["pred"] == res["label"]).float().mean()),
        latency_mean_ms=lat["mean_ms"],
        latency_std_ms=lat["std_ms"],
        latency_kind="measured",
        params=int(saved["params"]),
        flops=int(saved["macs"]),
        run_dir=str(run),
        device=str(device),
        extra={
            "stage": "reevaluate",
            "folder": str(folder.relative_to(run)),
            "test_n": int(len(res["label"])),
            "latency_from": f"{folder.relative_to(run)}/summary.json (a static network: the data does not change it)",
        },
    )


def _key(r: ResultRow) -> tuple:
    """What identifies a model's row: name, latency kind and its folder (two trainings of one
    baseline, at two budgets, share a name) or, for InstaNAS, the fine-tuning it evaluates."""
    return r.name, r.latency_kind, r.extra.get("folder") or r.extra.get("source")


def _label(r: ResultRow) -> str:
    folder = str(r.extra.get("folder") or "")
    return r.name if not folder or folder.split("/")[-1] == r.name else f"{r.name} ({folder})"


def _compare(before: list, after: list) -> list[dict]:
    """One row per re-evaluated result: accuracy on the new split beside the run's own (the last
    row of RUN/results.csv with the same :func:`_key`)."""
    old = {_key(r): r for r in before}
    rows = []
    for r in after:
        was = old.get(_key(r))
        rows.append(
            {
                "model": _label(r),
                "latency kind": r.latency_kind,
                "latency ms": r.latency_mean_ms,
                "test images": r.extra.get("test_n"),
                "accuracy %": r.accuracy,
                "run's own test accuracy %": was.accuracy if was else None,
                "difference pt": r.accuracy - was.accuracy if was and was.accuracy is not None else None,
            }
        )
    return rows


def _markdown(s: dict) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))

    head = list(s["rows"][0]) if s["rows"] else []
    lines = [
        f"# Re-evaluated on {s['title']}",
        "",
        f"The run's variants and baselines, not trained again, tested on the test split at `{s['data_root']}`. "
        "Beside each: the run's own test accuracy (RUN/results.csv). Baseline latencies are carried over "
        "from their folders (static networks); InstaNAS latencies are computed and timed again.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(cell(r[k]) for k in head) + " |" for r in s["rows"]]
    return "\n".join(lines) + "\n"


def format_reevaluate_summary(s: dict) -> str:
    return (
        f"re-evaluated {len(s['variants'])} variant(s) and {len(s['baselines'])} baseline(s) on {s['title']} "
        f"in {s['seconds']:.0f} s -> {s['folder']}/results.md"
    )
