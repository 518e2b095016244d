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
    if tp in (str, int, float, bool) and isinstance(value, (list, tuple, dict, set)):
        raise ConfigError(f"'{where}' must be a single {tp.__name__}, got a {type(value).__name__}.",
                          hint="write one value, not a list or mapping")
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"'{where}' must be a string, got {type(value).__name__}.")
        if isinstance(value, str) and len(value) > MAX_CONFIG_STRING:
            raise ConfigError(f"'{where}' is {len(value):,} characters long (at most {MAX_CONFIG_STRING:,}).")
        return value
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
            raise UnknownNameError(f"config key in {cls.__name__}", prefix + str(key),
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
        return safe_load_bounded(text, where="--set value")
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


# ----------------------------------------------------------------------------- bounded YAML
#: Largest YAML file medkt reads (configs and concept files are a few kB).
MAX_YAML_BYTES = 4 * 2**20
#: Largest number of nodes a YAML document may have once its aliases are expanded (alias-bomb guard).
MAX_YAML_NODES = 200_000
#: Deepest nesting of a YAML document.
MAX_YAML_DEPTH = 64
#: Longest string value a config field may hold.
MAX_CONFIG_STRING = 100_000


def _expanded_nodes(root, where: str) -> int:
    """Node count of ``root`` with every alias expanded (memoised: linear in the composed graph).

    Raises:
        ConfigError: the expansion exceeds :data:`MAX_YAML_NODES` (e.g. a "billion laughs" alias
            bomb), nests deeper than :data:`MAX_YAML_DEPTH`, or an alias refers to itself.
    """
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(node, depth: int) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"the YAML nests deeper than {MAX_YAML_DEPTH} levels.", path=where,
                              hint="flatten the file; medkt configs are a few levels deep")
        if key in active:
            raise ConfigError("the YAML has a recursive alias (an anchor that contains itself).", path=where,
                              hint="remove the '*alias' inside its own '&anchor'")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [c for kv in node.value for c in kv]
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_YAML_NODES:
                raise ConfigError(f"the YAML expands to more than {MAX_YAML_NODES:,} values once its aliases "
                                  "(*name) are expanded; refusing it (YAML alias bomb).", path=where,
                                  hint="write the values out instead of nesting aliases")
        active.discard(key)
        memo[key] = total
        return total

    return size(root, 0)


def safe_load_bounded(text: str, *, where: str = "YAML") -> Any:
    """``yaml.safe_load`` with bounds: at most :data:`MAX_YAML_BYTES` characters, and at most
    :data:`MAX_YAML_NODES` nodes after alias expansion (checked on the composed graph, before any
    Python object is built), nesting at most :data:`MAX_YAML_DEPTH` deep.

    Raises:
        ConfigError: a bound is exceeded.  ``yaml.YAMLError`` for a syntax error.
    """
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"the YAML is {len(text):,} characters long, more than the {MAX_YAML_BYTES:,} medkt "
                          "reads.", path=where, hint="configs and concept files are a few kB; check the file")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"the YAML nests too deeply (more than {MAX_YAML_DEPTH} levels).", path=where,
                              hint="flatten the file") from None
        if node is None:
            return None
        _expanded_nodes(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping from ``path`` with the bounds of :func:`safe_load_bounded`.

    Raises:
        ConfigError: missing or unreadable file, invalid or oversized YAML, alias bomb, or a top
            level that is not a mapping.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError("config file not found.", path=str(path), hint="check the path")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"the file is {size:,} bytes, more than the {MAX_YAML_BYTES:,} medkt reads as YAML.",
                              path=str(path), hint="configs and concept files are a few kB; check the path")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the file ({type(e).__name__}: {e}).", path=str(path)) from None
    try:
        data = safe_load_bounded(text, where=str(path)) or {}
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
