"""Evaluation of vision-language models: prompts, the zero-shot classifier, ``medkt zeroshot``.

* :mod:`medkt.evaluation.prompts` — class prompts (``{a}`` article-aware templates),
  named template sets, each model's default set;
* :mod:`medkt.evaluation.classifier` — the one zero-shot classifier used by
  ``medkt zeroshot``, ``medkt bench`` and the worlds;
* :func:`zeroshot` — the report of ``medkt zeroshot`` (base model and every fine-tune of
  a transfer run: target accuracy, forgetting, other→target, ``--max-forgetting``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {
    "zeroshot": "report", "select_lr": "report",
    "format_report": "display", "plot_report": "display",
    "ZeroShotClassifier": "classifier", "build_classifier": "classifier", "image_features": "classifier",
    "prepare_images": "classifier", "text_embeddings": "classifier",
    "class_prompt": "prompts", "class_prompts": "prompts", "resolve_templates": "prompts",
    "default_template_set": "prompts", "TEMPLATE_SETS": "prompts", "CLASS_PROMPT": "prompts",
    "load_image_folder": "imagesets", "load_class_folders": "imagesets",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # static tools see the real names
    from medkt.evaluation.classifier import (ZeroShotClassifier, build_classifier, image_features,  # noqa: F401
                                             prepare_images, text_embeddings)
    from medkt.evaluation.display import format_report, plot_report  # noqa: F401
    from medkt.evaluation.imagesets import load_class_folders, load_image_folder  # noqa: F401
    from medkt.evaluation.prompts import (CLASS_PROMPT, TEMPLATE_SETS, class_prompt, class_prompts,  # noqa: F401
                                          default_template_set, resolve_templates)
    from medkt.evaluation.report import select_lr, zeroshot  # noqa: F401
