"""Execution options of issue 7: the training stages' ``execution`` (subset or masked meta-graph
steps), the device-dependent channels-last default, bf16 autocast through both execution paths,
and the benchmark options that choose them (precision, the tradeoff baseline's budget)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from instanas_core import book
from instanas_core.bench import BenchConfig, tradeoff_baseline_budget
from instanas_core.config import ConfigError, ExperimentConfig, apply_overrides, get_preset
from instanas_core.meta_graph import MetaGraph, build_meta_graph
from instanas_core.policy import sample_random_policy
from instanas_core.rundir import RunDirError
from instanas_core.stages import run_finetune, run_pretrain, run_search
from instanas_core.train.run import _check_same

from test_stages import write_mac_table


@pytest.mark.parametrize(
    "channels_last, device, expected",
    [(None, "cpu", True), (None, "cuda", False), (None, "cuda:1", False), (True, "cuda", True), (False, "cpu", False)],
)
def test_channels_last_default_follows_the_device(channels_last, device, expected):
    assert ExperimentConfig(channels_last=channels_last, device=device).use_channels_last is expected


def test_unknown_execution_is_refused():
    with pytest.raises((ConfigError, ValueError), match="execution must be 'subset' or 'masked'"):
        ExperimentConfig(execution="fast")


def test_resuming_with_another_layout_is_allowed_but_not_another_execution():
    saved = get_preset("smoke")
    _check_same(saved, apply_overrides(saved, ["experiment.channels_last=false"]), ("experiment",), "pretrain")
    with pytest.raises(RunDirError, match=r"experiment\.execution: 'subset' -> 'masked'"):
        _check_same(saved, apply_overrides(saved, ["experiment.execution=masked"]), ("experiment",), "pretrain")


@pytest.mark.parametrize("execution", ["subset", "masked"])
def test_stages_train_with_the_configured_execution(execution, tmp_path, monkeypatch):
    """Every training step of pretrain, search (both epoch kinds) and finetune runs the meta-graph
    the way ``experiment.execution`` says; evaluation keeps the default subset path."""
    seen = []
    forward = MetaGraph.forward

    def recording(self, x, policy, execution=None):
        if execution is not None:  # a training step's call; validation passes none
            seen.append(execution)
        return forward(self, x, policy, execution or "subset")

    monkeypatch.setattr(MetaGraph, "forward", recording)
    cfg = apply_overrides(
        get_preset("smoke"),
        [
            f"experiment.execution={execution}",
            "pretrain.epochs=1",
            "search.epochs=1",
            "finetune.epochs=1",
            "pretrain.max_steps_per_epoch=2",
            "search.max_steps_per_epoch=2",
            "finetune.max_steps_per_epoch=2",
        ],
    )
    write_mac_table(cfg, tmp_path)
    run_pretrain(cfg, tmp_path, progress=False)
    pretrain_calls = len(seen)
    run_search(cfg, tmp_path, progress=False)
    search_calls = len(seen) - pretrain_calls
    run_finetune(cfg, tmp_path, progress=False)
    assert (pretrain_calls, search_calls, len(seen) - pretrain_calls - search_calls) == (2, 4, 2)
    assert set(seen) == {execution}


def test_bf16_autocast_keeps_subset_and_masked_in_step():
    """Under bf16 autocast (the benchmarks' --precision bf16) both paths run, train and agree."""
    torch.manual_seed(0)
    graph = build_meta_graph(32, 0.25).eval()
    x = torch.randn(6, 3, 32, 32)
    policy = sample_random_policy(graph, 6, torch.Generator().manual_seed(0), density=(0.05, 0.6))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        sub, mas = graph(x, policy, "subset"), graph(x, policy, "masked")  # (6, 10) each
    assert sub.dtype == torch.bfloat16
    assert torch.allclose(sub.float(), mas.float(), rtol=0, atol=5e-2 * float(mas.float().abs().max()) + 1e-6)
    graph.train()
    for execution in ("subset", "masked"):
        graph.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(graph(x, policy, execution), torch.zeros(6, dtype=torch.long))
        loss.backward()
        grads = [p.grad for p in graph.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("field, value", [("precision", "fp16"), ("baseline_budget", "half")])
def test_bench_config_refuses_unknown_choices(field, value):
    with pytest.raises(ValueError, match=field):
        BenchConfig(**{field: value})


@pytest.mark.parametrize("preset", ["smoke", "cpu", "cifar10-cpu"])
def test_tradeoff_baseline_gets_instanas_epochs_of_all_stages(preset):
    cfg = book.book_preset(preset)
    total = cfg.pretrain.epochs + cfg.search.epochs + cfg.finetune.epochs
    same = tradeoff_baseline_budget(cfg, "same")
    assert total > cfg.baseline.epochs
    assert same["overrides"] == [f"epochs={total}"] and same["folder"] == f"mobilenetv2-1.0-{total}ep"
    assert sum(same["instanas_epochs"].values()) == total
    assert tradeoff_baseline_budget(cfg, "preset")["overrides"] == []
    equal = dataclasses.replace(cfg, baseline=dataclasses.replace(cfg.baseline, epochs=total))
    assert tradeoff_baseline_budget(equal, "same")["folder"] is None  # the book's baseline already has that budget
