"""The results registry (RUN/results.csv): exact round trip, fixed columns, one header, checks on
the values, and appends from several processes at once."""

import multiprocessing

import pytest

from instanas_core.results import (
    RESULT_COLUMNS,
    ResultRow,
    ResultsError,
    append_result,
    read_results,
    results_path,
)


def _rows():
    return [
        ResultRow(
            name="mobilenetv2-1.0",
            dataset="cifar10",
            preset="smoke",
            seed=0,
            accuracy=94.44,
            latency_mean_ms=12.345678901234,
            latency_std_ms=0.25,
            latency_kind="measured",
            params=2236682,
            flops=94_000_000,
            device="cpu",
            extra={"threads": 1, "changes": ["features.0.0: stride 2 -> 1"], "note": 'quote " and, comma'},
        ),
        ResultRow(name="instanas", dataset="cifar10", latency_mean_ms=3.0, latency_kind="estimated"),
        ResultRow(name="oneshot-frontier-3", dataset="cifar10", accuracy=0.0),
    ]


def test_round_trip(tmp_path):
    assert read_results(tmp_path) == []
    written = _rows()
    for row in written:
        append_result(tmp_path, row)
    back = read_results(tmp_path)
    assert len(back) == 3
    for w, b in zip(written, back):
        assert b.run_dir == str(tmp_path) and b.timestamp
        for name in RESULT_COLUMNS:
            if name not in ("run_dir", "timestamp"):
                assert getattr(b, name) == getattr(w, name), name
    assert back[0].error_pct == pytest.approx(5.56)
    assert back[1].accuracy is None and back[1].seed is None and back[1].extra == {}


def test_header_once_and_fixed_order(tmp_path):
    for row in _rows():
        append_result(tmp_path, row)
    lines = results_path(tmp_path).read_text().splitlines()
    assert lines[0] == ",".join(RESULT_COLUMNS)
    assert sum(line == lines[0] for line in lines) == 1
    assert RESULT_COLUMNS[:3] == ("name", "dataset", "preset")


def test_bad_rows_and_files_are_refused(tmp_path):
    with pytest.raises(ResultsError, match="latency_kind"):
        ResultRow(name="x", dataset="cifar10", latency_mean_ms=1.0, latency_kind="guessed")
    with pytest.raises(ResultsError, match="latency_kind"):
        ResultRow(name="x", dataset="cifar10", latency_mean_ms=1.0)
    with pytest.raises(ResultsError, match="percent"):
        ResultRow(name="x", dataset="cifar10", accuracy=120.0)
    results_path(tmp_path).write_text("model,acc\nfoo,1\n")
    with pytest.raises(ResultsError, match="column"):
        append_result(tmp_path, _rows()[1])
    with pytest.raises(ResultsError, match="columns"):
        read_results(tmp_path)


def _append_many(run_dir: str, worker: int, n: int) -> None:
    for i in range(n):
        append_result(run_dir, ResultRow(name=f"w{worker}", dataset="cifar10", seed=i, extra={"pad": "x" * 500}))


def test_appends_from_several_processes(tmp_path):
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = read_results(tmp_path)
    assert len(rows) == 100
    assert sorted((r.name, r.seed) for r in rows) == sorted((f"w{w}", i) for w in range(4) for i in range(25))
