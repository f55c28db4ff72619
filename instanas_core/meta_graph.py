"""The meta-graph: every child architecture of the search space, with shared weights (§3.2).

``MetaGraph.forward(x, policy)`` takes one architecture per sample: ``policy`` is a (B, T, K)
0/1 tensor (T = 17 cells, K = 5 modules). Two execution paths compute the same function:

* ``execution="masked"`` runs every module on every sample and multiplies the outputs by the
  policy bits -- the reference, and what the original InstaNAS code did;
* ``execution="subset"`` (default) runs each module only on the samples that selected it
  (``index_select`` in, ``index_add`` out), so unselected modules cost nothing.

In eval mode both agree with the standalone network that :meth:`MetaGraph.extract_child` cuts
out for one policy row. In train mode BatchNorm sees, per module, only the samples routed
through it in ``subset`` but every sample in ``masked``, so the two differ there by design.

The combination rule and the at-least-one rule are documented in
:mod:`instanas_core.search_space`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .modules import build_head, build_module, build_stem, init_weights
from .policy import required_mask
from .search_space import CellSpec, SearchSpace, make_search_space

__all__ = ["Cell", "MetaGraph", "ChildCell", "ChildNetwork", "build_meta_graph", "EXECUTIONS"]

EXECUTIONS = ("subset", "masked")


class Cell(nn.Module):
    """One cell: K candidate branches over the same input."""

    def __init__(self, spec: CellSpec, module_names: tuple[str, ...]) -> None:
        super().__init__()
        self.spec = spec
        self.keeps_shape = spec.keeps_shape
        self.branches = nn.ModuleList(
            build_module(n, spec.in_channels, spec.out_channels, spec.stride) for n in module_names
        )

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W); mask: (B, K)
        out = 0
        for k, branch in enumerate(self.branches):
            out = out + branch(x) * mask[:, k].to(x.dtype).view(-1, 1, 1, 1)  # (B, C_out, H', W')
        return x + out if self.keeps_shape else out

    def forward_subset(self, x: torch.Tensor, mask_cpu: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W); mask_cpu: (B, K) bool on the CPU, so index building never syncs
        batch = x.shape[0]
        out = None
        # Sub-batch outputs are accumulated in place into a buffer this cell owns: an
        # out-of-place index_add would copy the whole (B, C_out, H', W') sum once per module.
        owned = False  # whether `out` may be written in place (not a branch's own output)
        for k, branch in enumerate(self.branches):
            sel = mask_cpu[:, k]
            n = int(sel.sum())
            if n == 0:
                continue
            if n == batch:
                y = branch(x)  # (B, C_out, H', W')
                out, owned = (y, False) if out is None else (out + y, True)
                continue
            idx = sel.nonzero().squeeze(1).to(x.device, non_blocking=True)  # (n,)
            y = branch(_select_rows(x, idx))  # (n, C_out, H', W')
            if not owned:
                out = _zeros_like_batch(y, batch, x) if out is None else out.clone()
                owned = True
            out.index_add_(0, idx, y)
        if out is None:  # nobody selected anything: only legal when the shape is kept
            return x
        return x + out if self.keeps_shape else out


def _is_nhwc(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _select_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x.index_select(0, idx)`` that keeps an NHWC tensor NHWC (index_select returns NCHW)."""
    if _is_nhwc(x):
        return x.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)  # (n, C, H, W), NHWC strides
    return x.index_select(0, idx)


def _zeros_like_batch(y: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Zeros of shape (batch, *y.shape[1:]) in ``like``'s memory format. ``new_zeros`` would
    give NCHW, and an NCHW sum would turn every later cell NCHW: on CPU, depthwise-convolution
    backward is >10x slower there."""
    fmt = torch.channels_last if _is_nhwc(like) else torch.contiguous_format
    return torch.empty((batch,) + y.shape[1:], dtype=y.dtype, device=y.device, memory_format=fmt).zero_()


class MetaGraph(nn.Module):
    """Stem, 17 cells of 5 modules, head (1x1 conv, global pooling, linear)."""

    def __init__(self, space: SearchSpace, dropout: float = 0.0) -> None:
        super().__init__()
        self.space = space
        self.stem = build_stem(space)
        self.cells = nn.ModuleList(Cell(spec, space.modules) for spec in space.cells())
        self.head = build_head(space, self.cells[-1].spec.out_channels, dropout)
        init_weights(self)

    @property
    def num_cells(self) -> int:
        return self.space.num_cells

    @property
    def num_modules(self) -> int:
        return self.space.num_modules

    def validate_policy(self, policy: torch.Tensor, batch: int) -> torch.Tensor:
        """Check a policy and broadcast a single (T, K) row to (batch, T, K); never repair it.

        The at-least-one rule is applied once, where policies are made (every maker in
        :mod:`instanas_core.policy` applies it, and :func:`~instanas_core.policy.enforce_at_least_one`
        applies it to a hand-made one): a policy that leaves a shape-changing cell empty is refused
        here rather than silently changed."""
        t, k = self.num_cells, self.num_modules
        if policy.dim() == 2:
            policy = policy.unsqueeze(0).expand(batch, t, k)
        if policy.dim() != 3 or policy.shape[1:] != (t, k) or policy.shape[0] != batch:
            raise ValueError(
                f"policy must have shape (batch={batch}, cells={t}, modules={k}) or ({t}, {k}); "
                f"got {tuple(policy.shape)}."
            )
        policy = policy.float()
        empty = (policy.sum(-1) == 0) & required_mask(self.space, policy.device)  # (B, T)
        if bool(empty.any()):
            samples, cells = (int(v) for v in empty.nonzero()[0])
            raise ValueError(
                f"the policy of sample {samples} selects no module in cell {cells}, which changes shape and must run "
                f"one ({int(empty.sum())} such sample/cell pairs in all). Make policies with instanas_core.policy "
                "(sample_policy, greedy_policy, drop_path_policy, sample_random_policy), or pass a hand-made one "
                "through enforce_at_least_one, which switches on the default module there."
            )
        return policy

    def forward_features(self, x: torch.Tensor, policy: torch.Tensor, execution: str = "subset") -> torch.Tensor:
        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}.")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"the meta-graph takes a batch of RGB images (B, 3, H, W) ({self.space.resolution}x"
                f"{self.space.resolution} in this space); got a tensor of shape {tuple(x.shape)}. Add a batch "
                "dimension with x.unsqueeze(0), or convert grey images to RGB."
            )
        policy = self.validate_policy(policy, x.shape[0])  # (B, T, K)
        x = self.stem(x)  # (B, C_stem, H, W)
        if execution == "masked":
            for t, cell in enumerate(self.cells):
                x = cell.forward_masked(x, policy[:, t])
        else:
            mask_cpu = policy.detach().to("cpu") > 0.5  # (B, T, K): one transfer per forward
            for t, cell in enumerate(self.cells):
                x = cell.forward_subset(x, mask_cpu[:, t])
        return x  # (B, C_last, h, w)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor, policy: torch.Tensor, execution: str = "subset") -> torch.Tensor:
        return self.forward_head(self.forward_features(x, policy, execution))

    @torch.no_grad()
    def extract_child(self, policy_row: torch.Tensor, share_weights: bool = False) -> "ChildNetwork":
        """A standalone network holding only the chosen modules.

        policy_row: (T, K) or (1, T, K), a valid policy (:meth:`validate_policy`). Skipped cells
        vanish, exactly as in :meth:`forward`. By default the modules are copied (a
        deployable network, independent of later training); ``share_weights=True`` returns a
        view whose modules *are* the meta-graph's, for routed inference without copies.
        """
        own = (lambda m: m) if share_weights else copy.deepcopy
        policy = self.validate_policy(policy_row.reshape(1, self.num_cells, self.num_modules).cpu(), 1)[0]
        cells = []
        for t, cell in enumerate(self.cells):
            chosen = [own(cell.branches[k]) for k in range(self.num_modules) if policy[t, k] > 0.5]
            if chosen or not cell.keeps_shape:
                cells.append(ChildCell(chosen, cell.keeps_shape))
        child = ChildNetwork(own(self.stem), cells, own(self.head), policy.clone())
        return child if share_weights else child.train(self.training)


class ChildCell(nn.Module):
    def __init__(self, branches: list[nn.Module], residual: bool) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return x + out if self.residual else out


class ChildNetwork(nn.Module):
    """A single architecture cut out of the meta-graph, for deployment and real latency."""

    def __init__(self, stem: nn.Module, cells: list[ChildCell], head: nn.Module, policy: torch.Tensor) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.Sequential(*cells)
        self.head = head
        self.register_buffer("policy", policy, persistent=True)  # (T, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))


def build_meta_graph(
    resolution: int,
    width_mult: float = 1.0,
    num_classes: int = 10,
    dropout: float = 0.0,
    device: torch.device | str | None = None,
    **space_overrides,
) -> MetaGraph:
    """The InstaNAS meta-graph at one of the paper's resolutions (32, 64, 224)."""
    graph = MetaGraph(make_search_space(resolution, width_mult, num_classes, **space_overrides), dropout)
    return graph.to(device) if device is not None else graph
