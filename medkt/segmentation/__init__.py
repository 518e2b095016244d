"""Zero-shot segmentation: M2IB saliency → post-processing → SAM prompts → masks.

The user-facing function is :func:`medkt.segment` (``medkt segment`` on the command line); this
package holds the stages behind it.

Modules: :mod:`~medkt.segmentation.m2ib` (bottleneck + optimisation),
:mod:`~medkt.segmentation.saliency` (geometry, batching), :mod:`~medkt.segmentation.postprocess`,
:mod:`~medkt.segmentation.prompts`, :mod:`~medkt.segmentation.sam_segmenter`,
:mod:`~medkt.segmentation.pipeline` (configs, :class:`Segmenter`), :mod:`~medkt.segmentation.api`
(files, volumes, outputs), :mod:`~medkt.segmentation.finetuned` (Knowledge-Transfer weights for the
saliency model) and :mod:`~medkt.segmentation.diagnostics`.  Names are imported
lazily, so importing the package does not import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {
    "segment": "api", "SegmentResult": "api", "CaseOutput": "api",
    "SegmentConfig": "pipeline", "Segmenter": "pipeline", "load_segment_config": "pipeline",
    "M2IBConfig": "m2ib", "m2ib_visual": "m2ib", "m2ib_text": "m2ib",
    "SaliencyEngine": "saliency", "SquareGeometry": "saliency",
    "PostprocessConfig": "postprocess",
    "PromptConfig": "prompts", "Prompts": "prompts", "make_prompts": "prompts",
    "SamConfig": "sam_segmenter", "SamSegmenter": "sam_segmenter",
    "prompt_sensitivity": "diagnostics",
    "FinetunedWeights": "finetuned", "resolve_finetuned": "finetuned",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from medkt.segmentation.api import CaseOutput, SegmentResult, segment
    from medkt.segmentation.diagnostics import prompt_sensitivity
    from medkt.segmentation.finetuned import FinetunedWeights, resolve_finetuned
    from medkt.segmentation.m2ib import M2IBConfig, m2ib_text, m2ib_visual
    from medkt.segmentation.pipeline import SegmentConfig, Segmenter, load_segment_config
    from medkt.segmentation.postprocess import PostprocessConfig
    from medkt.segmentation.prompts import PromptConfig, Prompts, make_prompts
    from medkt.segmentation.saliency import SaliencyEngine, SquareGeometry
    from medkt.segmentation.sam_segmenter import SamConfig, SamSegmenter
