"""Checks that the configuration dataclasses share: field types, finite numbers, seeds, the width
multiplier and device names.

Settings reach the dataclasses from ``--set`` strings, from a ``config.json`` (any JSON value) and
from Python, so each dataclass checks its own fields in ``__post_init__`` rather than trusting its
caller. Every check raises ``error`` (the caller's exception class: :class:`ConfigError` for the
stage sections, ``ValueError`` for :class:`~instanas_core.profile.ProfileConfig`) with one line that
names the field, what was wrong and the valid range.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from typing import Any

__all__ = [
    "SEED_MAX",
    "WIDTH_MULT_MIN",
    "WIDTH_MULT_MAX",
    "is_finite_number",
    "json_kind",
    "check_field_types",
    "check_finite_floats",
    "check_seed",
    "check_width_mult",
    "device_problem",
    "check_device",
]

# NumPy's legacy seeding (np.random.seed, which seed_everything calls) accepts 0 .. 2**32 - 1;
# torch accepts more, so this is the range that every generator of a run takes unchanged.
SEED_MAX = 2**32 - 1
# MobileNetV2 reports multipliers from 0.35 to 1.4; the presets use 0.25, 0.5 and 1.0. Below 0.1 every
# layer is rounded up to the 8-channel minimum (the same network as at 0.1, so a smaller value would
# be a silent no-op); at 4.0 the meta-graph already holds ~150 M parameters, 16x the paper's.
WIDTH_MULT_MIN, WIDTH_MULT_MAX = 0.1, 4.0
_DEVICE = re.compile(r"cpu|cuda(:(0|[1-9][0-9]{0,3}))?")


def is_finite_number(value: Any) -> bool:
    """True for an int or float that is a finite float (bools are not numbers here; an int
    beyond the float range, which a config.json may hold, would overflow where it is used)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def json_kind(value: Any) -> str:
    """What a value read from a JSON file is, in JSON's words, for messages about the file."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    return f"the number {value!r}"


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _type_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` should have been for type ``hint``, or None when it fits."""
    base, optional = _split_optional(hint)
    if value is None and optional:
        return None
    suffix = " or none" if optional else ""
    if base is bool:
        return None if isinstance(value, bool) else f"true or false{suffix}"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"an integer{suffix}"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"a number{suffix}"
    if base is str:
        return None if isinstance(value, str) else f"a string{suffix}"
    return None  # nested dataclasses and the like are checked by their own type


def check_field_types(obj: Any, error: type[Exception] = ValueError) -> None:
    """Refuse a field whose value is not of its declared type (bool, int, float, str, X | None).

    Runs first in ``__post_init__``, so that the range checks after it compare numbers with
    numbers (a string from a hand-edited config.json would otherwise raise a TypeError there).
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        want = _type_problem(getattr(obj, f.name), hints.get(f.name))
        if want is not None:
            raise error(f"{type(obj).__name__}.{f.name} must be {want}, got {getattr(obj, f.name)!r}.")


def check_finite_floats(obj: Any, error: type[Exception] = ValueError) -> None:
    """Refuse NaN and infinity in every float field (a learning rate of inf is accepted by every
    ``> 0`` check and fails only steps into training)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        base, _ = _split_optional(hints.get(f.name))
        value = getattr(obj, f.name)
        if base is float and value is not None and not is_finite_number(value):
            raise error(f"{type(obj).__name__}.{f.name} must be a finite number, got {value!r}.")


def check_seed(obj: Any, name: str, error: type[Exception] = ValueError) -> None:
    """A seed: an integer from 0 to :data:`SEED_MAX`."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise error(
            f"{type(obj).__name__}.{name} must be an integer from 0 to {SEED_MAX} (2**32 - 1, the range every "
            f"random generator of a run accepts), got {value!r}."
        )


def check_width_mult(obj: Any, name: str = "width_mult", error: type[Exception] = ValueError) -> None:
    """A width multiplier within [:data:`WIDTH_MULT_MIN`, :data:`WIDTH_MULT_MAX`]."""
    value = getattr(obj, name)
    if not is_finite_number(value) or not WIDTH_MULT_MIN <= value <= WIDTH_MULT_MAX:
        raise error(
            f"{type(obj).__name__}.{name} must be a positive number from {WIDTH_MULT_MIN} to {WIDTH_MULT_MAX} "
            f"(the presets use 0.25, 0.5 and 1.0, the paper 1.0), got {value!r}."
        )


def device_problem(value: Any) -> str | None:
    """Why ``value`` is not a device name this project runs on ('cpu', 'cuda', 'cuda:N'), or None."""
    if isinstance(value, str) and _DEVICE.fullmatch(value):
        return None
    return f"must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index such as 0), got {value!r}"


def check_device(obj: Any, name: str = "device", error: type[Exception] = ValueError) -> None:
    """A device name of :func:`device_problem`'s form."""
    problem = device_problem(getattr(obj, name))
    if problem is not None:
        raise error(f"{type(obj).__name__}.{name} {problem}.")
