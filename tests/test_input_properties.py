"""Property-based tests (hypothesis) of what a user or a damaged file can hand the code: ``--set``
overrides, ``lut.json``, ``config.json`` and ``metrics.csv`` over arbitrary strings and numbers
(issue 13).

The contract: every outcome is either a result or one paragraph -- a ValueError (ConfigError,
LatencyTableError, RunDirError) whose message is one line and, for a file, names the file -- never
another exception type, which the command line would print as a traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from instanas_core.config import (
    STAGES,
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    get_preset,
)
from instanas_core.latency import LatencyTable, LatencyTableError
from instanas_core.rundir import MetricsLog, RunDirError, load_json
from instanas_core.search_space import make_search_space
from instanas_core.stages.pretrain import PRETRAIN_COLUMNS

SMOKE = get_preset("smoke")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Every setting, qualified and not, plus what a user might mistype.
_SECTIONS = ("experiment",) + STAGES
_KEYS = [f"{sec}.{f.name}" for sec in _SECTIONS for f in dataclasses.fields(getattr(SMOKE, sec))]
_KEYS += sorted({k.split(".", 1)[1] for k in _KEYS})
keys = st.one_of(st.sampled_from(_KEYS), st.text(max_size=20))
# Value texts: numbers in every spelling (huge, tiny, negative, non-finite), words, and any text.
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.1, 4.0, 4.0001, 2**32 - 1, 2**32]),
)
values = st.one_of(
    numbers.map(str),
    st.sampled_from(["true", "false", "none", "cpu", "cuda", "cuda:1", "cuda:x", "digits", "cifar100", "C", "epoch:3"]),
    st.text(max_size=20),
)
items = st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, values), st.text(max_size=30))

# Any JSON value (numbers include NaN and the infinities, which json reads and writes).
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def one_paragraph(exc: BaseException, path: Path | None = None) -> None:
    """The refusal is one line and, for a file, names it."""
    text = str(exc)
    assert text and "\n" not in text, text
    if path is not None:
        assert str(path) in text, text


# ---- --set ---------------------------------------------------------------------------------------
@FAST
@given(overrides=st.lists(items, max_size=3), section=st.sampled_from((None,) + STAGES))
def test_overrides_give_a_config_or_one_paragraph(overrides, section):
    try:
        cfg = apply_overrides(SMOKE, overrides, section=section)
    except ConfigError as exc:
        one_paragraph(exc)
        return
    assert isinstance(cfg, Config)
    for sec in _SECTIONS:  # what was accepted is finite and in range where the code relies on it
        for f in dataclasses.fields(getattr(cfg, sec)):
            v = getattr(getattr(cfg, sec), f.name)
            if isinstance(v, float):
                assert math.isfinite(v), (sec, f.name, v)
    assert 0.1 <= cfg.experiment.width_mult <= 4.0 and 0 <= cfg.experiment.seed < 2**32
    cfg.experiment.space()  # the accepted width and data set build a search space


# ---- lut.json ------------------------------------------------------------------------------------
_TABLE: str | None = None  # a valid table as JSON text, made once


def _table_dict() -> dict:
    """A fresh copy of a valid table's dict (32 px, width 0.25)."""
    global _TABLE
    if _TABLE is None:
        space = make_search_space(32, 0.25)
        ms = np.full((space.num_cells, space.num_modules), 0.1)
        table = LatencyTable(space, ms, ms, ms * 0, 0.1, 0.1, 0.1, ms, ms, {"device_type": "cpu"})
        _TABLE = json.dumps(table.to_dict())
    return json.loads(_TABLE)


def _set_somewhere(d: dict, data, value) -> None:
    """Replace one entry of ``d`` -- top-level, a (cell, module) entry or a space field -- by ``value``."""
    key = data.draw(st.sampled_from(sorted(d)))
    if isinstance(d[key], list) and d[key] and isinstance(d[key][0], list):
        i = data.draw(st.integers(0, len(d[key]) - 1))
        j = data.draw(st.integers(0, len(d[key][i]) - 1))
        d[key][i][j] = value
    elif isinstance(d[key], dict) and d[key] and data.draw(st.booleans()):
        d[key][data.draw(st.sampled_from(sorted(d[key])))] = value
    else:
        d[key] = value


def _load_table(path: Path) -> None:
    try:
        table = LatencyTable.load(path)
    except LatencyTableError as exc:
        one_paragraph(exc, path)
        return
    for grid in (table.cell_module_ms, table.cell_module_median_ms, table.cell_module_iqr_ms):
        assert grid.shape == (table.space.num_cells, table.space.num_modules)
        assert (grid >= 0).all() and np.isfinite(grid).all()
    assert all(math.isfinite(v) and v >= 0 for v in (table.stem_ms, table.head_ms, table.controller_ms))


@FAST
@given(text=st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
def test_any_lut_text_loads_or_is_refused(tmp_path, text):
    path = tmp_path / "lut.json"
    path.write_text(text, encoding="utf-8")
    _load_table(path)


@FAST
@given(data=st.data(), value=json_values)
def test_any_lut_entry_loads_or_is_refused(tmp_path, data, value):
    d = _table_dict()
    _set_somewhere(d, data, value)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    _load_table(path)


# ---- config.json ---------------------------------------------------------------------------------
def _load_config(path: Path) -> None:
    """As ``instanas <stage>`` reads a saved configuration: load_json, then config_from_dict."""
    try:
        cfg = config_from_dict(load_json(path), source=path)
    except (ConfigError, RunDirError) as exc:
        one_paragraph(exc, path)
        return
    assert isinstance(cfg, Config)


@FAST
@given(text=st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
def test_any_config_text_loads_or_is_refused(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    _load_config(path)


@FAST
@given(data=st.data(), value=json_values)
def test_any_config_setting_loads_or_is_refused(tmp_path, data, value):
    d = config_to_dict(SMOKE)
    section = data.draw(st.sampled_from(sorted(d)))
    if isinstance(d[section], dict) and data.draw(st.booleans()):
        d[section][data.draw(st.sampled_from(sorted(d[section])))] = value
    else:
        d[section] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    _load_config(path)


# ---- metrics.csv ---------------------------------------------------------------------------------
def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


cells = st.one_of(numbers.map(str), st.just(""), st.text(max_size=8))
metrics_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.lists(cells, min_size=len(PRETRAIN_COLUMNS), max_size=len(PRETRAIN_COLUMNS)), max_size=4).map(
        lambda rows: _csv([list(PRETRAIN_COLUMNS), *rows])
    ),
    st.lists(st.lists(cells, max_size=len(PRETRAIN_COLUMNS) + 1), max_size=4).map(
        lambda rows: _csv([list(PRETRAIN_COLUMNS), *rows])
    ),
)


@FAST
@given(text=metrics_texts, keep=st.integers(0, 5), cut=st.integers(0, 3))
# A whole last row without its line break, of an epoch the resumed stage redoes: dropped, not kept.
@example(text=",".join(PRETRAIN_COLUMNS) + "\r0,,,,,,,0!", keep=0, cut=1)
def test_any_metrics_file_resumes_or_is_refused(tmp_path, text, keep, cut):
    path = tmp_path / "metrics.csv"
    text = text[: len(text) - cut] if cut else text  # a kill can cut the last line short
    path.write_text(text, encoding="utf-8", newline="")
    try:
        log = MetricsLog(path, PRETRAIN_COLUMNS)
        log.truncate(keep)
    except RunDirError as exc:
        one_paragraph(exc, path)
        return
    rows = log.rows()
    for row in rows:  # what a resumed stage reads back as numbers (its summary)
        assert int(row["epoch"]) < keep
        for column in PRETRAIN_COLUMNS:
            float(row[column] or "nan")


@pytest.mark.parametrize("text", ["\ufeffepoch", "a\x00b\n", "\r", '"unclosed\n'])
def test_metrics_file_oddities(tmp_path, text):
    path = tmp_path / "metrics.csv"
    path.write_text(text, encoding="utf-8", newline="")
    with pytest.raises(RunDirError) as info:
        MetricsLog(path, PRETRAIN_COLUMNS).truncate(1)
    one_paragraph(info.value, path)
