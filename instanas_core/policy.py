"""Policies: binary (B, T, K) tensors choosing modules per sample and cell (paper §3.3, §4.1).

Every function that makes a policy returns a *valid* one: in a cell that changes stride or
channels at least one module is selected (§4.1); where none was, the default module (module (a),
``basic``) is switched on.

Exploration (§3.3): the controller's probabilities ``p`` are mutated by the encouragement
parameter, ``p' = alpha * p + (1 - alpha) * (1 - p)`` (BlockDrop, Wu et al. 2018), then sampled
independently (Bernoulli). ``alpha = 1`` keeps ``p``; ``alpha = 0.5`` is uniform.

Sampling keeps two tensors apart: the *actions* the Bernoulli draws produced, and the *policy*
actually executed (the actions after the at-least-one rule). The rule is a deterministic
function of the actions, so REINFORCE's log-probability is that of the actions
(:func:`policy_log_prob`), which keeps the gradient estimator unbiased.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .search_space import SearchSpace

__all__ = [
    "PolicySample",
    "required_mask",
    "enforce_at_least_one",
    "is_valid_policy",
    "sample_random_policy",
    "drop_path_policy",
    "encourage",
    "sample_policy",
    "greedy_policy",
    "policy_log_prob",
    "policy_entropy",
    "all_ones_policy",
    "module_path_policy",
]


class PolicySample(NamedTuple):
    actions: torch.Tensor  # (B, T, K) raw Bernoulli draws; log-probabilities are taken of these
    policy: torch.Tensor  # (B, T, K) actions after the at-least-one rule; this is executed


def _space(obj) -> SearchSpace:
    return obj if isinstance(obj, SearchSpace) else obj.space


def required_mask(space_or_graph, device: torch.device | str | None = None) -> torch.Tensor:
    """(T,) bool: True for cells where the at-least-one rule applies."""
    return torch.tensor(_space(space_or_graph).required_mask(), dtype=torch.bool, device=device)


def enforce_at_least_one(policy: torch.Tensor, space_or_graph) -> torch.Tensor:
    """Switch on the default module in every required cell that selects nothing.

    policy: (B, T, K) 0/1 float or bool. Returns a new float tensor of the same shape.
    """
    space = _space(space_or_graph)
    policy = policy.float()
    req = required_mask(space, policy.device)  # (T,)
    empty = (policy.sum(-1) == 0) & req  # (B, T)
    if bool(empty.any()):
        policy = policy.clone()
        policy[..., space.default_module_index] = torch.where(
            empty, torch.ones_like(empty, dtype=policy.dtype), policy[..., space.default_module_index]
        )
    return policy


def is_valid_policy(policy: torch.Tensor, space_or_graph) -> bool:
    space = _space(space_or_graph)
    if policy.dim() != 3 or policy.shape[1:] != (space.num_cells, space.num_modules):
        return False
    if not bool(((policy == 0) | (policy == 1)).all()):
        return False
    req = required_mask(space, policy.device)
    return bool((policy.sum(-1)[:, req] > 0).all())


def sample_random_policy(
    meta_graph,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    density: tuple[float, float] = (0.05, 1.0),
) -> torch.Tensor:
    """Valid random policies of shape (B, T, K).

    Each sample draws its own density ``d ~ U(density)`` and then each bit ``~ Bernoulli(d)``,
    so that children span the whole latency range (sparse to all-modules), which a fixed
    Bernoulli(0.5) would not.
    """
    space = _space(meta_graph)
    lo, hi = density
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"density bounds must satisfy 0 <= lo <= hi <= 1, got {density}.")
    d = lo + (hi - lo) * torch.rand(batch_size, 1, 1, generator=generator)  # (B, 1, 1)
    u = torch.rand(batch_size, space.num_cells, space.num_modules, generator=generator)
    policy = (u < d).float()  # (B, T, K)
    policy = enforce_at_least_one(policy, space)
    return policy.to(device) if device is not None else policy


def drop_path_policy(
    meta_graph,
    batch_size: int,
    drop_rate: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Drop-path for pre-training (§3.2): each module of each sample is dropped independently
    with probability ``drop_rate``; the at-least-one rule is kept. (B, T, K)."""
    if not 0.0 <= drop_rate <= 1.0:
        raise ValueError(f"drop_rate must lie in [0, 1], got {drop_rate}.")
    space = _space(meta_graph)
    u = torch.rand(batch_size, space.num_cells, space.num_modules, generator=generator)
    policy = enforce_at_least_one((u >= drop_rate).float(), space)
    return policy.to(device) if device is not None else policy


def encourage(probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """p' = alpha * p + (1 - alpha) * (1 - p) (§3.3)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"encouragement alpha must lie in [0, 1], got {alpha}.")
    return alpha * probs + (1.0 - alpha) * (1.0 - probs)


def sample_policy(
    probs: torch.Tensor,
    space_or_graph,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> PolicySample:
    """Bernoulli-sample actions from the encouraged probabilities; probs: (B, T, K)."""
    p = encourage(probs.detach(), alpha)
    u = torch.rand(p.shape, generator=generator, device="cpu" if generator is not None else p.device)
    actions = (u.to(p.device) < p).float()  # (B, T, K)
    return PolicySample(actions, enforce_at_least_one(actions, space_or_graph))


def greedy_policy(probs: torch.Tensor, space_or_graph) -> torch.Tensor:
    """The self-critical baseline's policy: p > 0.5, made valid. (B, T, K)."""
    return enforce_at_least_one((probs.detach() > 0.5).float(), space_or_graph)


def _clamp(probs: torch.Tensor) -> torch.Tensor:
    # keep log(p) and log(1 - p) finite; 1 - 1e-8 rounds to 1 in float32, so use the dtype's eps
    eps = torch.finfo(probs.dtype).eps
    return probs.clamp(eps, 1.0 - eps)


def policy_log_prob(actions: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """log P(actions) under independent Bernoulli(probs), summed over cells and modules: (B,)."""
    probs = _clamp(probs)
    ll = actions * torch.log(probs) + (1.0 - actions) * torch.log1p(-probs)  # (B, T, K)
    return ll.flatten(1).sum(1)


def policy_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the independent Bernoulli policy, summed over cells and modules: (B,)."""
    p = _clamp(probs)
    h = -(p * torch.log(p) + (1.0 - p) * torch.log1p(-p))  # (B, T, K)
    return h.flatten(1).sum(1)


def all_ones_policy(space_or_graph, batch_size: int = 1, device=None) -> torch.Tensor:
    space = _space(space_or_graph)
    return torch.ones(batch_size, space.num_cells, space.num_modules, device=device)


def module_path_policy(space_or_graph, module: str, batch_size: int = 1, device=None) -> torch.Tensor:
    """Every cell runs exactly ``module`` (``ir_k3_e6`` gives the MobileNetV2 path)."""
    space = _space(space_or_graph)
    policy = torch.zeros(batch_size, space.num_cells, space.num_modules, device=device)
    policy[..., space.modules.index(module)] = 1.0
    return policy
