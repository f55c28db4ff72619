"""What a notebook knows about its run: :func:`start`, the first cell of every notebook (check the
parameters, seed, print what runs, make the run's folders), and the :class:`BookContext` it
returns, which saves figures and tables labelled with preset, data set and machine."""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .notebooks import check_namespace
from .preset import book_preset

__all__ = ["BookContext", "LATENCY_KINDS", "start"]


@dataclass
class BookContext:
    """What one notebook knows about its run: the preset's configuration, the run folder, where
    figures and tables go, and a label naming preset, data set, method (paper-exact or the named
    options used) and machine for figure titles."""

    notebook: str
    cfg: Any  # instanas_core.config.Config
    run_dir: Path
    seed: int
    machine: str

    @property
    def preset(self) -> str:
        return self.cfg.preset

    @property
    def tables_dir(self) -> Path:
        return self.run_dir / "tables"

    @property
    def label(self) -> str:
        from ..data import dataset_info

        from ..presets import method_label

        exp = self.cfg.experiment
        title = dataset_info(exp.dataset).title
        parts = (f"preset {self.preset}", title, f"width {exp.width_mult}", method_label(self.cfg), self.machine)
        return " \u00b7 ".join(parts)

    def for_config(self, cfg: Any) -> "BookContext":
        """The same notebook and run folder, labelled with another experiment's configuration
        (a sub-run such as ``RUN/synthetic``), so its figures and tables name its data set."""
        return dataclasses.replace(self, cfg=cfg)

    def context(self, latency: str | None = None) -> str:
        """:attr:`label` plus how the latencies shown were obtained: ``latency`` is a key of
        :data:`LATENCY_KINDS` (``"estimated"``, ``"measured"``, ``"both"``, ``"mixed"``) or free text."""
        if latency is None:
            return self.label
        return f"{self.label} \u00b7 latency {LATENCY_KINDS.get(latency, latency)}"

    def show(self, fig: Any, name: str) -> Any:
        """Save ``fig`` (PNG + PDF in RUN/figures) and return the PNG for the notebook to display."""
        from IPython.display import Image

        from ..plots import save_figure

        paths = save_figure(fig, self.run_dir, name)
        return Image(filename=str(paths["png"]))

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        name: str,
        floatfmt: str = ".4g",
        latency: str | None = None,
        title: str | None = None,
    ) -> Any:
        """Write ``rows`` to RUN/tables/NAME.csv and NAME.md and return the Markdown to display.

        The Markdown is headed by ``title`` (if given) and a line naming preset, data set,
        width, machine and, with ``latency``, how latencies were obtained (see :meth:`context`);
        the CSV holds the rows only."""
        from IPython.display import Markdown

        if not rows:
            raise ValueError(f"table {name!r} has no rows.")
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with (self.tables_dir / f"{name}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(rows)

        def fmt(v: Any) -> str:
            text = format(v, floatfmt) if isinstance(v, float) else ("" if v is None else str(v))
            return text.replace("|", "\\|")

        md = io.StringIO()
        if title:
            md.write(f"**{title}**\n\n")
        md.write(f"_{self.context(latency)}_\n\n")
        md.write("| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n")
        for r in rows:
            md.write("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |\n")
        (self.tables_dir / f"{name}.md").write_text(md.getvalue())
        return Markdown(md.getvalue())


# How a figure's or table's latencies were obtained, as its heading says it.
LATENCY_KINDS = {
    "estimated": "estimated (look-up table, \u00a74.1; controller included)",
    "measured": "measured (batch 1, timed on this machine)",
    "both": "estimated (look-up table) and measured (batch 1), as labelled",
    "mixed": "as each row's latency_kind says (estimated or measured)",
}


def start(
    notebook: str, preset: str, run_dir: str | Path, seed: int = 0, namespace: Mapping[str, Any] | None = None
) -> BookContext:
    """The first cell of every notebook: check the parameters the kernel holds (``namespace``,
    the notebook's ``globals()``, see :func:`check_namespace`), seed everything, print what runs,
    make RUN's folders."""
    import random

    import matplotlib
    import numpy as np
    import torch

    from .. import __version__
    from ..data import use_shared_cifar10_jpeg
    from ..env import describe_environment

    if namespace is not None:
        check_namespace(notebook, namespace)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    cfg = book_preset(preset)
    run = Path(run_dir).expanduser().resolve()
    for sub in ("figures", "tables"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    shared = use_shared_cifar10_jpeg() if cfg.experiment.dataset == "cifar10-jpeg" else None
    env = describe_environment(cfg.experiment.device)
    exp = cfg.experiment
    subsets = (
        f", {exp.train_per_class}/{exp.eval_per_class} images per class (train/eval)" if exp.train_per_class else ""
    )
    print(f"notebook {notebook} \u00b7 preset {preset} \u00b7 seed {seed}")
    print(
        f"experiment   {exp.dataset}{subsets}, width {exp.width_mult}, "
        f"24-channel stage stride {exp.stage24_stride or 'as paper'}, device {exp.device}"
    )
    print(f"run folder   {run}")
    print(f"python       {sys.executable} ({env['python']})")
    print(
        f"packages     instanas_core {__version__}, torch {env['torch']}, torchvision {env['torchvision']}, "
        f"numpy {env['numpy']}, matplotlib {matplotlib.__version__} (backend {matplotlib.get_backend()})"
    )
    print(
        f"machine      {env['device_name']}, {env['cpu_count']} cores, torch threads {env['threads']}, "
        f"{env['platform']}"
    )
    print(f"git commit   {env['git_commit']}")
    if shared:
        print(f"data         CIFAR-10 (JPEG q75) from {shared}")
    return BookContext(notebook, cfg, run, seed, env["device_name"])
