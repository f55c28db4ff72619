"""Crash safety (issue 8): every training stage survives SIGKILL at a random moment.

Each stage runs once uninterrupted (in order: each stage starts from the previous one's output) in a subprocess (the reference), then again in another run
folder where it is killed with SIGKILL at random moments (drawn from a seeded generator over the
reference's duration, so the kill may land while starting up, training, checkpointing or
validating) and restarted with ``--resume`` until it finishes. After every kill the checkpoint
that is there must load; at the end the metrics must equal the reference's row for row. Columns
that measure this machine's clock (``seconds``, real latencies) are left out of the comparison.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instanas_core.config import get_preset
from instanas_core.rundir import load_checkpoint
from test_stages import write_mac_table

TIMED_COLUMNS = {"seconds", "measured_latency_ms"}
# (stage, extra arguments, kills): smoke settings lengthened a little so kills land mid-run.
CASES = [
    ("pretrain", ["--set", "epochs=3"], 2),
    ("search", ["--set", "epochs=3"], 2),
    ("finetune", ["--set", "epochs=3"], 2),
    ("baseline", ["--model", "mobilenetv2-0.4", "--set", "epochs=3"], 2),
]


def _command(stage: str, run_dir: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "instanas_core",
        stage,
        "--preset",
        "smoke",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--resume",
        *extra,
    ]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("INSTANAS_DEBUG", None)
    return env


def _run(stage: str, run_dir: Path, extra: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(_command(stage, run_dir, extra), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - t0


def _stage_folder(run_dir: Path, stage: str) -> Path:
    if stage == "baseline":
        return next(p for p in (run_dir / "baselines").iterdir() if p.is_dir())
    return run_dir / stage


def _metrics(folder: Path) -> list[dict]:
    with (folder / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMED_COLUMNS} for row in csv.DictReader(f)]


def _assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            if w[k] == g[k]:
                continue
            assert float(g[k]) == pytest.approx(float(w[k]), rel=1e-6, abs=1e-9), (k, g, w)


def _kill_and_resume(
    stage: str, run_dir: Path, extra: list[str], kills: int, duration: float, rng: random.Random
) -> list[float]:
    """Start, SIGKILL at a random moment, restart with --resume ...; then finish. A first run that
    ends before its kill moment (the machine was faster than during the reference) is wiped and
    started again with an earlier moment, so that at least one kill lands."""
    moments: list[float] = []
    scale = 1.0
    for _ in range(kills + 4):
        if len(moments) == kills:
            break
        proc = subprocess.Popen(
            _command(stage, run_dir, extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()
        )
        moment = rng.uniform(0.2, 0.8) * duration * scale
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            moments.append(round(moment, 2))
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
            if moments:  # a resumed run had little left to do: done
                break
            shutil.rmtree(_stage_folder(run_dir, stage))
            scale /= 2
        finally:
            proc.stderr.close()
        for ckpt in run_dir.rglob("last.pt"):
            load_checkpoint(ckpt)  # a kill never leaves a checkpoint that fails to load
    _run(stage, run_dir, extra)
    return moments


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    return base / "reference", base / "killed"


@pytest.mark.parametrize("stage,extra,kills", CASES, ids=[c[0] for c in CASES])
def test_sigkill_then_resume_matches_uninterrupted(runs, stage, extra, kills):
    reference, killed = runs
    if stage == "search":
        # The same deterministic latency table in both runs: a profiled one would carry this
        # machine's timing noise (and profiling time would skew the kill moments).
        write_mac_table(get_preset("smoke"), reference)
        write_mac_table(get_preset("smoke"), killed)
    duration = _run(stage, reference, extra)
    rng = random.Random(f"kill-{stage}")
    moments = _kill_and_resume(stage, killed, extra, kills, duration, rng)
    print(f"{stage}: uninterrupted {duration:.1f} s, killed at {moments} s")
    assert moments, "no kill landed before the stage finished"
    _assert_same_rows(_metrics(_stage_folder(killed, stage)), _metrics(_stage_folder(reference, stage)))
    load_checkpoint(_stage_folder(killed, stage) / "last.pt")
