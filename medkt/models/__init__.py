"""Model layer: one :class:`VisionLanguageModel` interface over every family, and a registry."""
from medkt.models.base import VisionLanguageModel, VisualLayout
from medkt.models.registry import create_model, get_spec, list_models, register_model

__all__ = ["VisionLanguageModel", "VisualLayout", "create_model", "get_spec", "list_models",
           "register_model", "from_open_clip", "from_hf"]


def from_open_clip(model, tokenizer, preprocess=None, **kw):
    from medkt.models.open_clip_adapter import from_open_clip as _f
    return _f(model, tokenizer, preprocess, **kw)


def from_hf(model, processor, **kw):
    from medkt.models.hf_adapter import from_hf as _f
    return _f(model, processor, **kw)
