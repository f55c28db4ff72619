"""The multi-objective reward (paper §3.3, Eq. 2) and the dynamic reward bounds.

Eq. 2, per sample::

    R = R_T * R_A   if R_T > 0
    R = R_T         otherwise

``R_T`` comes from the task objective (``reward_correct`` for a correct prediction, ``reward_wrong``
otherwise; the original code's published settings are +30 and 0). ``R_A`` is the quadratic
latency reward between the bounds ``L_t < U_t``::

    R_A = -(z - U_t) * (z - L_t) / gamma,   gamma = ((U_t - L_t) / 2) ** 2,

clamped to [0, 1]: 1 at the centre ``(U_t + L_t) / 2``, 0 at and beyond either bound. So ``R_A``
only ever discounts a correct sample's reward and never penalises (§3.3).

Dynamic reward: ``U_t`` shrinks linearly from ``U_start`` (epoch 0) to ``U_end`` (last epoch) so
that the controller is led to cheaper architectures gradually instead of collapsing to the
cheapest one (§3.3); ``L_t`` follows its own (by default constant) line.

Pure functions on tensors; the default bounds' reference latencies come from a
:class:`~instanas_core.latency.LatencyTable` (:func:`reference_latencies`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .policy import all_ones_policy, module_path_policy

__all__ = [
    "latency_reward",
    "task_reward",
    "combined_reward",
    "monotone_reward",
    "schedule_fraction",
    "dynamic_bound",
    "RewardBounds",
    "reference_latencies",
    "cheapest_policy",
    "resolve_bounds",
]


def latency_reward(latency_ms: torch.Tensor, upper: float, lower: float) -> torch.Tensor:
    """R_A of Eq. 2: ``clamp(-(z - U)(z - L) / ((U - L) / 2)^2, 0, 1)``; latency_ms (B,) -> (B,)."""
    if not upper > lower:
        raise ValueError(f"the latency reward needs U > L, got U={upper} and L={lower}.")
    gamma = ((upper - lower) / 2.0) ** 2
    r = -(latency_ms - upper) * (latency_ms - lower) / gamma
    return r.clamp(0.0, 1.0)


def task_reward(correct: torch.Tensor, reward_correct: float = 30.0, reward_wrong: float = 0.0) -> torch.Tensor:
    """R_T: ``reward_correct`` where ``correct`` (B,) bool, else ``reward_wrong``; float (B,)."""
    correct = correct.bool()
    return torch.where(
        correct,
        torch.full(correct.shape, float(reward_correct), device=correct.device),
        torch.full(correct.shape, float(reward_wrong), device=correct.device),
    )


def combined_reward(
    correct: torch.Tensor,
    latency_ms: torch.Tensor,
    upper: float,
    lower: float,
    reward_correct: float = 30.0,
    reward_wrong: float = 0.0,
) -> torch.Tensor:
    """Eq. 2: ``R_T * R_A`` where ``R_T > 0``, else ``R_T``. correct, latency_ms: (B,) -> (B,)."""
    r_t = task_reward(correct, reward_correct, reward_wrong).to(latency_ms.dtype)
    r_a = latency_reward(latency_ms, upper, lower)
    return torch.where(r_t > 0, r_t * r_a, r_t)


def monotone_reward(
    correct: torch.Tensor,
    latency_ms: torch.Tensor,
    upper: float,
    lower: float,
    reward_correct: float = 30.0,
    reward_wrong: float = -30.0,
    latency_weight: float = 1.0,
) -> torch.Tensor:
    """The named option ``search.reward="monotone"`` (not the paper's Eq. 2): a per-image cost that
    grows with latency everywhere, ``R = R_T - latency_weight * reward_correct * (z - L_t) / (U_t - L_t)``
    with ``R_T = reward_correct`` or ``reward_wrong < 0``. Eq. 2 pays nothing beyond ``U_t`` and,
    with ``reward_wrong = 0``, as little for a wrong answer as for a slow one, so giving up on hard
    images costs nothing; here a wrong answer costs ``reward_correct - reward_wrong`` and every
    millisecond costs the same, so extra modules pay only where they buy correctness. ``U_t`` still
    sets the scale: a policy at ``U_t`` pays ``latency_weight * reward_correct``. (B,) -> (B,)."""
    if not upper > lower:
        raise ValueError(f"the latency cost needs U > L, got U={upper} and L={lower}.")
    r_t = task_reward(correct, reward_correct, reward_wrong).to(latency_ms.dtype)
    return r_t - latency_weight * reward_correct * (latency_ms - lower) / (upper - lower)


def schedule_fraction(epoch: int, epochs: int, step: int = 0, steps: int = 1, per_step: bool = False) -> float:
    """How far the search is through its schedule, in [0, 1]: ``epoch / (epochs - 1)`` (the
    paper's per-epoch schedule) or, with ``per_step``, ``(epoch * steps + step) / (epochs * steps - 1)``."""
    if per_step:
        total = epochs * steps - 1
        return min(1.0, (epoch * steps + step) / total) if total > 0 else 1.0
    return epoch / (epochs - 1) if epochs > 1 else 1.0


def dynamic_bound(epoch: int, epochs: int, start: float, end: float) -> float:
    """Linear from ``start`` at epoch 0 to ``end`` at the last epoch (``epochs - 1``)."""
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must lie in [0, {epochs}), got {epoch}.")
    frac = epoch / (epochs - 1) if epochs > 1 else 1.0
    return float(start + (end - start) * frac)


@dataclass(frozen=True)
class RewardBounds:
    """Start and end of U_t and L_t in ms (see :func:`resolve_bounds`)."""

    upper_start: float
    upper_end: float
    lower_start: float
    lower_end: float

    def at_fraction(self, fraction: float, end_share: float = 1.0) -> tuple[float, float]:
        """(U_t, L_t) once ``fraction`` of the schedule has passed (:func:`schedule_fraction`); with
        ``end_share < 1`` the bounds reach their end values at that share and then hold."""
        f = min(1.0, fraction / end_share)
        return (
            self.upper_start + (self.upper_end - self.upper_start) * f,
            self.lower_start + (self.lower_end - self.lower_start) * f,
        )

    def at(self, epoch: int, epochs: int) -> tuple[float, float]:
        """(U_t, L_t) at ``epoch``."""
        return (
            dynamic_bound(epoch, epochs, self.upper_start, self.upper_end),
            dynamic_bound(epoch, epochs, self.lower_start, self.lower_end),
        )


def cheapest_policy(table, batch_size: int = 1) -> torch.Tensor:
    """The cheapest valid path by the table: every cell that must run a module runs its cheapest
    one, the others are skipped. (B, T, K)."""
    space = table.space
    t, k = space.num_cells, space.num_modules
    policy = torch.zeros(batch_size, t, k)
    costs = torch.as_tensor(table.cell_module_ms)
    for i, required in enumerate(space.required_mask()):
        if required:
            policy[:, i, int(costs[i].argmin())] = 1.0
    return policy


def reference_latencies(table) -> dict[str, float]:
    """Table estimates (ms) of the all-modules path, the MobileNetV2 path (every cell
    ``ir_k3_e6``) and the cheapest valid path."""
    space = table.space
    return {
        "all_modules_ms": float(table.estimate(all_ones_policy(space))[0]),
        "mobilenetv2_ms": float(table.estimate(module_path_policy(space, "ir_k3_e6"))[0]),
        "cheapest_ms": float(table.estimate(cheapest_policy(table))[0]),
    }


def resolve_bounds(
    refs: dict[str, float],
    upper_start_factor: float = 0.7,
    upper_end_factor: float = 0.5,
    upper_start_ms: float | None = None,
    upper_end_ms: float | None = None,
    lower_start_ms: float | None = None,
    lower_end_ms: float | None = None,
) -> RewardBounds:
    """Bounds like the original code (U from 0.7 x all-modules to 0.5 x MobileNetV2, L at the
    cheapest path), each replaceable by an absolute value in ms. Refuses bounds where U_t would
    not stay above L_t."""
    u0 = upper_start_ms if upper_start_ms is not None else upper_start_factor * refs["all_modules_ms"]
    u1 = upper_end_ms if upper_end_ms is not None else upper_end_factor * refs["mobilenetv2_ms"]
    l0 = lower_start_ms if lower_start_ms is not None else refs["cheapest_ms"]
    l1 = lower_end_ms if lower_end_ms is not None else refs["cheapest_ms"]
    if not (u0 > l0 and u1 > l1):
        raise ValueError(
            f"reward bounds leave no interval: U goes {u0:.4f} -> {u1:.4f} ms and L {l0:.4f} -> {l1:.4f} ms "
            f"(table: all modules {refs['all_modules_ms']:.4f} ms, MobileNetV2 path {refs['mobilenetv2_ms']:.4f} ms, "
            f"cheapest path {refs['cheapest_ms']:.4f} ms). Set search.upper_end_ms / search.lower_end_ms "
            "(or the *_factor settings) so that U stays above L."
        )
    return RewardBounds(float(u0), float(u1), float(l0), float(l1))
