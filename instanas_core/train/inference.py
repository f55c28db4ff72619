"""Inference over a loader for validation and evaluation (policies from the controller or fixed,
gathered over ranks), and the measured batch-1 routed latency of policies."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..controller import Controller
from ..distributed import DistContext, unwrap
from ..latency import TimingConfig, measure_children
from ..meta_graph import MetaGraph
from ..policy import greedy_policy
from .data import to_device, unpack_batch

__all__ = ["infer", "measure_routed_latency", "policy_bits"]


@torch.no_grad()
def infer(
    graph: MetaGraph,
    loader,
    device: torch.device,
    fields: tuple[str, ...],
    controller: Controller | None = None,
    fixed_policy: torch.Tensor | None = None,
    channels_last: bool = True,
    max_steps: int | None = None,
    keep_probs: bool = False,
    dist: DistContext | None = None,
    controller_view=None,
) -> dict[str, torch.Tensor]:
    """Run the (controller and) meta-graph in eval mode over ``loader``.

    With a controller, each sample gets its greedy policy (p > 0.5, the deployed rule); else
    every sample gets ``fixed_policy`` (T, K). Returns CPU tensors: ``label``, ``pred``,
    ``loss`` (N,), ``policy`` (N, T, K) bool, ``probs`` (N, T, K) when ``keep_probs``, and any
    extra ``fields`` of the batch (``index``, ``difficulty``). With ``dist``, ``loader`` is this
    rank's shard (:func:`make_loader` with ``train=False``) and every rank gets all shards' rows.
    ``controller_view(x)``, when given, is what the controller sees instead of ``x`` (the
    shuffled-input control of the search's named options).
    """
    if (controller is None) == (fixed_policy is None):
        raise ValueError("give either a controller or a fixed policy.")
    graph, controller = unwrap(graph), unwrap(controller) if controller is not None else None
    graph.eval()
    if controller is not None:
        controller.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for i, batch in enumerate(loader):
        if max_steps is not None and i >= max_steps:
            break
        b = unpack_batch(batch, fields)
        x = to_device(b["image"], device, channels_last)
        y = b["label"].to(device)
        if controller is not None:
            probs = controller(x if controller_view is None else controller_view(x))  # (B, T, K)
            policy = greedy_policy(probs, graph)
        else:
            probs = None
            policy = fixed_policy.to(device).expand(x.shape[0], -1, -1)
        logits = graph(x, policy)  # (B, classes)
        rows = {
            "label": y,
            "pred": logits.argmax(1),
            "loss": F.cross_entropy(logits, y, reduction="none"),
            "policy": policy > 0.5,
        }
        if keep_probs and probs is not None:
            rows["probs"] = probs.float()
        for extra in fields:
            if extra not in ("image", "label"):
                rows[extra] = b[extra]
        for k, v in rows.items():
            out.setdefault(k, []).append(v.detach().cpu())
    local = {k: torch.cat(v) for k, v in out.items()}
    return dist.gather_concat(local) if dist is not None else local


def measure_routed_latency(
    graph: MetaGraph,
    controller: Controller,
    policies: torch.Tensor,
    timing: TimingConfig,
    device: torch.device,
    threads: int | None = 1,
) -> np.ndarray:
    """Real batch-1 latency (controller, then the extracted child) per policy row (N,) in ms;
    identical rows are timed once."""
    if len(policies) == 0:
        return np.zeros(0)
    flat = policies.reshape(len(policies), -1).to(torch.uint8).cpu()
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    uniq_pol = uniq.float().reshape(-1, *policies.shape[1:])
    was_training = graph.training
    ms = measure_children(graph, uniq_pol, controller, threads, timing, device, passes=1, progress=False)[:, 0]
    graph.train(was_training)
    return ms[inverse.numpy()]


def policy_bits(policy: torch.Tensor) -> list[str]:
    """(N, T, K) 0/1 -> N strings of T*K characters (cell-major)."""
    flat = policy.reshape(len(policy), -1).to(torch.uint8).numpy()
    return ["".join("1" if b else "0" for b in row) for row in flat]
