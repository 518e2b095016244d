"""Registry of named models.

Each :class:`ModelSpec` says which family builds the model, where its weights come from,
and how to build it.  Real models (``clip-vit-b32``, ``biomedclip``...) need weights that
are downloaded once (``medkt weights download NAME``) or passed as a local path; tiny
random-init models (``tiny-clip``...) build offline in well under a second and exist
for tests and demos.  Families register their models by importing this module and
calling :func:`register_model` (see the bottom of each adapter module list below).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from medkt.errors import UnknownNameError


@dataclass
class ModelSpec:
    """A named model: family, weight source and builder.

    ``builder(spec, weights, device)`` returns the model; ``weights`` is a local path
    given by the user (``--weights``) or ``None`` (use the cache / tiny random init).
    """

    name: str
    family: str
    builder: Callable
    description: str = ""
    source: str = ""  # e.g. "open_clip ViT-B-32-quickgelu / openai", "hf-hub:microsoft/..."
    tiny: bool = False
    kind: str = "vlm"  # "vlm" or "sam"
    files: list = field(default_factory=list)  # [{"repo": ..., "filename": ..., "sha256": ...}]
    options: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}
# Modules whose import registers models; imported lazily on first registry access.
_PROVIDERS = ["medkt.models.zoo", "medkt.models.world_models"]
_LOADED = False


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"model '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _load_providers() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in _PROVIDERS:
        importlib.import_module(mod)


def list_models(kind: str | None = None) -> list[ModelSpec]:
    _load_providers()
    return [s for s in _REGISTRY.values() if kind is None or s.kind == kind]


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered model name (not a spec such as ``hf-hub:...``)."""
    _load_providers()
    return name in _REGISTRY


def get_spec(name: str) -> ModelSpec:
    _load_providers()
    if name not in _REGISTRY:
        raise UnknownNameError("model", name, _REGISTRY.keys(), hint="run `medkt models` to list models")
    return _REGISTRY[name]


def create_model(spec: str, *, weights: str | None = None, device: str = "cpu"):
    """Build a model from a spec (see :mod:`medkt.models.specs`): a registered name,
    ``local-dir:PATH``, ``hf-hub:ORG/NAME[@REV]``, an open_clip ``ARCH/TAG`` or a checkpoint
    file.  ``weights``: optional local file/folder for a registered name or an open_clip ``ARCH``.

    The model carries ``model.spec`` (the canonical spec string) and ``model.weights`` (a
    human-readable weight source); :func:`medkt.models.weights_fingerprint` hashes its weights.
    """
    from medkt.models.specs import build_from_spec, parse_spec
    parsed = parse_spec(spec)
    if parsed.kind == "registry":
        reg = _REGISTRY[parsed.name]
        model = reg.builder(reg, weights, device)
    else:
        if weights and parsed.kind != "open_clip":
            from medkt.errors import ConfigError
            raise ConfigError(f"--weights cannot be combined with the model spec '{parsed.text}' (it names its "
                              "weights already).", hint="drop --weights, or use --model NAME --weights PATH")
        model = build_from_spec(parsed, weights, device)
    model.spec = parsed.text
    return model
