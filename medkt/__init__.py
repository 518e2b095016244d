"""medkt: Knowledge Transfer for vision-language models and zero-shot medical segmentation.

The top-level API is imported lazily so that ``import medkt`` stays fast:

* :func:`medkt.create_model` — named models (``medkt models`` lists them);
* :func:`medkt.from_open_clip`, :func:`medkt.from_hf` — wrap in-memory models;
* :mod:`medkt.transfer` — inversion + fine-tuning (``medkt transfer``);
* :func:`medkt.segment` — M2IB → SAM zero-shot segmentation (``medkt segment``);
* :func:`medkt.refine` — a MONAI network trained on those masks (``medkt refine``);
* :mod:`medkt.monai` — the segmentation stages as MONAI dictionary transforms;
* :mod:`medkt.metrics` — DSC / NSD / IoU, classification, retrieval, captioning.
"""
from __future__ import annotations

import os as _os

# OpenMP threads that spin while waiting make small-tensor torch code 20-80x slower whenever
# another process shares the cores (measured on a 2-core machine: 20 inversion steps of
# tiny-clip took 0.46-0.50 s with passive waiting, 11.9-38.9 s with the default spin).
# Takes effect only when medkt is imported before torch; set OMP_WAIT_POLICY to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from medkt._lazy import lazy_exports  # noqa: E402

_LAZY = {
    "create_model": "medkt.models",
    "list_models": "medkt.models",
    "from_open_clip": "medkt.models",
    "from_hf": "medkt.models",
    "segment": "medkt.segmentation.api",
    "refine": "medkt.refinement.train",
    "evaluate": "medkt.metrics.evaluate",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
