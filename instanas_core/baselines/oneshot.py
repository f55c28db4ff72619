"""The OneshotNAS comparator of Figure 6 (Bender et al. 2018, "Understanding and Simplifying
One-Shot Architecture Search").

§4.2: "We follow the one-shot search procedures [1] to sample 10,000 models from the meta-graph
and train the trade-off frontier points from scratch on CIFAR-10." So:

1. sample N architectures from the pre-trained meta-graph (:func:`sample_random_policy`; one
   architecture is one policy row (T, K), the same for every image -- no instance awareness);
2. score each with the *shared* weights on a validation set (``eval_fn(policy_row) ->
   accuracy``) and with the latency table's estimate (ms, the same estimate InstaNAS's reward
   uses);
3. keep the accuracy/latency Pareto frontier (:func:`pareto_front`); its policies are re-trained
   from scratch by the training stages' re-train path.

The sampler draws a density per architecture (see :func:`sample_random_policy`), so the samples
span the latency range instead of clustering at half the modules.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ..meta_graph import MetaGraph
from ..pareto import pareto_indices
from ..policy import sample_random_policy

__all__ = [
    "OneshotRecord",
    "oneshot_search",
    "pareto_front",
    "frontier_policies",
    "shared_weight_eval_fn",
    "batch_statistics_bn",
]


class _Estimator(Protocol):
    def estimate(self, policy: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class OneshotRecord:
    """One sampled architecture: its policy (T, K), shared-weight accuracy and latency (ms)."""

    index: int
    policy: torch.Tensor  # (T, K) 0/1
    accuracy: float
    latency_ms: float

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "policy": self.policy.to(torch.int64).tolist(),
        }


def oneshot_search(
    meta_graph: MetaGraph,
    eval_fn: Callable[[torch.Tensor], float],
    latency_table: _Estimator,
    n_samples: int,
    seed: int,
    progress: bool = False,
) -> list[OneshotRecord]:
    """Sample ``n_samples`` architectures (seeded) and score each: ``eval_fn(policy_row)`` for
    accuracy, ``latency_table.estimate`` for latency (ms)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    if hasattr(latency_table, "check_compatible"):
        latency_table.check_compatible(meta_graph.space)
    policies = sample_random_policy(meta_graph, n_samples, torch.Generator().manual_seed(seed))  # (N, T, K)
    latencies = latency_table.estimate(policies).detach().cpu().tolist()  # (N,)
    records = []
    for i in tqdm(range(n_samples), desc="one-shot", disable=not progress, leave=False):
        records.append(OneshotRecord(i, policies[i], float(eval_fn(policies[i])), float(latencies[i])))
    return records


def pareto_front(records: Iterable[OneshotRecord]) -> list[OneshotRecord]:
    """The non-dominated records (higher accuracy, lower latency), by increasing latency.

    A record is kept when no other is at least as accurate *and* at least as fast with one of
    the two strictly better; of exact duplicates the earliest is kept.
    """
    ordered = sorted(records, key=lambda r: r.index)
    return [ordered[i] for i in pareto_indices([r.latency_ms for r in ordered], [r.accuracy for r in ordered])]


def frontier_policies(front: Iterable[OneshotRecord]) -> torch.Tensor:
    """Stack the frontier's policies into (N, T, K) for re-training."""
    return torch.stack([r.policy for r in front])


@contextlib.contextmanager
def batch_statistics_bn(model: nn.Module) -> Iterator[None]:
    """Normalise with each batch's own statistics without touching the running ones.

    Bender et al. evaluate one-shot children with batch statistics, since running statistics
    accumulated over many sub-networks fit none of them. BatchNorm layers go to train mode with
    momentum 0 (running stats unchanged); everything else (dropout) stays in eval.
    """
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.training, m.momentum))
            m.train()
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, training, momentum in saved:
            m.train(training)
            m.momentum = momentum


def shared_weight_eval_fn(
    meta_graph: MetaGraph,
    loader: Iterable,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    bn: str = "running",
) -> Callable[[torch.Tensor], float]:
    """``eval_fn(policy_row) -> top-1 accuracy in %`` of the meta-graph's shared weights.

    ``bn="running"``: eval mode, running statistics; ``bn="batch"``: per-batch statistics
    (:func:`batch_statistics_bn`, Bender et al.). Batches are cached after the first call so
    that every architecture sees the same images.
    """
    if bn not in ("running", "batch"):
        raise ValueError(f"bn must be 'running' or 'batch', got {bn!r}.")
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, (images, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batches.append((images.to(device), labels.to(device)))

    def eval_fn(policy_row: torch.Tensor) -> float:
        meta_graph.eval()
        correct = total = 0
        context = batch_statistics_bn(meta_graph) if bn == "batch" else contextlib.nullcontext()
        with context, torch.no_grad():
            for images, labels in batches:
                logits = meta_graph(images, policy_row.to(device), execution="subset")  # (B, classes)
                correct += int((logits.argmax(1) == labels).sum())
                total += labels.numel()
        return 100.0 * correct / max(total, 1)

    return eval_fn
