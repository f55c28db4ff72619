"""Bad values in settings and in the files of a run folder (issue 13, items 4-7): each is refused
before work starts with one paragraph that names the file or setting, what was wrong and the fix.

One test per row of ``docs/bad-inputs.md`` (the meta-test in ``tests/test_bad_inputs.py`` keeps
the table and the tests of every ``tests/test_bad_inputs*.py`` in step).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from instanas_core.cli import main
from instanas_core.config import ConfigError, apply_overrides, config_from_dict, config_to_dict, get_preset
from instanas_core.latency import LatencyTable, LatencyTableError
from instanas_core.rundir import RunDirError, load_checkpoint, load_json, save_json
from test_bad_inputs import cli_error, stage  # the one-paragraph CLI error helper


SHORT = ("--set", "epochs=2", "max_steps_per_epoch=1", "stop_after_epoch=0")


def _smoke_table() -> LatencyTable:
    space = get_preset("smoke").experiment.space()
    ms = np.full((space.num_cells, space.num_modules), 0.1)
    return LatencyTable(space, ms, ms, np.zeros_like(ms), 0.1, 0.1, 0.1, ms, ms, {"device_type": "cpu"})


def _search_with_table(run: Path, edit) -> None:
    """A run folder whose search would start: a pre-trained checkpoint (checked only for existence
    before the table) and ``RUN/profile/lut.json`` changed by ``edit(dict)``."""
    (run / "pretrain").mkdir(parents=True)
    (run / "pretrain" / "last.pt").write_bytes(b"")
    d = _smoke_table().to_dict()
    edit(d)
    (run / "profile").mkdir()
    (run / "profile" / "lut.json").write_text(json.dumps(d))


def _refused_table(run: Path, capsys) -> str:
    msg = cli_error(stage("search", run), capsys)
    assert str(run / "profile" / "lut.json") in msg and "delete it" in msg and "instanas profile" in msg
    assert not (run / "search" / "last.pt").exists()
    return msg


# ---- item 4: lut.json values ---------------------------------------------------------------------
def test_latency_table_negative(tmp_path, capsys):
    _search_with_table(tmp_path, lambda d: d["cell_module_ms"][3].__setitem__(2, -0.5))
    msg = _refused_table(tmp_path, capsys)
    assert "cell_module_ms[3][2]" in msg and "-0.5" in msg and ">= 0" in msg
    with pytest.raises(LatencyTableError, match=r"head_ms is -1"):
        LatencyTable.from_dict(dict(_smoke_table().to_dict(), head_ms=-1))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_latency_table_non_finite(tmp_path, capsys, value):
    _search_with_table(tmp_path, lambda d: d["cell_module_median_ms"][0].__setitem__(4, value))
    msg = _refused_table(tmp_path, capsys)
    assert "cell_module_median_ms[0][4]" in msg and "finite" in msg
    assert "reward" not in msg and "bound" not in msg  # no longer blamed on the reward bounds


def test_latency_table_not_a_number(tmp_path, capsys):
    _search_with_table(tmp_path, lambda d: d["cell_module_ms"][1].__setitem__(0, "fast"))
    msg = _refused_table(tmp_path, capsys)
    assert "cell_module_ms[1][0]" in msg and "'fast'" in msg and "could not convert" not in msg
    with pytest.raises(LatencyTableError, match="stem_ms is true"):
        LatencyTable.from_dict(dict(_smoke_table().to_dict(), stem_ms=True))


def test_latency_table_wrong_shape(tmp_path, capsys):
    _search_with_table(tmp_path, lambda d: d["cell_module_iqr_ms"][5].pop())
    msg = _refused_table(tmp_path, capsys)
    assert "row cell_module_iqr_ms[5] has 4 entries" in msg and "17 cells x 5 modules" in msg
    d = _smoke_table().to_dict()
    d["space"]["width_mult"] = 1e308 * 10  # inf: JSON's Infinity, which json.loads accepts
    with pytest.raises(LatencyTableError, match="space"):
        LatencyTable.from_dict(d)
    d = _smoke_table().to_dict()
    d["modules"] = ["basic"]
    with pytest.raises(LatencyTableError, match="modules"):
        LatencyTable.from_dict(d)


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", '"lut"', "\udcff"])
def test_latency_table_not_an_object(tmp_path, capsys, text):
    _search_with_table(tmp_path, lambda d: None)
    lut = tmp_path / "profile" / "lut.json"
    lut.write_bytes(text.encode("utf-8", "surrogateescape"))
    msg = _refused_table(tmp_path, capsys)
    assert "not valid JSON" in msg or "not a JSON object" in msg or "not a text file" in msg


# ---- item 5: tracebacks --------------------------------------------------------------------------
def test_infinite_width(tmp_path, capsys):
    msg = cli_error(stage("pretrain", tmp_path, "--set", "width_mult=inf"), capsys)
    assert "width_mult" in msg and "from 0.1 to 4.0" in msg and "got inf" in msg
    assert not (tmp_path / "pretrain").exists()


@pytest.mark.parametrize("content", [[1, 2], "smoke", None, {"experiment": [1]}, {"pretrain": {"lr": "fast"}}])
def test_config_not_an_object(tmp_path, capsys, content):
    path = tmp_path / "my-config.json"
    path.write_text(json.dumps(content))
    msg = cli_error(["pretrain", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"], capsys)
    assert str(path) in msg and "Restore the file" in msg
    if isinstance(content, dict):
        assert repr(next(iter(content))) in msg  # the section at fault


# ---- item 6: messages that name the file or the setting, and the fix ------------------------------
def test_corrupt_saved_config(tmp_path, capsys):
    assert main(stage("pretrain", tmp_path, *SHORT)) == 0
    saved = tmp_path / "pretrain" / "config.json"
    before = (tmp_path / "pretrain" / "last.pt").read_bytes()
    saved.write_text('{"experiment": {"dataset": "digits",')  # cut short
    msg = cli_error(stage("pretrain", tmp_path, *SHORT, "--resume"), capsys)
    assert str(saved) in msg and "not valid JSON" in msg and "restore it" in msg and "--overwrite" in msg
    # A later stage started without --preset reads the saved configuration too.
    saved.write_text(json.dumps([config_to_dict(get_preset("smoke"))]))
    msg = cli_error(["search", "--run-dir", str(tmp_path), "--quiet"], capsys)
    assert str(saved) in msg and "is a list, not a JSON object" in msg and "--preset" in msg
    assert (tmp_path / "pretrain" / "last.pt").read_bytes() == before
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(RunDirError, match=f"{empty}.*not valid JSON"):
        load_json(empty)


def test_metrics_row_not_a_number(tmp_path, capsys):
    assert main(stage("pretrain", tmp_path, *SHORT)) == 0
    metrics = tmp_path / "pretrain" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("train_loss")] = "abc"
    metrics.write_text("\r\n".join([lines[0], ",".join(row)]) + "\r\n")
    before = (tmp_path / "pretrain" / "last.pt").read_bytes()
    msg = cli_error(stage("pretrain", tmp_path, *SHORT, "--resume"), capsys)
    assert str(metrics) in msg and "line 2" in msg and "'train_loss'" in msg and "'abc'" in msg
    assert "--overwrite" in msg and "restore the file" in msg
    assert (tmp_path / "pretrain" / "last.pt").read_bytes() == before  # refused before any work


@pytest.mark.parametrize("value", ["1e23", "99999999999999999999999", "-1"])
def test_seed_out_of_range(tmp_path, capsys, value):
    msg = cli_error(stage("pretrain", tmp_path, "--set", f"seed={value}"), capsys)
    assert "seed" in msg and "from 0 to 4294967295" in msg
    with pytest.raises(ConfigError, match="data_seed must be an integer from 0 to 4294967295"):
        config_from_dict({"experiment": {"data_seed": 1e23}})


@pytest.mark.parametrize("value", ["100", "1e-9", "0.05", "nan"])
def test_width_out_of_range(tmp_path, capsys, value):
    msg = cli_error(stage("pretrain", tmp_path, "--set", f"width_mult={value}"), capsys)
    assert "width_mult must be a positive number from 0.1 to 4.0" in msg
    assert "allocate" not in msg
    assert apply_overrides(get_preset("smoke"), ["width_mult=4.0"]).experiment.width_mult == 4.0


@pytest.mark.parametrize("value", ["cuda:abc", "gpu", "cuda:", "cpu:0", "CUDA"])
def test_malformed_device(tmp_path, capsys, value):
    msg = cli_error(stage("pretrain", tmp_path, "--set", f"device={value}"), capsys)
    assert f"got {value!r}" in msg and "'cpu', 'cuda' or 'cuda:N'" in msg
    for good in ("cpu", "cuda", "cuda:0", "cuda:7"):
        assert apply_overrides(get_preset("smoke"), [f"device={good}"]).experiment.device == good


@pytest.mark.parametrize(
    "override, field",
    [
        ("lr=inf", "PretrainConfig.lr"),
        ("pretrain.momentum=nan", "PretrainConfig.momentum"),
        ("search.reward_correct=inf", "SearchConfig.reward_correct"),
        ("search.entropy_bonus=-inf", "SearchConfig.entropy_bonus"),
        ("finetune.momentum=inf", "FinetuneConfig.momentum"),
        ("comparator.blockdrop_penalty=1e999", "ComparatorConfig.blockdrop_penalty"),
        ("profile.min_run_time=inf", "min_run_time"),
    ],
)
def test_non_finite_setting(tmp_path, capsys, override, field):
    msg = cli_error(stage("pretrain", tmp_path, "--set", override), capsys)
    assert field in msg and "finite" in msg
    assert not (tmp_path / "pretrain").exists()


# ---- item 7: duplicates, class count, foreign pickles -------------------------------------------
@pytest.mark.parametrize(
    "overrides, named",
    [
        (["epochs=2", "epochs=3"], "pretrain.epochs"),
        (["seed=1", "experiment.seed=2"], "experiment.seed"),
        (["pretrain.lr=0.1", "lr=0.2"], "pretrain.lr"),
    ],
)
def test_duplicate_setting(tmp_path, capsys, overrides, named):
    msg = cli_error(stage("pretrain", tmp_path, "--set", *overrides), capsys)
    assert f"{named} is set twice" in msg and overrides[0] in msg and overrides[1] in msg and "once" in msg
    msg = cli_error(stage("pretrain", tmp_path, "--device", "cpu", "--set", "device=cpu"), capsys)
    assert "experiment.device is set twice (--device cpu and --set device=cpu)" in msg
    # The same setting of two different sections is two settings.
    cfg = apply_overrides(get_preset("smoke"), ["pretrain.epochs=2", "search.epochs=3"], section="pretrain")
    assert (cfg.pretrain.epochs, cfg.search.epochs) == (2, 3)


def test_class_count_mismatch(tmp_path, capsys):
    msg = cli_error(stage("search", tmp_path, "--set", "profile.num_classes=7"), capsys)
    assert "profile.num_classes=7" in msg and "digits has 10 classes" in msg and "Leave profile.num_classes out" in msg
    msg = cli_error(stage("search", tmp_path, "--set", "profile.resolution=64"), capsys)
    assert "profile.resolution=64" in msg and "32 px" in msg
    # The data set's own count (here given with the data set that has it) is accepted.
    cfg = apply_overrides(get_preset("smoke"), ["dataset=cifar100", "profile.num_classes=100"], section="search")
    assert cfg.experiment.info.num_classes == 100


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: a stand-in for a hostile checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_foreign_pickle_checkpoint(tmp_path, capsys):
    marker = tmp_path / "code-was-run"
    save_json(tmp_path / "pretrain" / "config.json", config_to_dict(get_preset("smoke")))
    ckpt = tmp_path / "pretrain" / "last.pt"
    torch.save({"epoch": 0, "payload": _Payload(marker)}, ckpt)
    msg = cli_error(stage("pretrain", tmp_path, "--resume"), capsys)
    assert str(ckpt) in msg and "not a checkpoint this project wrote" in msg and "would run that code" in msg
    assert "weights_only" not in msg and "trusted source" not in msg
    assert not marker.exists()
    with pytest.raises(RunDirError, match="not a checkpoint this project wrote") as info:
        load_checkpoint(ckpt)
    assert "weights_only" not in str(info.value)
