"""Zero-shot segmentation: M2IB saliency → post-processing → SAM prompts → masks.

``medkt.segment`` is both this package and the API function: the package module is
callable, so ``medkt.segment(...)``, ``from medkt import segment; segment(...)`` and
``from medkt.segment import segment`` all call :func:`medkt.segment.api.segment`,
whichever was imported first.

Modules: :mod:`~medkt.segment.m2ib` (bottleneck + optimisation),
:mod:`~medkt.segment.saliency` (geometry, batching), :mod:`~medkt.segment.postprocess`,
:mod:`~medkt.segment.prompts`, :mod:`~medkt.segment.sam_segmenter`,
:mod:`~medkt.segment.pipeline` (configs, :class:`Segmenter`), :mod:`~medkt.segment.api`
(files, volumes, outputs) and :mod:`~medkt.segment.diagnostics`.  Names are imported
lazily, so importing the package does not import torch.
"""
from __future__ import annotations

import importlib
import sys
import types

_LAZY = {
    "segment": "api", "SegmentResult": "api", "CaseOutput": "api",
    "SegmentConfig": "pipeline", "Segmenter": "pipeline", "load_segment_config": "pipeline",
    "M2IBConfig": "m2ib", "m2ib_visual": "m2ib", "m2ib_text": "m2ib",
    "SaliencyEngine": "saliency", "SquareGeometry": "saliency",
    "PostprocessConfig": "postprocess",
    "PromptConfig": "prompts", "Prompts": "prompts", "make_prompts": "prompts",
    "SamConfig": "sam_segmenter", "SamSegmenter": "sam_segmenter",
    "prompt_sensitivity": "diagnostics",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"medkt.segment.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'medkt.segment' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + __all__)


class _CallableModule(types.ModuleType):
    """Module type whose instances forward calls to :func:`medkt.segment.api.segment`."""

    def __call__(self, *args, **kwargs):
        from medkt.segment.api import segment as _segment
        return _segment(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
