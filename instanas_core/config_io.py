"""Configurations as text: ``key=value`` overrides (``instanas <stage> --set``, the book's
``stage_config``) and the ``config.json`` a stage saves and ``--config`` reads.

``apply_overrides(cfg, ["search.epochs=3", "seed=1"], section="search")`` converts each string to
the field's type and refuses unknown keys, a setting given twice and bad values with one paragraph
that lists the valid keys. An unqualified key is looked up in ``section`` first, then in
``experiment``. :func:`config_from_dict` refuses whatever a hand-edited or damaged ``config.json``
holds that this version of the code does not know, naming the file, the section and the setting.
Ranges and finiteness are checked by each section's own ``__post_init__``
(:mod:`instanas_core.config`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from .config import SECTIONS, STAGES, Config, ConfigError, stage_profile_config
from .validation import SEED_MAX, json_kind

__all__ = ["apply_overrides", "override_target", "config_to_dict", "config_from_dict"]

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_NONE = ("none", "null")


def _convert(text: str, hint: Any, key: str) -> Any:
    """``text`` as a value of type ``hint`` (bool, int, float, str, or X | None). Ranges, and
    finiteness of floats, are checked by the section's ``__post_init__``."""
    args = typing.get_args(hint)
    if type(None) in args:
        if text.strip().lower() in _NONE:
            return None
        inner = [a for a in args if a is not type(None)]
        hint = inner[0]
    if hint is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key} expects true or false, got {text!r}.")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            # seeds are where a float spelling (1e23) is most likely; say their range with the form
            span = f" from 0 to {SEED_MAX}" if key.rsplit(".", 1)[-1] in ("seed", "data_seed") else ""
            raise ConfigError(f"{key} expects an integer{span}, written in digits (such as 3), got {text!r}.") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} expects a number, got {text!r}.") from None
    if hint is str:
        return text
    raise ConfigError(f"{key} cannot be set from the command line (type {hint}).")


def _hints(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _valid_keys(cfg: Config, section: str | None) -> str:
    parts = []
    for sec in SECTIONS:
        names = [f.name for f in dataclasses.fields(getattr(cfg, sec))]
        mark = " (may be given unqualified)" if sec in ("experiment", section) else ""
        parts.append(f"{sec}{mark}: {', '.join(names)}")
    return "; ".join(parts)


def override_target(cfg: Config, item: str, section: str | None = None) -> tuple[str, str, str]:
    """The ``(section, field, value text)`` that one ``key=value`` override sets (see
    :func:`apply_overrides` for how an unqualified key is resolved); unknown keys are refused."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value. Valid keys: {_valid_keys(cfg, section)}.")
    key, text = (s.strip() for s in item.split("=", 1))
    if "." in key:
        sec, name = key.split(".", 1)
        if sec not in SECTIONS:
            raise ConfigError(f"unknown section {sec!r} in {item!r}. Valid keys: {_valid_keys(cfg, section)}.")
    else:
        sec, name = None, key
        for candidate in ([section] if section else []) + ["experiment"]:
            if name in {f.name for f in dataclasses.fields(getattr(cfg, candidate))}:
                sec = candidate
                break
        if sec is None:
            raise ConfigError(f"unknown setting {key!r}. Valid keys: {_valid_keys(cfg, section)}.")
    if name not in _hints(getattr(cfg, sec)):
        raise ConfigError(f"unknown setting {sec}.{name!r}. Valid keys: {_valid_keys(cfg, section)}.")
    return sec, name, text


# Fields of the profile section that a stage does not read: stage_profile_config takes them from the
# experiment (the data set's resolution and class count, its width, device and seed). A value given
# for one of them that differs from the experiment's would be silently ignored, so it is refused.
_PROFILE_FROM_EXPERIMENT = ("resolution", "num_classes", "width_mult", "device", "seed")


def _check_profile_overrides(cfg: Config, given: dict[str, Any]) -> None:
    derived = stage_profile_config(cfg)
    info = cfg.experiment.info
    for name in _PROFILE_FROM_EXPERIMENT:
        if name not in given or given[name] == getattr(derived, name):
            continue
        if name == "num_classes":
            raise ConfigError(
                f"profile.num_classes={given[name]!r} does not match the data set: {cfg.experiment.dataset} has "
                f"{info.num_classes} classes, and a run's latency table is profiled for the data set's class count "
                "(the size of the classifier). Leave profile.num_classes out (stages take it from experiment.dataset) "
                f"or choose a data set with {given[name]!r} classes."
            )
        if name == "resolution":
            raise ConfigError(
                f"profile.resolution={given[name]!r} does not match the data set: {cfg.experiment.dataset}'s images "
                f"are {info.resolution} px, and a run's latency table is profiled at the data set's resolution. "
                "Leave profile.resolution out (stages take it from experiment.dataset)."
            )
        raise ConfigError(
            f"profile.{name}={given[name]!r} differs from experiment.{name}={getattr(derived, name)!r}, which stages "
            f"profile with (a profile.{name} of its own would be ignored). Set experiment.{name} instead."
        )


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...], section: str | None = None) -> Config:
    """Apply ``key=value`` strings; ``key`` is ``section.field`` or a bare field of ``section``
    or of ``experiment``. Returns a new Config; values are validated by each section's
    ``__post_init__``. A setting given twice (also once qualified and once not) is refused rather
    than silently taking the last value."""
    if section is not None and section not in STAGES:
        raise ConfigError(f"unknown stage {section!r}; stages: {', '.join(STAGES)}.")
    changes: dict[str, dict[str, Any]] = {}
    given_as: dict[tuple[str, str], str] = {}
    for item in overrides:
        sec, name, text = override_target(cfg, item, section)
        if (sec, name) in given_as:
            raise ConfigError(
                f"{sec}.{name} is set twice ({given_as[sec, name]!r} and {item!r}); give each setting once."
            )
        given_as[sec, name] = item
        changes.setdefault(sec, {})[name] = _convert(text, _hints(getattr(cfg, sec))[name], f"{sec}.{name}")
    new = {}
    for sec, values in changes.items():
        try:
            new[sec] = dataclasses.replace(getattr(cfg, sec), **values)
        except ConfigError:
            raise
        except ValueError as exc:  # ProfileConfig's own checks
            raise ConfigError(str(exc)) from None
    out = dataclasses.replace(cfg, **new)
    if "profile" in changes:
        _check_profile_overrides(out, changes["profile"])
    return out


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# Each section's dataclass, in the order of Config's fields (the order error messages list them in).
_SECTION_KINDS: dict[str, type] = {
    name: kind for name, kind in typing.get_type_hints(Config).items() if name in SECTIONS
}


def config_from_dict(d: Any, source: Any = None) -> Config:
    """Inverse of :func:`config_to_dict`; unknown keys are refused (a config from another
    version of the code should be looked at, not silently half-read).

    ``d`` may be any JSON value (a hand-edited or damaged ``config.json``): whatever is wrong is
    refused with one :class:`ConfigError` that names ``source`` (the file, when given), the section
    and the setting.
    """
    where = f"the configuration {source}" if source is not None else "the saved configuration"
    fix = (
        "Restore the file from a copy, or start from a preset instead (--preset, with --overwrite for a stage folder)."
    )

    def refuse(what: str) -> ConfigError:
        return ConfigError(f"{where} {what}. {fix}")

    if not isinstance(d, dict):
        raise refuse(
            f"is {json_kind(d)}, not a JSON object of sections (a config.json that a stage wrote is an object with "
            f"the keys preset, {', '.join(_SECTION_KINDS)})"
        )
    unknown = [k for k in d if k != "preset" and k not in _SECTION_KINDS]
    if unknown:
        raise refuse(f"has unknown sections {', '.join(map(repr, unknown))} (sections: {', '.join(_SECTION_KINDS)})")
    preset = d.get("preset", "custom")
    if not isinstance(preset, str):
        raise refuse(f"has a preset that is {json_kind(preset)}, not a name")
    sections = {}
    for name, kind in _SECTION_KINDS.items():
        if name not in d:
            continue
        values = d[name]
        if not isinstance(values, dict):
            raise refuse(f"has a section {name!r} that is {json_kind(values)}, not a JSON object of settings")
        fields = [f.name for f in dataclasses.fields(kind)]
        extra = [k for k in values if k not in fields]
        if extra:
            raise refuse(
                f"has settings in section {name!r} that this version of the code does not know: "
                f"{', '.join(map(repr, extra))} (valid: {', '.join(fields)})"
            )
        try:
            sections[name] = kind(**values)
        except (ValueError, TypeError) as exc:  # the section's own checks (ProfileConfig raises ValueError)
            raise refuse(f"has a bad value in section {name!r}: {str(exc).rstrip('.')}") from None
    return Config(preset=preset, **sections)
