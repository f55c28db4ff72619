"""The paper's numbers as data (Tables 1-3, the text's claims): complete, exact where checked,
and consistent with each other (the text's latency reductions follow from the tables)."""

import pytest

from instanas_core.baselines import BASELINE_NAMES
from instanas_core.paper_numbers import (
    PAPER_LATENCY_UNIT,
    find_paper_row,
    latency_reduction_pct,
    load_paper_claims,
    load_paper_numbers,
)


def test_every_table_row_is_there():
    rows = load_paper_numbers()
    counts = {src: sum(r.source == src for r in rows) for src in ("Table 1", "Table 2", "Table 3")}
    assert counts == {"Table 1": 17, "Table 2": 11, "Table 3": 6}
    assert len(rows) == 34
    assert {r.dataset for r in rows} == {"cifar10", "cifar100", "tinyimagenet"}
    assert len(load_paper_numbers("cifar100")) == 11
    assert all(r.group in ("human-designed", "NAS", "InstaNAS") for r in rows)
    assert sum(r.group == "InstaNAS" for r in rows) == 13


def test_exact_values():
    c = find_paper_row("cifar10", "InstaNAS-C10-C")
    assert (c.error_pct, c.latency_mean, c.latency_std) == (5.20, 0.047, 0.002)
    assert find_paper_row("cifar10", "DARTS").error_pct == 2.83
    m = find_paper_row("cifar100", "mobilenetv2-0.4")  # by our baseline name
    assert (m.error_pct, m.latency_mean, m.latency_std) == (30.72, 0.049, 0.068)
    v1 = find_paper_row("tinyimagenet", "MobileNetV1")
    assert v1.error_pct == 56.4 and v1.latency_mean is None and v1.latency_std is None
    assert find_paper_row("tinyimagenet", "InstaNAS-Tiny-A").accuracy_pct == pytest.approx(58.6)
    assert "unstated" in PAPER_LATENCY_UNIT
    with pytest.raises(KeyError):
        find_paper_row("cifar10", "InstaNAS-Tiny-A")


def test_our_names_are_buildable_baselines():
    named = [r for r in load_paper_numbers() if r.our_name]
    assert named and all(r.our_name in BASELINE_NAMES for r in named)
    assert {r.our_name for r in load_paper_numbers("cifar10")} >= {"resnet50", "resnet101", "mobilenetv2-1.0"}


def test_claims_carry_their_sentence_and_value():
    claims = load_paper_claims()
    for c in claims:
        if c.value is not None:
            assert f"{c.value:,g}" in c.text, (c.subject, c.value)
    values = {(c.dataset, c.metric, c.value) for c in claims}
    for expected in [
        ("cifar10", "latency_reduction_pct", 48.9),
        ("cifar10", "latency_reduction_pct", 82.6),
        ("cifar10", "accuracy_gain_pct", 1.26),
        ("cifar100", "latency_reduction_pct", 40.2),
        ("cifar100", "latency_reduction_pct", 36.1),
        ("tinyimagenet", "latency_reduction_pct", 35.2),
        ("imagenet", "latency_reduction_pct", 14.5),
        ("imagenet", "latency_reduction_pct", 26.5),
        ("imagenet", "accuracy_drop_pct", 0.7),
        ("", "latency_reduction_pct", 48.8),
    ]:
        assert expected in values, expected
    assert sorted(c.value for c in claims if c.metric == "correlation") == [0.97, 0.97, 0.98]


def test_claimed_reductions_follow_from_the_tables():
    checked = 0
    for c in load_paper_claims():
        if c.metric != "latency_reduction_pct" or not c.dataset:
            continue
        try:
            derived = latency_reduction_pct(c.dataset, c.subject, c.reference)
        except KeyError:  # ImageNet (Figure 5 only) and ShuffleNet v2 2.0x (not in Table 2)
            continue
        assert derived == pytest.approx(c.value, abs=0.05), (c.subject, c.reference)
        checked += 1
    assert checked >= 6
    reference, best = find_paper_row("cifar10", "MobileNet v2 1.0×"), find_paper_row("cifar10", "InstaNAS-C10-A")
    assert reference.error_pct - best.error_pct == pytest.approx(1.26)
