"""The MobileNetV2-path backbone shared by the conditional-computation comparators of Figure 6
(BlockDrop, Wu et al. 2018; ConvNet-AIG, Veit & Belongie 2018).

Figure 6 compares the methods "within MobileNetV2 search space", so both comparators gate the
cells of one fixed network: our search space's stem, 17 cells that each run ``ir_k3_e6`` (built
with :func:`instanas_core.modules.build_module` from the space's :class:`CellSpec`) and head --
the same network as ``meta-mobilenetv2-path``. Only the *shape-keeping* cells (stride 1, same
channels) can be skipped: skipping one leaves the identity, exactly like a cell whose policy
selects no module in the meta-graph; the shape-changing cells always run.

``keep``: a (B, S) 0/1 tensor over the S skippable cells (S = 10 in the paper's space).
Two execution paths compute the same function in eval mode, as in :class:`MetaGraph`:

* ``"subset"`` runs each skippable cell only on the samples that keep it (``index_select`` in,
  ``index_add`` out), so a skipped cell costs nothing;
* ``"masked"`` runs every cell on every sample and multiplies the branch by ``keep`` -- the
  reference, and the path that gives every gate a gradient (ConvNet-AIG trains this way).

:meth:`GatedMobileNetV2.extract_static` cuts the static network of one keep row out of the
model (skipped cells vanish), so the comparators' latency is measured like InstaNAS's children:
at batch 1, on a standalone network, including the decision-making part (BlockDrop's policy
network, ConvNet-AIG's gates) just as InstaNAS's latency includes its controller (Table 1).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..meta_graph import MetaGraph
from ..modules import build_head, build_module, build_stem, init_weights
from ..search_space import SearchSpace

__all__ = [
    "CELL_MODULE",
    "GATED_EXECUTIONS",
    "GatedMobileNetV2",
    "ResidualCell",
    "StaticPath",
]

CELL_MODULE = "ir_k3_e6"  # MobileNetV2's module (Figure 3)
GATED_EXECUTIONS = ("subset", "masked")


class ResidualCell(nn.Module):
    """x + F(x): a kept shape-keeping cell inside a static network."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class StaticPath(nn.Module):
    """Stem, the executed cells, head: one keep row's network, for batch-1 latency and MACs.

    ``decider`` (optional) runs first on the image and its output is discarded: it stands for
    the decision cost (BlockDrop's policy network) that a deployed model pays per image.
    ``probes`` (optional, ConvNet-AIG) holds one gate per cell position, evaluated on that
    cell's input, whether the cell then runs or not -- again only for its cost.
    """

    def __init__(
        self,
        stem: nn.Module,
        cells: list[nn.Module],
        head: nn.Module,
        executed: torch.Tensor,
        decider: nn.Module | None = None,
        probes: dict[int, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.head = head
        self.decider = decider
        self.probes = nn.ModuleDict({str(k): v for k, v in (probes or {}).items()})
        self.register_buffer("executed", executed.clone(), persistent=True)  # (T,) bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.decider is not None:
            self.decider(x)
        x = self.stem(x)  # (1, C_stem, H, W)
        for i, cell in enumerate(self.cells):
            if str(i) in self.probes:
                self.probes[str(i)](x)  # the decision's cost only; the mask is already fixed
            x = cell(x)
        return self.head(x)  # (1, num_classes)


class GatedMobileNetV2(nn.Module):
    """MobileNetV2 path (every cell ``ir_k3_e6``) whose shape-keeping cells can be skipped."""

    def __init__(self, space: SearchSpace, dropout: float = 0.0) -> None:
        super().__init__()
        self.space = space
        specs = space.cells()
        self.stem = build_stem(space)
        self.cells = nn.ModuleList(build_module(CELL_MODULE, c.in_channels, c.out_channels, c.stride) for c in specs)
        self.head = build_head(space, specs[-1].out_channels, dropout)
        # Python tuples, not buffers: the cell layout is architecture, fixed at construction.
        self.skippable: tuple[int, ...] = tuple(i for i, c in enumerate(specs) if c.keeps_shape)
        self.skippable_channels: tuple[int, ...] = tuple(specs[i].out_channels for i in self.skippable)
        init_weights(self)

    @property
    def num_cells(self) -> int:
        return len(self.cells)

    @property
    def num_skippable(self) -> int:
        return len(self.skippable)

    # ---- masks ---------------------------------------------------------------------------------
    def check_keep(self, keep: torch.Tensor, batch: int) -> torch.Tensor:
        """Validate a keep mask; a single (S,) row is broadcast to (B, S)."""
        s = self.num_skippable
        if keep.dim() == 1:
            keep = keep.unsqueeze(0).expand(batch, s)
        if keep.dim() != 2 or keep.shape != (batch, s):
            raise ValueError(
                f"keep must have shape (batch={batch}, skippable cells={s}) or ({s},); got {tuple(keep.shape)}."
            )
        return keep

    def executed_cells(self, keep: torch.Tensor) -> torch.Tensor:
        """(B, S) keep mask -> (B, T) bool: which of all T cells run for each sample."""
        keep = keep.detach().to("cpu") > 0.5
        executed = torch.ones(keep.shape[0], self.num_cells, dtype=torch.bool)
        executed[:, list(self.skippable)] = keep
        return executed

    def keep_from_executed(self, executed: torch.Tensor) -> torch.Tensor:
        """(…, T) executed-cell mask -> (…, S) keep mask (the inverse of :meth:`executed_cells`)."""
        executed = executed.detach().to("cpu") > 0.5
        fixed = [t for t in range(self.num_cells) if t not in self.skippable]
        if not bool(executed[..., fixed].all()):
            raise ValueError(f"cells {fixed} change shape and always run; a mask that skips them is invalid.")
        return executed[..., list(self.skippable)].float()

    def usage(self, keep: torch.Tensor) -> torch.Tensor:
        """Share of the skippable cells each sample runs, (B,) in [0, 1] (BlockDrop's usage)."""
        return (keep.detach() > 0.5).float().mean(1)

    # ---- one cell ------------------------------------------------------------------------------
    def apply_skippable(self, t: int, x: torch.Tensor, keep_s: torch.Tensor, execution: str) -> torch.Tensor:
        """Cell ``t`` (shape-keeping) on x (B, C, H, W) with per-sample keep_s (B,)."""
        cell = self.cells[t]
        if execution == "masked":
            return x + cell(x) * keep_s.to(x.dtype).view(-1, 1, 1, 1)
        sel = keep_s.detach().to("cpu") > 0.5  # (B,) bool on the CPU: building indices never syncs
        n, batch = int(sel.sum()), x.shape[0]
        if n == 0:
            return x
        # multiplying by keep (all ones here) passes a straight-through gate's gradient along
        gain = keep_s.to(x.dtype)
        if n == batch:
            return x + cell(x) * gain.view(-1, 1, 1, 1)
        idx = sel.nonzero().squeeze(1).to(x.device, non_blocking=True)  # (n,)
        y = cell(x.index_select(0, idx)) * gain.index_select(0, idx).view(-1, 1, 1, 1)  # (n, C, H, W)
        return x.index_add(0, idx, y)

    # ---- forward -------------------------------------------------------------------------------
    def forward_cells(self, x: torch.Tensor, keep: torch.Tensor, execution: str = "subset") -> torch.Tensor:
        """Stem and cells under a given keep mask (B, S): features (B, C_last, h, w)."""
        if execution not in GATED_EXECUTIONS:
            raise ValueError(f"execution must be one of {GATED_EXECUTIONS}, got {execution!r}.")
        keep = self.check_keep(keep, x.shape[0])
        x = self.stem(x)  # (B, C_stem, H, W)
        s = 0
        for t, cell in enumerate(self.cells):
            if t in self.skippable:
                x = self.apply_skippable(t, x, keep[:, s], execution)
                s += 1
            else:
                x = cell(x)
        return x

    # ---- weights from the meta-graph -------------------------------------------------------------
    @torch.no_grad()
    def load_from_meta_graph(self, meta_graph: MetaGraph) -> "GatedMobileNetV2":
        """Copy stem, head and every cell's ``ir_k3_e6`` branch from a (pre-trained) meta-graph.

        BlockDrop starts from a pre-trained backbone; here the pre-trained meta-graph provides it,
        so the comparators start from the same weights as InstaNAS's search.
        """
        if meta_graph.space.space_hash() != self.space.space_hash():
            raise ValueError("the meta-graph was built for another search space (resolution, width or classes).")
        k = meta_graph.space.modules.index(CELL_MODULE)
        self.stem.load_state_dict(meta_graph.stem.state_dict())
        self.head.load_state_dict(meta_graph.head.state_dict())
        for cell, meta_cell in zip(self.cells, meta_graph.cells):
            cell.load_state_dict(meta_cell.branches[k].state_dict())
        return self

    # ---- static extraction ---------------------------------------------------------------------
    def _keep_row(self, mask_row: torch.Tensor) -> torch.Tensor:
        mask_row = mask_row.detach().to("cpu").reshape(-1)
        if mask_row.numel() == self.num_cells:
            return self.keep_from_executed(mask_row)
        if mask_row.numel() == self.num_skippable:
            return (mask_row > 0.5).float()
        raise ValueError(
            f"a mask row has {self.num_skippable} entries (skippable cells) or {self.num_cells} (all cells); "
            f"got {mask_row.numel()}."
        )

    @torch.no_grad()
    def _extract(
        self, mask_row: torch.Tensor, decider: nn.Module | None = None, gates: nn.ModuleList | None = None
    ) -> StaticPath:
        keep = self._keep_row(mask_row)  # (S,)
        executed = self.executed_cells(keep.unsqueeze(0))[0]  # (T,)
        cells: list[nn.Module] = []
        probes: dict[int, nn.Module] = {}
        s = 0
        for t, cell in enumerate(self.cells):
            if t in self.skippable:
                if gates is not None:
                    probes[len(cells)] = copy.deepcopy(gates[s])
                if keep[s] > 0.5:
                    cells.append(ResidualCell(copy.deepcopy(cell)))
                elif gates is not None:
                    cells.append(nn.Identity())  # keeps the probe's position; costs nothing
                s += 1
            else:
                cells.append(copy.deepcopy(cell))
        static = StaticPath(
            copy.deepcopy(self.stem),
            cells,
            copy.deepcopy(self.head),
            executed,
            decider=copy.deepcopy(decider) if decider is not None else None,
            probes=probes,
        )
        return static.train(self.training)
