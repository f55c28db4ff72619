"""What a stage builds before it trains: a fresh meta-graph and controller (§3.2: every residual
cell starts as the identity), optimisers and per-step learning-rate schedules (§4.2)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..config import ConfigError, ExperimentConfig
from ..controller import Controller, build_controller
from ..meta_graph import MetaGraph

__all__ = ["build_models", "zero_init_residual_branches", "make_optimizer", "make_schedule"]


def build_models(exp: ExperimentConfig, device: torch.device, seed: int | None = None) -> tuple[MetaGraph, Controller]:
    """A fresh meta-graph and controller for the experiment's space (seeded when ``seed`` given)."""
    if seed is not None:
        torch.manual_seed(seed)
    space = exp.space()
    graph = MetaGraph(space)
    if exp.zero_init_residual:
        zero_init_residual_branches(graph)
    controller = build_controller(graph)
    if exp.use_channels_last:
        graph = graph.to(memory_format=torch.channels_last)
        controller = controller.to(memory_format=torch.channels_last)
    return graph.to(device), controller.to(device)


def zero_init_residual_branches(graph: MetaGraph) -> None:
    """Zero the weight of the last BatchNorm of every branch in the shape-keeping (residual)
    cells, so that each such cell starts as the identity; shape-changing cells are left alone."""
    with torch.no_grad():
        for cell in graph.cells:
            if not cell.keeps_shape:
                continue
            for branch in cell.branches:
                last_bn = [m for m in branch.modules() if isinstance(m, nn.BatchNorm2d)][-1]
                last_bn.weight.zero_()


def make_optimizer(params, kind: str, lr: float, weight_decay: float, momentum: float = 0.9, nesterov: bool = True):
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
        )
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {kind!r}; use sgd or adam.")


def make_schedule(optimizer, schedule: str, epochs: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step learning-rate factor: cosine annealing to 0 over all steps, ``step`` (x0.1 at
    1/2 and x0.01 at 3/4 of the epochs, the original pre-training schedule) or constant."""
    total = max(1, epochs * steps)
    steps = max(1, steps)

    def cosine(i: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(i, total) / total))

    def step(i: int) -> float:
        epoch = i // steps
        return 0.01 if epoch >= 0.75 * epochs else 0.1 if epoch >= 0.5 * epochs else 1.0

    fns: dict[str, Callable[[int], float]] = {"cosine": cosine, "step": step, "constant": lambda i: 1.0}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fns[schedule])
