"""Bad values of the named science options (issue 15) and of the budgeted-batch comparison
(issue 20): each is refused with one paragraph that names the setting and its valid range, the
stage ones before any work starts (no stage folder is made).

One test per row of ``docs/bad-inputs.md`` (the meta-test in ``tests/test_bad_inputs.py`` keeps
the table and the tests of every ``tests/test_bad_inputs*.py`` in step).
"""

from __future__ import annotations

import pytest

from instanas_core.stages.cascade import check_budgets
from test_bad_inputs import cli_error, stage  # the one-paragraph CLI error helper


@pytest.mark.parametrize(
    "command, setting, value",
    [
        ("search", "search.baseline", "greedy"),
        ("search", "search.reward", "quadratic"),
        ("search", "search.bound_schedule", "batch"),
        ("search", "search.controller_input", "noise"),
        ("pretrain", "pretrain.density", "uniform"),
    ],
)
def test_unknown_option_value(tmp_path, capsys, command, setting, value):
    msg = cli_error(stage(command, tmp_path / "run", "--set", f"{setting}={value}"), capsys)
    assert f"unknown {setting} {value!r}" in msg and "valid values:" in msg and "the paper's" in msg
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("k", [0, 1])
def test_loo_needs_two_samples(tmp_path, capsys, k):
    msg = cli_error(stage("search", tmp_path / "run", "--set", "search.baseline=loo", f"search.samples={k}"), capsys)
    assert "search.samples must be at least 2" in msg and "valid: 2 to 64" in msg
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "setting, words",
    [
        ("search.bound_end_share=0", "search.bound_end_share must lie in (0, 1]"),
        ("search.bound_end_share=1.5", "search.bound_end_share must lie in (0, 1]"),
        ("search.sharpen_share=1", "search.sharpen_share must lie in [0, 1)"),
        ("search.upper_start_ms=1 search.upper_end_ms=2", "upper_start_ms must be >= upper_end_ms"),
    ],
)
def test_schedule_without_window(tmp_path, capsys, setting, words):
    msg = cli_error(stage("search", tmp_path / "run", "--set", *setting.split()), capsys)
    assert words in msg


def test_cascade_stages_below_two(tmp_path, capsys):
    argv = ["bench", "instance-awareness", "--quick", "--out", str(tmp_path / "b"), "--cascade-stages", "1", "2"]
    msg = cli_error(argv, capsys)
    assert "--cascade-stages must list stage counts from 2 to 4" in msg and "[1, 2]" in msg
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="at least 2 stages"):
        check_budgets([3.0], 1.0, 5.0, stages=1)


@pytest.mark.parametrize("budgets", [[0.5], [3.0, 9.0]])
def test_budget_outside_children(budgets):
    with pytest.raises(ValueError) as err:
        check_budgets(budgets, 1.0, 5.0, stages=2)
    msg = str(err.value)
    assert "outside the range" in msg and "cheapest child's 1 ms" in msg and "largest child's 5 ms" in msg
    check_budgets([1.0, 3.0, 5.0], 1.0, 5.0, stages=2)  # the ends are valid
