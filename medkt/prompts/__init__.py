"""Prompt data: class prompt vocabularies and generators, below every stage package.

* :mod:`medkt.prompts.chexpert` — MedCLIP's CheXpert class prompts
  (:func:`generate_chexpert_class_prompts`).

Pure data and string functions: importing them loads no model code and no torch, so any
layer (models, transfer, bench, worlds) may use them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {"CHEXPERT_CLASS_PROMPTS": "chexpert", "CHEXPERT_COMPETITION_TASKS": "chexpert",
            "class_prompt_combinations": "chexpert", "generate_chexpert_class_prompts": "chexpert"}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from medkt.prompts.chexpert import (CHEXPERT_CLASS_PROMPTS, CHEXPERT_COMPETITION_TASKS,  # noqa: F401
                                        class_prompt_combinations, generate_chexpert_class_prompts)
