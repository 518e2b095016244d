"""Weakly supervised refinement: a MONAI 2-D network trained on ``medkt segment``'s pseudo-labels.

``medkt.refine(IMAGES, PSEUDO_MASKS, "model/")`` (``medkt refine``) trains it,
``medkt.segment(..., refiner="model/")`` (``medkt segment --refiner``) applies it, and
``export_nnunet`` (``medkt refine --export-nnunet``) writes the nnU-Net v2 raw dataset for the
original stage.  Modules: :mod:`~medkt.refinement.config`, :mod:`~medkt.refinement.data`,
:mod:`~medkt.refinement.model`, :mod:`~medkt.refinement.train`, :mod:`~medkt.refinement.nnunet`.
Names load lazily (no torch or MONAI on ``import medkt.refinement``).  See ``docs/refine.md``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {
    "refine": "train", "RefineResult": "train",
    "RefineConfig": "config", "load_refine_config": "config",
    "Refiner": "model", "build_network": "model",
    "export_nnunet": "nnunet",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from medkt.refinement.config import RefineConfig, load_refine_config
    from medkt.refinement.model import Refiner, build_network
    from medkt.refinement.nnunet import export_nnunet
    from medkt.refinement.train import RefineResult, refine
