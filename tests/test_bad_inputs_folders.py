"""No command deletes or corrupts what it did not create (issue 13): output-folder names stay
inside the run folder, ``--overwrite`` deletes only what a stage recorded in its manifest, a second
writer of a stage folder is refused while a killed one's lock never blocks, a failed first attempt
leaves nothing behind, SIGTERM says how to resume, and every command that writes keeps a sentinel
file of its output folder intact. The rows of ``docs/bad-inputs.md`` tested here are named
``test_<id>``; the meta-test in ``test_bad_inputs.py`` finds them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from instanas_core import ownership
from instanas_core.cli import main
from instanas_core.ownership import MANIFEST_NAME, FolderBusyError, FolderLock, OwnershipError
from test_bad_inputs import cli_error, stage  # the one-paragraph CLI error helper

SENTINEL = "keep me: written by the user, not by instanas\n"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (the lock file's holder record left out)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ownership.LOCK_NAME
    }


def _env() -> dict:
    env = dict(os.environ)
    env.pop("INSTANAS_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def searched(book_smoke_run, tmp_path_factory):
    """A copy of the smoke book's run folder (pre-training, search, variants, baselines and
    comparators done), beside a sibling experiment."""
    parent = tmp_path_factory.mktemp("experiments")
    run = parent / "run"
    shutil.copytree(book_smoke_run[0], run)
    (parent / "sibling").mkdir()
    (parent / "sibling" / "results.txt").write_text(SENTINEL)
    return run


# ---- output-folder names ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [".", "..", "../sibling", "/tmp", ".hidden", "finetune/../.."])
def test_output_folder_outside_run(searched, capsys, value):
    """``finetune.out_dir`` that is not a new sub-folder of the run folder is refused, with or
    without ``--overwrite``, and nothing of the run or its siblings is touched."""
    before, sibling = tree(searched), tree(searched.parent / "sibling")
    for extra in ((), ("--overwrite",)):
        msg = cli_error(stage("finetune", searched, "--set", f"out_dir={value}", *extra), capsys)
        assert "out_dir" in msg and "sub-folder of the run folder" in msg
    assert tree(searched) == before and tree(searched.parent / "sibling") == sibling


def test_output_folder_through_a_link_is_refused(searched, capsys):
    """A plain name that is a symbolic link out of the run folder is refused as well."""
    link = searched / "finetune-link"
    link.symlink_to(searched.parent / "sibling", target_is_directory=True)
    try:
        msg = cli_error(stage("finetune", searched, "--set", "out_dir=finetune-link", "--overwrite"), capsys)
        assert "not a sub-folder of the run folder" in msg and "symbolic link" in msg
        assert (searched.parent / "sibling" / "results.txt").read_text() == SENTINEL
    finally:
        link.unlink()


@pytest.mark.parametrize("name", ["finetune-B", "baselines/mobilenetv2-1.0", "retrain-00003", "a.b_c+d=e"])
def test_plain_folder_names_are_accepted(name):
    assert ownership.check_folder_name(name, "x") == name


# ---- --overwrite deletes only what the stage recorded ---------------------------------------------
def test_overwrite_foreign_files(tmp_path, capsys):
    """A stage folder holding a file the stage did not write: ``--overwrite`` is refused and
    deletes nothing; once the file is gone it deletes exactly the recorded files."""
    run = tmp_path / "run"
    assert main(stage("pretrain", run)) == 0
    out = run / "pretrain"
    recorded = set(json.loads((out / MANIFEST_NAME).read_text())["files"])
    assert {"config.json", "environment.json", "metrics.csv", "last.pt", "summary.json"} <= recorded
    (out / "notes.txt").write_text(SENTINEL)
    before = tree(out)
    msg = cli_error(stage("pretrain", run, "--overwrite"), capsys)
    assert "--overwrite refused" in msg and "notes.txt" in msg and "did not write" in msg
    assert tree(out) == before
    (out / "notes.txt").unlink()
    assert main(stage("pretrain", run, "--overwrite")) == 0
    assert (out / "last.pt").is_file() and set(json.loads((out / MANIFEST_NAME).read_text())["files"]) == recorded


def test_overwrite_of_a_folder_without_manifest(tmp_path, capsys):
    """A stage folder made by something else (no manifest) is never deleted by ``--overwrite``."""
    out = tmp_path / "run" / "pretrain"
    out.mkdir(parents=True)
    (out / "last.pt").write_text(SENTINEL)
    msg = cli_error(stage("pretrain", tmp_path / "run", "--overwrite"), capsys)
    assert "no record of what instanas wrote" in msg and (out / "last.pt").read_text() == SENTINEL


def test_clear_recorded_deletes_nested_stages_and_leftover_temporaries(tmp_path):
    """The oneshot comparator holds re-training stages of its own; a kill leaves ``X.tmpPID``."""
    outer = tmp_path / "oneshot"
    outer.mkdir()
    ownership.start_manifest(outer, "comparator", True)
    inner = outer / "retrain-00001"
    inner.mkdir()
    ownership.start_manifest(inner, "comparator", True)
    for path in (outer / "samples.csv", inner / "last.pt", outer / "epochs" / "e.pt"):
        ownership.record_written(path)
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    (inner / "last.pt.tmp123").write_text("half")
    assert ownership.foreign_entries(outer) == []
    deleted = ownership.clear_recorded(outer)
    assert set(deleted) == {"samples.csv", "epochs/e.pt", "retrain-00001/last.pt", "retrain-00001/last.pt.tmp123"}
    assert sorted(p.name for p in outer.iterdir()) == [MANIFEST_NAME]


# ---- figures --out ------------------------------------------------------------------------------------
def test_figures_folder_not_ours(book_smoke_run, tmp_path, capsys):
    """``instanas figures --out DIR`` refuses a folder holding files it did not write; with
    ``--force`` it adds its figures but keeps those files and a README it did not write."""
    run, _ = book_smoke_run
    dest = tmp_path / "project"
    dest.mkdir()
    (dest / "README.md").write_text("# My project\n")
    (dest / "notes.png").write_bytes(b"mine")
    before = tree(dest)
    msg = cli_error(["figures", "--run-dir", str(run), "--out", str(dest)], capsys)
    assert "did not write" in msg and "README.md" in msg and "--force" in msg
    assert tree(dest) == before
    assert main(["figures", "--run-dir", str(run), "--out", str(dest), "--force"]) == 0
    assert (dest / "README.md").read_text() == "# My project\n" and (dest / "notes.png").read_bytes() == b"mine"
    assert "`smoke` preset" in (dest / "FIGURES.md").read_text()
    pngs = {p.name for p in (run / "figures").glob("*.png")}
    assert pngs <= {p.name for p in dest.glob("*.png")}
    # a second export replaces its own files and still keeps the user's
    assert main(["figures", "--run-dir", str(run), "--out", str(dest), "--force"]) == 0
    assert (dest / "README.md").read_text() == "# My project\n" and (dest / "notes.png").read_bytes() == b"mine"


def test_figures_export_replaces_only_its_own_files(book_smoke_run, tmp_path):
    run, _ = book_smoke_run
    dest = tmp_path / "figures"
    assert main(["figures", "--run-dir", str(run), "--out", str(dest)]) == 0
    stale = dest / "99_figure_of_an_older_book.png"  # written by an earlier export: recorded
    ownership.record_written(stale)
    stale.write_bytes(b"old")
    assert main(["figures", "--run-dir", str(run), "--out", str(dest)]) == 0
    assert not stale.exists() and (dest / "README.md").is_file() and not (dest / "FIGURES.md").exists()


# ---- one writer per stage folder --------------------------------------------------------------------
def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds the stage folder's lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from instanas_core.ownership import FolderLock
        FolderLock({str(folder)!r}, "the pretrain stage").acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_run_folder_in_use(tmp_path, capsys):
    """A second writer of a stage folder is refused, naming the process and host that hold it;
    the lock of a process killed with SIGKILL does not block ``--resume``."""
    run = tmp_path / "run"
    assert main(stage("pretrain", run, "--set", "epochs=2", "stop_after_epoch=0")) == 0
    out = run / "pretrain"
    metrics_before = (out / "metrics.csv").read_text()
    holder = _hold_lock(out)
    try:
        msg = cli_error(stage("pretrain", run, "--set", "epochs=2", "--resume"), capsys)
        assert f"process {holder.pid} on host {socket.gethostname()}" in msg and "in use" in msg
        assert (out / "metrics.csv").read_text() == metrics_before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(stage("pretrain", run, "--set", "epochs=2", "--resume")) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert json.loads((out / "summary.json").read_text())["epochs_done"] == 2


def test_stage_holds_its_lock_while_it_runs(tmp_path, monkeypatch):
    """While a stage trains, its folder's lock is taken (a second lock on it fails); afterwards
    it is free again."""
    from instanas_core.stages import pretrain

    seen = []
    real = pretrain.run_pass

    def probing(*args, **kwargs):
        with pytest.raises(FolderBusyError) as busy:
            FolderLock(tmp_path / "run" / "pretrain").acquire()
        seen.append(str(busy.value))
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain, "run_pass", probing)
    assert main(stage("pretrain", tmp_path / "run")) == 0
    assert seen and f"process {os.getpid()}" in seen[0]
    with FolderLock(tmp_path / "run" / "pretrain"):
        pass


# ---- a failed first attempt leaves nothing -------------------------------------------------------------
def test_failed_first_attempt(tmp_path, capsys):
    """A stage that fails before its first checkpoint removes what it wrote: the retry needs no
    ``--overwrite``. One that fails later keeps its last good checkpoint."""
    run = tmp_path / "run"
    msg = cli_error(stage("pretrain", run, "--set", "lr=1e30"), capsys)
    assert "became NaN or infinite" in msg
    assert not (run / "pretrain").exists()
    assert main(stage("pretrain", run)) == 0
    assert (run / "pretrain" / "last.pt").is_file()


def test_sigterm(tmp_path):
    """SIGTERM stops a stage with status 143 and says how to resume; a stage stopped before its
    first checkpoint leaves nothing."""
    run = tmp_path / "run"
    # batch size 1 over the whole smoke training split: the first epoch takes far longer than the wait
    cmd = [
        sys.executable,
        "-m",
        "instanas_core",
        *stage("pretrain", run, "--set", "batch_size=1", "max_steps_per_epoch=none"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 120
    while not (run / "pretrain" / "environment.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the first epoch
    assert not (run / "pretrain" / "last.pt").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped (SIGTERM)" in err and "--resume" in err and "Traceback" not in err
    assert not (run / "pretrain").exists()


# ---- every command that writes keeps a sentinel of its output folder ------------------------------------
def test_every_writing_command_keeps_a_sentinel(book_smoke_run, tmp_path, capsys):
    """Each command that writes, pointed at a folder holding a sentinel file (and a file with the
    name of one of its outputs, where it has fixed names), leaves both as they were."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "sentinel.txt").write_text(SENTINEL)
    (folder / "lut.json").write_text("{}\n")  # a file of the user's that profile would write over
    (folder / "routed-latency.json").write_text("{}\n")  # ... and bench routed-latency

    def untouched() -> None:
        assert (folder / "sentinel.txt").read_text() == SENTINEL
        assert (folder / "lut.json").read_text() == "{}\n"
        assert (folder / "routed-latency.json").read_text() == "{}\n"

    profile = [
        "profile",
        "--resolution",
        "32",
        "--width-mult",
        "0.25",
        "--min-run-time",
        "0.001",
        "--blocks",
        "1",
        "--quiet",
        "--out",
        str(folder),
    ]
    assert "lut.json exists and was not written by this command" in cli_error(profile, capsys)
    untouched()
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "sentinel.txt").write_text(SENTINEL)
    assert main([*profile[:-1], str(tmp_path / "profile")]) == 0  # writes beside the sentinel
    assert (tmp_path / "profile" / "sentinel.txt").read_text() == SENTINEL
    assert (tmp_path / "profile" / "lut.json").is_file()
    assert "was not written by this command" in cli_error(
        ["bench", "routed-latency", "--quick", "--out", str(folder)], capsys
    )
    untouched()
    # Every stage command over a run folder that holds the sentinel: a copy of the smoke book's run,
    # whose finished stages resume at once (evaluate runs again), then one stage made again.
    run = tmp_path / "run"
    shutil.copytree(book_smoke_run[0], run)
    (run / "sentinel.txt").write_text(SENTINEL)
    for argv in (
        ["pretrain", "--resume"],
        ["search", "--resume"],
        ["finetune", "--resume"],
        ["evaluate"],
        ["baseline", "--model", "mobilenetv2-1.0", "--resume"],
        ["comparator", "--name", "blockdrop", "--resume"],
        ["pretrain", "--overwrite"],
    ):
        assert main([*argv, "--run-dir", str(run), "--quiet"]) == 0, argv
        assert (run / "sentinel.txt").read_text() == SENTINEL
        untouched()
    book_run = book_smoke_run[0]
    assert main(["figures", "--run-dir", str(book_run), "--out", str(folder), "--force"]) == 0
    untouched()
    assert main(["book", "--preset", "smoke", "--run-dir", str(folder), "--only", "00", "--quiet"]) == 0
    untouched()


def test_claim_refuses_unrecorded_files_and_accepts_recorded_ones(tmp_path):
    out = ownership.open_output_folder(tmp_path / "o", "bench")
    (out / "x.json").write_text("mine")
    with pytest.raises(OwnershipError, match="was not written by this command"):
        ownership.claim(out / "x.json")
    ownership.claim(out / "y.json").write_text("1")
    ownership.claim(out / "y.json").write_text("2")  # its own file: written again
    assert (out / "x.json").read_text() == "mine" and (out / "y.json").read_text() == "2"
