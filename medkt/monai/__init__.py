"""MONAI-native medkt: the zero-shot segmentation stages as MONAI dictionary transforms.

``from medkt.monai import M2IBSaliencyd, CoarseMaskd, SamPromptsd, SamSegmentd, MedktPrepared,
segment_transforms`` (see :mod:`medkt.monai.transforms` and ``docs/monai.md``).  Importing
``medkt`` does not import this package (nor MONAI); its names load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {name: "transforms" for name in (
    "MedktPrepared", "M2IBSaliencyd", "CoarseMaskd", "SamPromptsd", "SamSegmentd", "SlicePrompts",
    "segment_transforms", "to_volume")}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from medkt.monai.transforms import (CoarseMaskd, M2IBSaliencyd, MedktPrepared, SamPromptsd, SamSegmentd,
                                        SlicePrompts, segment_transforms, to_volume)
