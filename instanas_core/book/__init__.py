"""The notebook book: numbered, parameterised notebooks that walk through the paper and rebuild
its figures and tables, run in order with papermill.

Two halves, each in its own modules:

* the **runner** -- :mod:`.runner` (:func:`run_book`, ``instanas book``, the manifest that lets a
  re-run resume, :func:`export_figures`), :mod:`.render` (:func:`render_book`: the run as HTML pages), :mod:`.notebooks` (the notebooks and the name and type
  checks of their parameters) and :mod:`.kernel` (the kernel is this interpreter);
* the **notebook helpers**, which keep each notebook cell to one call: :mod:`.context`
  (:func:`start`, :class:`BookContext`), :mod:`.splits` (notebook 00's data), :mod:`.profiling`
  (notebook 01, §4.1), :mod:`.training` (the stages' outputs, notebooks 02-05 and 07),
  :mod:`.records` (per-image records, notebooks 08-09) and :mod:`.tables` (Tables 1-3, Figures 5-6).
  The stage helpers (:func:`ensure_stage`, :func:`ensure_variant`, :func:`ensure_baseline`,
  :func:`ensure_comparator`, ...) are :mod:`instanas_core.pipeline`'s, which the book shares with
  ``instanas bench``: they load what an earlier notebook left in the run folder and make what is
  missing, so every notebook also runs on its own.

What the book does at each preset (children timed, variants, baselines, the difficulty sub-run) is
the preset's :class:`~instanas_core.presets.BookSettings`, defined beside the preset itself.

Every name in the ``__all__`` of these modules is importable as ``from instanas_core.book import X``
and as ``book.X``.
"""

# ruff: noqa: F403 -- this package re-exports the public names (``__all__``) of its modules
from .. import pipeline
from ..pipeline import *
from ..profile import load_profile_panel, stack_panels
from . import context, errors, kernel, notebooks, preset, profiling, records, render, runner, splits, tables, training
from .context import *
from .errors import *
from .kernel import *
from .notebooks import *
from .preset import *
from .profiling import *
from .records import *
from .render import *
from .runner import *
from .splits import *
from .tables import *
from .training import *

__all__ = [
    *errors.__all__,
    *preset.__all__,
    # the runner
    *notebooks.__all__,
    *kernel.__all__,
    *runner.__all__,
    *render.__all__,
    # the notebook helpers
    *context.__all__,
    *splits.__all__,
    *profiling.__all__,
    "load_profile_panel",
    "stack_panels",
    *pipeline.__all__,
    *training.__all__,
    *records.__all__,
    *tables.__all__,
]
