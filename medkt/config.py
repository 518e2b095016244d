"""Dataclass configs loaded from YAML, with dotted overrides.

Every tunable part of medkt is a ``@dataclass`` whose defaults are the documented
defaults.  :func:`load_config` builds one from a YAML file (or dict), rejecting unknown
keys with close-match suggestions, and :func:`apply_overrides` applies CLI overrides
such as ``["inversion.steps=200", "finetune.lr=2e-5"]``.  :func:`to_dict` gives the
resolved config that is written into every ``run.json``.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from medkt.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _coerce(value: Any, tp, where: str):
    tp = _unwrap_optional(tp)
    if value is None:
        return None
    if _is_dataclass_type(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {type(value).__name__}.")
        return from_dict(tp, value, prefix=where + ".")
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}.")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"'{where}' must be a number, got {value!r}.") from None
    if tp is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"'{where}' must be an integer, got {value!r}.") from None
    if tp is bool and isinstance(value, str):
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"'{where}' must be true/false, got {value!r}.")
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`UnknownNameError`."""
    types = _field_types(cls)
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in types:
            raise UnknownNameError(f"config key in {cls.__name__}", prefix + key,
                                   [prefix + k for k in types])
        kwargs[key] = _coerce(value, types[key], prefix + key)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    """Plain-dict view of a (nested) dataclass config, suitable for YAML/JSON."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v
    return conv(cfg)


def _parse_scalar(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: T, overrides: list[str] | None) -> T:
    """Return a copy of ``cfg`` with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    if not overrides:
        return cfg
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value.",
                              hint="write e.g. --set inversion.steps=200")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise UnknownNameError("config section", key, list(_flat_keys(data)))
            node = node[p]
        if parts[-1] not in node:
            raise UnknownNameError("config key", key, list(_flat_keys(data)))
        node[parts[-1]] = _parse_scalar(value)
    return from_dict(type(cfg), data)


def _flat_keys(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat_keys(v, prefix + k + ".")
        else:
            yield prefix + k


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError("config file not found.", path=str(path), hint="check the path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping.", path=str(path))
    return data


def load_config(cls: type[T], source: str | Path | dict | None = None,
                overrides: list[str] | None = None) -> T:
    """Build config ``cls`` from a YAML path, a dict, or defaults (``None``), then apply overrides."""
    if source is None:
        cfg = cls()
    elif isinstance(source, dict):
        cfg = from_dict(cls, source)
    else:
        try:
            cfg = from_dict(cls, load_yaml(source))
        except ConfigError as e:
            if e.path is None:
                e.path = str(source)
                e.args = (e.format(),)
            raise
    return apply_overrides(cfg, overrides)
