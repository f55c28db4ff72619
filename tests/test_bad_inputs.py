"""Every bad input of ``docs/bad-inputs.md`` gets its clear, one-paragraph error (issue 8).

Command-line cases go through :func:`instanas_core.cli.main` and check the exit status (2), that
the message names the problem, and that no traceback is printed. One test per row of the table;
:func:`test_every_documented_bad_input_has_a_test` keeps the two in step.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instanas_core import book
from instanas_core.cli import main
from instanas_core.config import config_to_dict, get_preset
from instanas_core.data import DatasetError, build_transform, dataset_info
from instanas_core.data.imagefolder import load_rgb
from instanas_core.latency import LatencyTable
from instanas_core.meta_graph import build_meta_graph
from instanas_core.policy import all_ones_policy
from instanas_core.rundir import RunDirError, load_checkpoint, save_checkpoint, save_json
from instanas_core.search_space import make_search_space

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"


def cli_error(argv: list[str], capsys) -> str:
    """Run the command line, expect the one-paragraph error, return it."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def stage(name: str, run: Path, *extra: str) -> list[str]:
    return [name, "--preset", "smoke", "--run-dir", str(run), "--quiet", *extra]


def flat_table(space, device_type: str = "cpu") -> LatencyTable:
    ms = np.full((space.num_cells, space.num_modules), 0.1)
    return LatencyTable(space, ms, ms, np.zeros_like(ms), 0.1, 0.1, 0.1, ms, ms, {"device_type": device_type})


def test_every_documented_bad_input_has_a_test():
    ids = [i for i in re.findall(r"^\| ([a-z0-9-]+) \|", DOC.read_text(), flags=re.M) if i not in ("id", "---")]
    assert len(ids) >= 15 and len(set(ids)) == len(ids)
    # The tests live in this file and in its siblings tests/test_bad_inputs_*.py.
    defined = set()
    for path in sorted(Path(__file__).parent.glob("test_bad_inputs*.py")):
        defined |= set(re.findall(r"^def (test_\w+)\(", path.read_text(), flags=re.M))
    missing = [i for i in ids if f"test_{i.replace('-', '_')}" not in defined]
    assert not missing, f"rows of {DOC.name} without a test: {missing}"


def test_unknown_preset(tmp_path, capsys):
    msg = cli_error(["pretrain", "--preset", "smok", "--run-dir", str(tmp_path)], capsys)
    assert "unknown preset 'smok'" in msg and "smoke" in msg
    assert not (tmp_path / "pretrain").exists()  # refused before anything was written


def test_unknown_dataset(tmp_path, capsys):
    msg = cli_error(stage("pretrain", tmp_path, "--dataset", "cifar11"), capsys)
    assert "unknown dataset 'cifar11'" in msg and "digits" in msg


def test_unknown_setting(tmp_path, capsys):
    msg = cli_error(stage("pretrain", tmp_path, "--set", "epochz=3"), capsys)
    assert "unknown setting 'epochz'" in msg and "Valid keys" in msg


def test_unknown_book_parameter(tmp_path, capsys):
    msg = cli_error(
        ["book", "--preset", "smoke", "--run-dir", str(tmp_path), "--param", "pretrain_override=[]"], capsys
    )
    assert "'pretrain_override'" in msg and "Unknown notebook parameter" in msg
    assert not (tmp_path / "notebooks").exists()


def test_unknown_papermill_parameter(tmp_path):
    """Through papermill itself, which only warns about an unknown name."""
    import jupytext
    import papermill

    src = tmp_path / "02_pretrain.ipynb"
    jupytext.write(jupytext.read(ROOT / "notebooks" / "02_pretrain.py"), src)
    with pytest.raises(papermill.PapermillExecutionError, match="Unknown parameter.*'seeed'.*02_pretrain"):
        papermill.execute_notebook(
            str(src),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
            parameters={"preset": "smoke", "run_dir": str(tmp_path / "run"), "seeed": 1},
        )
    assert not (tmp_path / "run" / "pretrain").exists()
    # The check reads what papermill injected, not every variable of the kernel: a Jupyter user's
    # own variables do not trip it.
    book.check_namespace("02", {"In": ["", "x = 1"], "x": 1, "metrics": [1, 2]})


def test_wrong_type_setting(tmp_path, capsys):
    msg = cli_error(stage("pretrain", tmp_path, "--set", "epochs=three"), capsys)
    assert "expects an integer" in msg and "'three'" in msg


def test_wrong_type_papermill_parameter():
    ns = {"In": ["", '# Parameters\npreset = "smoke"\nseed = "1"\n'], "preset": "smoke", "seed": "1"}
    with pytest.raises(book.BookError, match=r"'seed' of notebook 02_pretrain expects int.*-p \(not -r\)"):
        book.check_namespace("02", ns)
    book.check_namespace("02", dict(ns, seed=1))  # the right type passes


@pytest.mark.parametrize("value", ["-0.1", "0"])
def test_nonpositive_learning_rate(tmp_path, capsys, value):
    msg = cli_error(stage("pretrain", tmp_path, "--set", f"lr={value}"), capsys)
    assert "lr must be positive" in msg


def test_nonpositive_epochs(tmp_path, capsys):
    assert "epochs must be positive" in cli_error(stage("search", tmp_path, "--set", "epochs=0"), capsys)


def test_nonpositive_batch_size(tmp_path, capsys):
    assert "batch_size must be positive" in cli_error(stage("finetune", tmp_path, "--set", "batch_size=-8"), capsys)


def test_upper_bound_not_above_lower(tmp_path, capsys):
    msg = cli_error(stage("search", tmp_path, "--set", "upper_end_ms=1", "lower_end_ms=2"), capsys)
    assert "upper_end_ms must exceed lower_end_ms" in msg


def _search_ready(run: Path) -> None:
    (run / "pretrain").mkdir(parents=True)
    (run / "pretrain" / "last.pt").write_bytes(b"")  # checked only for existence before the table


def test_latency_table_other_space(tmp_path, capsys):
    _search_ready(tmp_path)
    flat_table(make_search_space(32, 0.5)).save(tmp_path / "profile" / "lut.json")
    msg = cli_error(stage("search", tmp_path), capsys)
    assert "another search space" in msg and "width_mult" in msg and "Delete it" in msg


def test_latency_table_other_device(tmp_path, capsys):
    _search_ready(tmp_path)
    flat_table(get_preset("smoke").experiment.space(), "cuda").save(tmp_path / "profile" / "lut.json")
    msg = cli_error(stage("search", tmp_path), capsys)
    assert "profiled on cuda but this run uses cpu" in msg


def test_checkpoint_other_space(tmp_path, capsys):
    cfg = get_preset("smoke")
    flat_table(cfg.experiment.space()).save(tmp_path / "profile" / "lut.json")
    save_json(tmp_path / "pretrain" / "config.json", config_to_dict(cfg))
    save_checkpoint(tmp_path / "pretrain" / "last.pt", {"space_hash": "another-space", "meta_graph": {}})
    msg = cli_error(stage("search", tmp_path), capsys)
    assert "trained for another search space" in msg


def test_corrupt_checkpoint(tmp_path, capsys):
    cfg = get_preset("smoke")
    save_json(tmp_path / "pretrain" / "config.json", config_to_dict(cfg))
    (tmp_path / "pretrain" / "last.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    msg = cli_error(stage("pretrain", tmp_path, "--resume"), capsys)
    assert "cannot be loaded" in msg and "never code" in msg


def test_missing_data_root(tmp_path, capsys):
    msg = cli_error(
        stage("pretrain", tmp_path, "--dataset", "cifar10", "--set", f"data_root={tmp_path / 'nowhere'}"), capsys
    )
    assert "CIFAR-10 files not found" in msg and "--download" in msg


def test_corrupt_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(bad)
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DatasetError, match=f"Cannot read the image file {re.escape(str(bad))}.*corrupt"):
        load_rgb(str(bad))


@pytest.mark.parametrize("train", [True, False])
def test_wrong_size_image(train):
    transform = build_transform(dataset_info("tinyimagenet"), train=train)
    assert transform(Image.new("RGB", (64, 64))).shape == (3, 64, 64)
    with pytest.raises(DatasetError, match="40x50 pixels, but this data set's images are RGB 64x64"):
        transform(Image.new("RGB", (50, 40)))  # PIL sizes are (width, height)


def test_wrong_channel_count():
    graph = build_meta_graph(32, 0.25).eval()
    policy = all_ones_policy(graph)[0]  # (T, K)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(2, 1, 32, 32\)"):
        graph(torch.randn(2, 1, 32, 32), policy)
    with pytest.raises(ValueError, match=r"x.unsqueeze\(0\)"):
        graph(torch.randn(3, 32, 32), policy)
    with pytest.raises(DatasetError, match="1 channel"):
        build_transform(dataset_info("cifar10"), train=False)(torch.zeros(1, 32, 32, dtype=torch.uint8))


def test_run_folder_other_config(tmp_path, capsys):
    short = ("--set", "epochs=1", "max_steps_per_epoch=1")
    assert main(stage("pretrain", tmp_path, *short)) == 0
    before = (tmp_path / "pretrain" / "last.pt").read_bytes()
    msg = cli_error(stage("pretrain", tmp_path, *short), capsys)
    assert "already holds a pretrain stage" in msg and "--resume" in msg and "--overwrite" in msg
    msg = cli_error(stage("pretrain", tmp_path, *short, "lr=0.2", "--resume"), capsys)
    assert "cannot resume pretrain" in msg and "pretrain.lr: 0.05 -> 0.2" in msg
    assert (tmp_path / "pretrain" / "last.pt").read_bytes() == before  # nothing lost


def test_full_disk(tmp_path, capsys, monkeypatch):
    """The second epoch's checkpoint cannot be written: the stage stops with a clear message and
    the first epoch's checkpoint stays, complete and loadable; ``--resume`` then finishes."""
    real_save = torch.save
    calls = []

    def full_disk_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_save)
    short = ("--set", "epochs=2", "max_steps_per_epoch=1")
    msg = cli_error(stage("pretrain", tmp_path, *short), capsys)
    assert "the disk is full" in msg and "previous file there is intact" in msg and "--resume" in msg
    state = load_checkpoint(tmp_path / "pretrain" / "last.pt")
    assert state["epoch"] == 0
    assert not list((tmp_path / "pretrain").glob("*.tmp*"))  # the partial file was removed
    with pytest.raises(RunDirError, match="disk is full"):
        calls.clear()
        save_checkpoint(tmp_path / "x.pt", {"a": 1})
        save_checkpoint(tmp_path / "x.pt", {"a": 2})
    assert load_checkpoint(tmp_path / "x.pt") == {"a": 1}
    monkeypatch.setattr(torch, "save", real_save)
    assert main(stage("pretrain", tmp_path, *short, "--resume")) == 0
    assert load_checkpoint(tmp_path / "pretrain" / "last.pt")["epoch"] == 1


def test_cuda_unavailable(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    msg = cli_error(stage("pretrain", tmp_path, "--device", "cuda"), capsys)
    assert "CUDA is not available" in msg and "--device cpu" in msg


def test_unknown_baseline(tmp_path, capsys):
    msg = cli_error(["baseline", "--model", "resnet9000", "--preset", "smoke", "--run-dir", str(tmp_path)], capsys)
    assert "unknown baseline 'resnet9000'" in msg and "mobilenetv2-1.0" in msg


def test_non_finite_loss(tmp_path, capsys):
    msg = cli_error(stage("pretrain", tmp_path, "--set", "lr=1e30", "epochs=1", "max_steps_per_epoch=2"), capsys)
    assert (
        "pretrain stopped in epoch 0" in msg
        and "Nothing of this epoch was saved" in msg
        and "lower learning rate" in msg
    )
    assert not (tmp_path / "pretrain" / "last.pt").exists()


def test_latency_table_changed(tmp_path, capsys):
    short = ("--set", "epochs=1", "max_steps_per_epoch=1")
    cfg = get_preset("smoke")
    flat_table(cfg.experiment.space()).save(tmp_path / "profile" / "lut.json")
    assert main(stage("pretrain", tmp_path, *short)) == 0
    assert main(stage("search", tmp_path, "--set", "epochs=2", "max_steps_per_epoch=1", "stop_after_epoch=0")) == 0
    table = flat_table(cfg.experiment.space())
    table.stem_ms = 0.2  # a re-profiled table: other numbers
    table.save(tmp_path / "profile" / "lut.json")
    msg = cli_error(stage("search", tmp_path, "--set", "epochs=2", "max_steps_per_epoch=1", "--resume"), capsys)
    assert "latency table" in msg and "lut.json" in msg
