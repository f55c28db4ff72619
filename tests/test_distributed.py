"""Scale-out and crash safety of the training stages (issue 8): two CPU processes on gloo train the
meta-graph and the controller like one process would, ``torchrun`` runs a stage end to end, a
non-finite loss or reward stops a stage before it checkpoints, and checkpoints refuse a changed
latency table or another search space."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from instanas_core.cli import main
from instanas_core.config import apply_overrides, get_preset
from instanas_core.distributed import DistContext, contiguous_shard, distributed_session, per_rank_batch, rank_seed
from instanas_core.latency import LatencyTable
from instanas_core.policy import drop_path_policy, greedy_policy, sample_policy
from instanas_core.reward import combined_reward, reference_latencies, resolve_bounds
from instanas_core.rundir import RunDirError, epoch_seed, load_checkpoint, save_checkpoint
from instanas_core.stages import (
    controller_loss,
    controller_step,
    meta_graph_step,
    pretrain_step,
    run_finetune,
    run_pretrain,
    run_search,
)
from instanas_core.train import (
    NonFiniteError,
    build_models,
    build_split,
    make_loader,
    make_optimizer,
    make_schedule,
    run_pass,
)

WORLD = 2
STEPS = 2  # training steps per epoch kind in the two-process comparison
DROP_RATE = 0.5
# Smoke scale without augmentation: the data of a step is then a function of the sampler alone.
EXACT = ["experiment.augment=false", "experiment.threads=1"]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def simple_table(space) -> LatencyTable:
    """A deterministic latency table: each module kind has a fixed cost (ms) in every cell."""
    t, k = space.num_cells, space.num_modules
    ms = np.tile(np.array([0.01, 0.02, 0.03, 0.025, 0.04])[:k], (t, 1))  # (T, K)
    zeros = np.zeros((t, k))
    return LatencyTable(space, ms, ms, zeros, 0.01, 0.01, 0.01, zeros, zeros, {"device_type": "cpu"})


def smoke_config(*overrides: str):
    return apply_overrides(get_preset("smoke"), [*EXACT, *overrides])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the pieces ----------------------------------------------------------------------------------
def test_shards_batches_and_seeds():
    assert [list(contiguous_shard(7, r, 3)) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert per_rank_batch(32, 2) == 16
    with pytest.raises(ValueError, match="divisible by 3"):
        per_rank_batch(32, 3)
    assert rank_seed(123, 0) == 123 and len({rank_seed(123, r) for r in range(4)}) == 4
    # The per-rank training loaders split each global batch's samples between ranks.
    cfg = smoke_config()
    data = build_split(cfg.experiment, "train", augment=False, return_index=True)
    shards = [
        make_loader(data, 32, True, 5, cfg.experiment, "cpu", train=True, dist=DistContext(rank=r, world_size=WORLD))
        for r in range(WORLD)
    ]
    single = make_loader(data, 32, True, 5, cfg.experiment, "cpu", train=True)
    assert [len(s) for s in shards] == [len(single)] * WORLD
    seen = [torch.cat([b[2] for b in s]) for s in shards]
    assert all(len(x) == len(single) * 16 for x in seen)
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


# ---- two processes on gloo against one process ---------------------------------------------------
def _setup(cfg):
    exp = cfg.experiment
    graph, controller = build_models(exp, torch.device("cpu"), seed=exp.seed)
    train = build_split(exp, "train", augment=False)
    table = simple_table(graph.space)
    bounds = resolve_bounds(reference_latencies(table)).at(0, cfg.search.epochs)
    return graph, controller, train, table, bounds


def _optimizers(cfg, graph, controller):
    pc, sc = cfg.pretrain, cfg.search
    p_opt = make_optimizer(graph.parameters(), "sgd", pc.lr, pc.weight_decay, pc.momentum, pc.nesterov)
    p_sched = make_schedule(p_opt, "constant", 1, STEPS)
    c_opt = torch.optim.Adam(controller.parameters(), lr=sc.controller_lr)
    g_opt = make_optimizer(
        graph.parameters(), "sgd", sc.graph_lr, sc.graph_weight_decay, sc.graph_momentum, nesterov=False
    )
    return p_opt, p_sched, c_opt, g_opt


def _seeds(cfg) -> dict[str, int]:
    seed = cfg.experiment.seed
    return {
        "pretrain": epoch_seed(seed, "pretrain", 0),
        "controller": epoch_seed(seed, "search", 0, 0),
        "graph": epoch_seed(seed, "search", 0, 1),
    }


def _snapshot(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _worker(rank: int, port: int, out: str) -> None:
    """One rank: a drop-path pre-training epoch, a controller epoch and a meta-graph epoch of
    ``STEPS`` steps each (DDP, as the stages run them), then one step with fixed policies that
    leave a module unused on every rank and another unused on rank 1 only."""
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
        }
    )
    torch.set_num_threads(1)
    cfg = smoke_config()
    exp, sc = cfg.experiment, cfg.search
    cpu = torch.device("cpu")
    with distributed_session("cpu") as dist:
        graph, controller, train, table, bounds = _setup(cfg)
        p_opt, p_sched, c_opt, g_opt = _optimizers(cfg, graph, controller)
        graph_model = dist.wrap(graph, find_unused_parameters=True)
        controller_model = dist.wrap(controller)
        seeds = _seeds(cfg)

        def loader_and_gen(kind: str):
            s = seeds[kind]
            loader = make_loader(train, cfg.pretrain.batch_size, True, s, exp, cpu, train=True, dist=dist)
            return loader, torch.Generator().manual_seed(rank_seed(s, dist.rank))

        result: dict = {}
        loader, gen = loader_and_gen("pretrain")
        graph_model.train()
        step = pretrain_step(graph_model, p_opt, p_sched, DROP_RATE, gen, dist)
        result["pretrain_stats"] = run_pass(step, loader, STEPS, cpu, exp.use_channels_last, "pretrain", dist=dist)
        dist.sync_buffers(graph)
        result["pretrain"] = _snapshot(graph)

        loader, gen = loader_and_gen("controller")
        graph.eval()
        controller_model.train()
        step = controller_step(controller_model, graph_model, c_opt, table, bounds, sc, gen, dist)
        result["controller_stats"] = run_pass(step, loader, STEPS, cpu, exp.use_channels_last, "controller", dist=dist)
        dist.sync_buffers(controller)
        result["controller"] = _snapshot(controller)

        loader, gen = loader_and_gen("graph")
        controller.eval()
        graph_model.train()
        step = meta_graph_step(graph_model, controller_model, g_opt, table, sc, gen, dist)
        result["graph_stats"] = run_pass(step, loader, STEPS, cpu, exp.use_channels_last, "meta-graph", dist=dist)
        dist.sync_buffers(graph)
        result["graph"] = _snapshot(graph)

        # Cell c keeps its shape, so it may select nothing: module 4 is off on every rank, module 3
        # on rank 0 only.
        c = next(t for t, cell in enumerate(graph.cells) if cell.keeps_shape)
        x, y = next(iter(loader))
        policy = torch.ones(len(x), graph.num_cells, graph.num_modules)
        policy[:, c, 4] = 0
        if rank == 1:
            policy[:, c, 3] = 0
        probe = torch.optim.SGD(graph.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        probe.zero_grad(set_to_none=True)
        F.cross_entropy(graph_model(x.contiguous(memory_format=torch.channels_last), policy), y).backward()
        unused, partly = graph.cells[c].branches[4], graph.cells[c].branches[3]
        result["unused_grad_is_none"] = [p.grad is None for p in unused.parameters()]
        result["partly_used_grads"] = [p.grad.clone() for p in partly.parameters()]
        probe.step()
        result["unused_has_momentum"] = [p in probe.state for p in unused.parameters()]
        torch.save(result, Path(out) / f"rank{rank}.pt")


@contextmanager
def _running_stats_kept(module, keep: bool):
    """Leave BatchNorm's running statistics as they were: DDP keeps rank 0's (broadcast before
    every forward), so the reference's other micro-batches must not move them."""
    saved = {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}
    yield
    if keep:
        module.load_state_dict(saved, strict=False)


def _reference(cfg) -> dict:
    """One process over the same global batches, computed as the ranks' micro-batches (same
    samples, same per-rank policy draws) whose gradients are averaged before each step."""
    exp, sc = cfg.experiment, cfg.search
    cpu = torch.device("cpu")
    graph, controller, train, table, bounds = _setup(cfg)
    p_opt, p_sched, c_opt, g_opt = _optimizers(cfg, graph, controller)
    seeds = _seeds(cfg)

    def micro_batches(kind: str):
        s = seeds[kind]
        loaders = [
            iter(
                make_loader(
                    train,
                    cfg.pretrain.batch_size,
                    True,
                    s,
                    exp,
                    cpu,
                    train=True,
                    dist=DistContext(rank=r, world_size=WORLD),
                )
            )
            for r in range(WORLD)
        ]
        gens = [torch.Generator().manual_seed(rank_seed(s, r)) for r in range(WORLD)]
        for _ in range(STEPS):
            yield [(next(loaders[r]), gens[r]) for r in range(WORLD)]

    def channels_last(x):
        return x.contiguous(memory_format=torch.channels_last)

    out: dict = {"pretrain_loss": [], "controller_reward": [], "graph_loss": []}
    graph.train()
    for step in micro_batches("pretrain"):
        p_opt.zero_grad(set_to_none=True)
        for r, ((x, y), gen) in enumerate(step):
            with _running_stats_kept(graph, r > 0):
                policy = drop_path_policy(graph, len(x), DROP_RATE, gen)  # (b, T, K)
                loss = F.cross_entropy(graph(channels_last(x), policy), y)
                (loss / WORLD).backward()
            out["pretrain_loss"].append(loss.item())
        p_opt.step()
        p_sched.step()
    out["pretrain"] = _snapshot(graph)

    graph.eval()
    controller.train()
    for step in micro_batches("controller"):
        c_opt.zero_grad(set_to_none=True)
        for r, ((x, y), gen) in enumerate(step):
            x = channels_last(x)
            with _running_stats_kept(controller, r > 0):
                probs = controller(x)  # (b, T, K)
                sampled = sample_policy(probs, graph, sc.alpha, gen)
                greedy = greedy_policy(probs, graph)
                with torch.no_grad():
                    logits = graph(torch.cat([x, x]), torch.cat([sampled.policy, greedy]))
                    correct = logits.argmax(1) == torch.cat([y, y])
                    latency = table.estimate(torch.cat([sampled.policy, greedy]))
                    reward = combined_reward(correct, latency, *bounds, sc.reward_correct, sc.reward_wrong)
                b = len(x)
                loss, _ = controller_loss(probs, sampled.actions, reward[:b] - reward[b:], sc.alpha, sc.entropy_bonus)
                (loss / WORLD).backward()
            out["controller_reward"].append(reward[:b].mean().item())
        c_opt.step()
    out["controller"] = _snapshot(controller)

    controller.eval()
    graph.train()
    for step in micro_batches("graph"):
        g_opt.zero_grad(set_to_none=True)
        for r, ((x, y), gen) in enumerate(step):
            x = channels_last(x)
            with _running_stats_kept(graph, r > 0):
                with torch.no_grad():
                    policy = sample_policy(controller(x), graph, sc.alpha, gen).policy
                policy = policy[torch.randperm(len(x), generator=gen)]
                loss = F.cross_entropy(graph(x, policy), y)
                (loss / WORLD).backward()
            out["graph_loss"].append(loss.item())
        g_opt.step()
    out["graph"] = _snapshot(graph)
    return out


def _assert_state_close(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{what} {k}: {m}")


def test_two_processes_match_one_process_with_micro_batches(tmp_path):
    """(a) After drop-path pre-training steps, controller steps and meta-graph steps under DDP on
    two gloo processes, every parameter and BatchNorm buffer is identical on both ranks, and the
    reduced statistics are identical too. (b) They equal, within float tolerance, one process
    that computes each global batch as the two ranks' micro-batches -- the same samples and the
    same per-rank policy draws -- and averages their gradients before each step: BatchNorm uses
    per-rank batch statistics under DDP, so a single forward over the whole global batch would
    not be the same computation. The reference also keeps rank 0's running statistics, as DDP's
    buffer broadcast does. (c) A module that no rank selected keeps ``grad is None`` (so SGD's
    momentum and weight decay skip it), one selected on one rank only gets the same averaged
    gradient on both."""
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for key in ("pretrain", "controller", "graph"):
        for name, value in ranks[0][key].items():
            assert torch.equal(value, ranks[1][key][name]), (key, name)
        assert ranks[0][f"{key}_stats"] == ranks[1][f"{key}_stats"]

    cfg = smoke_config()
    torch.set_num_threads(1)
    ref = _reference(cfg)
    for key in ("pretrain", "controller", "graph"):
        _assert_state_close(ranks[0][key], ref[key], key)
    stats = ranks[0]
    assert stats["pretrain_stats"]["loss"] == pytest.approx(np.mean(ref["pretrain_loss"]), rel=1e-5)
    assert stats["controller_stats"]["reward"] == pytest.approx(np.mean(ref["controller_reward"]), rel=1e-5, abs=1e-6)
    assert stats["graph_stats"]["loss"] == pytest.approx(np.mean(ref["graph_loss"]), rel=1e-5)

    for r in ranks:
        assert r["unused_grad_is_none"] and all(r["unused_grad_is_none"])
        assert not any(r["unused_has_momentum"])
    for a, b in zip(ranks[0]["partly_used_grads"], ranks[1]["partly_used_grads"]):
        assert torch.equal(a, b) and a.abs().sum() > 0


# ---- torchrun end to end -------------------------------------------------------------------------
def test_torchrun_pretrain_then_resume_in_one_process(tmp_path):
    """The issue's command, ``torchrun --standalone --nproc-per-node=2 -m instanas_core pretrain
    --preset smoke --run-dir RUN --quiet`` (stopped after its first epoch), exits 0 and writes one
    metrics row per epoch, once; a single process then resumes its checkpoint and finishes."""
    run = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "INSTANAS_DEBUG")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [
            *launcher,
            "--standalone",
            f"--nproc-per-node={WORLD}",
            "-m",
            "instanas_core",
            "pretrain",
            "--preset",
            "smoke",
            "--run-dir",
            str(run),
            "--quiet",
            "--set",
            "stop_after_epoch=0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Epoch 0 runs every module (drop-path rate 0): DDP is not told to look for unused parameters.
    assert "find_unused_parameters=True was specified" not in done.stderr
    out = run / "pretrain"
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == ["0"]
    assert load_checkpoint(out / "last.pt")["epoch"] == 0
    assert json.loads((out / "environment.json").read_text())["world_size"] == WORLD
    assert json.loads((out / "summary.json").read_text())["epochs_done"] == 1

    assert main(["pretrain", "--preset", "smoke", "--run-dir", str(run), "--quiet", "--resume"]) == 0
    assert [r["epoch"] for r in read_rows(out / "metrics.csv")] == ["0", "1"]


def test_a_notebook_launches_torchrun_when_asked_for_more_processes(tmp_path, capsys):
    """``book.ensure_stage(..., nproc=2)`` (notebooks 02 and 03's ``nproc`` parameter) runs the
    stage through ``torchrun`` with the notebook's configuration, overrides included."""
    from instanas_core import book

    cfg = book.stage_config(book.book_preset("smoke"), "pretrain", ["epochs=1"])
    summary = book.ensure_stage("pretrain", cfg, tmp_path, nproc=WORLD)
    out = capsys.readouterr().out
    assert "launching: -m torch.distributed.run --standalone --nproc-per-node=2" in out
    assert summary["finished"] and summary["epochs_done"] == 1
    assert json.loads((tmp_path / "pretrain" / "environment.json").read_text())["world_size"] == WORLD
    assert [r["epoch"] for r in read_rows(tmp_path / "pretrain" / "metrics.csv")] == ["0"]
    assert book.ensure_stage("pretrain", cfg, tmp_path, nproc=WORLD) == summary  # finished: loaded, not launched
    with pytest.raises(book.PipelineError, match="only pretrain, search and finetune"):
        book.launch_stage("evaluate", cfg, tmp_path, WORLD)


# ---- crash safety --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """Pre-training and search at smoke scale, each stopped after its first epoch (of two and
    three), on a fixed latency table; tests copy it."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    cfg = smoke_config("pretrain.stop_after_epoch=0", "search.stop_after_epoch=0")
    simple_table(cfg.experiment.space()).save(run / "profile" / "lut.json")
    run_pretrain(cfg, run, progress=False)
    run_search(cfg, run, progress=False)
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    return dest


def test_non_finite_loss_stops_before_the_checkpoint(stopped_run, tmp_path, monkeypatch, capsys):
    run = copy_run(stopped_run, tmp_path)
    cfg = smoke_config()
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(NonFiniteError) as err:
        run_pretrain(cfg, run, resume=True, progress=False)
    text = str(err.value)
    assert "epoch 1" in text and "training loss" in text and "step 1" in text
    assert "still holds epoch 0" in text and "learning rate" in text and "--resume" in text
    assert load_checkpoint(run / "pretrain" / "last.pt")["epoch"] == 0
    assert [r["epoch"] for r in read_rows(run / "pretrain" / "metrics.csv")] == ["0"]
    # The command line prints it as one paragraph and exits 2.
    assert (
        main(["pretrain", "--run-dir", str(run), "--quiet", "--resume", *sum([["--set", o] for o in EXACT], [])]) == 2
    )
    assert "NaN or infinite" in capsys.readouterr().err


def test_exploding_learning_rate_leaves_no_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(
        NonFiniteError, match=r"epoch 0 \(numbered 0 to 1.*no checkpoint of this stage had been written"
    ):
        run_pretrain(smoke_config("pretrain.lr=1e30"), run, progress=False)
    # Nothing durable was made, so nothing is left (issue 13): the retry needs no --overwrite.
    assert not (run / "pretrain").exists()


def test_non_finite_reward_stops_the_search(stopped_run, tmp_path, monkeypatch):
    run = copy_run(stopped_run, tmp_path)
    import instanas_core.stages.search as search

    monkeypatch.setattr(search, "combined_reward", lambda correct, *a, **k: torch.full(correct.shape, float("inf")))
    with pytest.raises(
        NonFiniteError, match=r"epoch 1 \(numbered 0 to 2.*controller reward.*step 1.*still holds epoch 0"
    ):
        run_search(smoke_config(), run, resume=True, progress=False)
    assert load_checkpoint(run / "search" / "last.pt")["epoch"] == 0
    assert [r["epoch"] for r in read_rows(run / "search" / "metrics.csv")] == ["0"]
    assert not (run / "search" / "epochs" / "epoch_0001.pt").exists()


def test_a_changed_latency_table_is_refused(stopped_run, tmp_path):
    run = copy_run(stopped_run, tmp_path)
    cfg = smoke_config()
    for path in (run / "search" / "last.pt", run / "search" / "epochs" / "epoch_0000.pt"):
        assert len(load_checkpoint(path)["lut_hash"]) == 64
    # Fine-tuning from the search works with the table the search used...
    tune = apply_overrides(cfg, ["finetune.variant=last", "finetune.epochs=1", "finetune.max_steps_per_epoch=1"])
    assert run_finetune(tune, run, progress=False)["finished"]
    assert "lut_hash" in load_checkpoint(run / "finetune" / "last.pt")
    # ... but after the table changed, neither the search resumes nor fine-tuning starts from it.
    table = LatencyTable.load(run / "profile" / "lut.json")
    table.cell_module_ms = table.cell_module_ms * 1.5
    table.save(run / "profile" / "lut.json")
    with pytest.raises(RunDirError, match="another latency table"):
        run_search(cfg, run, resume=True, progress=False)
    with pytest.raises(RunDirError, match="another latency table"):
        run_finetune(tune, run, overwrite=True, progress=False)


def test_a_checkpoint_of_another_space_is_refused_on_resume(stopped_run, tmp_path):
    run = copy_run(stopped_run, tmp_path)
    path = run / "pretrain" / "last.pt"
    state = load_checkpoint(path)
    state["space_hash"] = "0" * 16
    save_checkpoint(path, state)
    with pytest.raises(RunDirError, match="another search space"):
        run_pretrain(smoke_config(), run, resume=True, progress=False)
