"""Model layer: one :class:`VisionLanguageModel` interface over every family, and a registry.

``create_model(spec)`` takes a registered name, ``local-dir:PATH``, ``hf-hub:ORG/NAME``, an
open_clip ``ARCH/TAG`` or a checkpoint file (:mod:`medkt.models.specs`); the model carries
``model.spec``, and :func:`weights_fingerprint` hashes its weights.  Names are imported
lazily: ``import medkt.models`` loads no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {
    "VisionLanguageModel": "base", "VisualLayout": "base",
    "create_model": "registry", "get_spec": "registry", "list_models": "registry", "register_model": "registry",
    "ModelSpec": "registry", "parse_spec": "specs", "describe_spec": "describe",
    "weights_fingerprint": "checkpoints", "from_open_clip": "open_clip_adapter", "from_hf": "hf_adapter",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # static tools see the real names
    from medkt.models.base import VisionLanguageModel, VisualLayout  # noqa: F401
    from medkt.models.checkpoints import weights_fingerprint  # noqa: F401
    from medkt.models.describe import describe_spec  # noqa: F401
    from medkt.models.hf_adapter import from_hf  # noqa: F401
    from medkt.models.open_clip_adapter import from_open_clip  # noqa: F401
    from medkt.models.registry import ModelSpec, create_model, get_spec, list_models, register_model  # noqa: F401
    from medkt.models.specs import parse_spec  # noqa: F401
