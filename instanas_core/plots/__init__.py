"""Every figure of the notebook book, one function each (paper Figures 1, 4-8 and the book's own
diagnostics): :mod:`.figures` (data, latency profiling, training and search, trade-off) and
:mod:`.qualitative` (Figures 7 and 8) and :mod:`.awareness` (the instance-awareness benchmark). ``from instanas_core import plots; plots.plot_umap(...)``
reaches every one."""

from .awareness import *  # noqa: F403
from .awareness import __all__ as _awareness_all
from .figures import *  # noqa: F403
from .figures import __all__ as _figures_all
from .qualitative import *  # noqa: F403
from .qualitative import __all__ as _qualitative_all

__all__ = list(_figures_all) + list(_qualitative_all) + list(_awareness_all)
