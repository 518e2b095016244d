"""Pieces shared by the benchmark pipelines: block results, image batches (templates: medkt.evaluation)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np



@dataclass
class BlockResult:
    """What a worker returns for one block of cases.

    ``rows``: one dict per case (JSON-serialisable, in case order); ``arrays``: arrays
    stacked over the block's cases (or captions), concatenated in block order at merge;
    ``case_arrays``: per-case arrays saved next to the block (saliency maps, masks).
    """

    rows: list[dict]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    case_arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class UnitResult:
    """A finished evaluation unit after the merge: per-case rows and set-level metrics."""

    rows: list[dict]
    metrics: dict


def read_cases(dataset, cases, with_mask: bool = False) -> tuple[list, dict[str, str]]:
    """Read each case's image (and mask); a case that cannot be read is reported, not fatal.

    Returns ``([(case, image, mask_or_None), ...] for readable cases, {case_id: reason})``.
    """
    from medkt.errors import MedktError
    ok, failed = [], {}
    for c in cases:
        try:
            ok.append((c, dataset.image(c), dataset.mask(c) if with_mask else None))
        except MedktError as e:
            failed[c.case_id] = e.format()
    return ok, failed


def failed_row(case, reason: str, **extra) -> dict:
    return {"case_id": case.case_id, "status": "failed", "reason": reason, **extra}


def image_batch(model, dataset, cases, mode: str = "center_crop"):
    """Preprocessed ``[B, C, S, S]`` tensor of the cases' images on the model's device."""
    import torch
    return torch.stack([model.preprocess(dataset.image(c), mode) for c in cases]).to(model.device)


# Prompt templates, the scorer choice and ITM scoring live with the one zero-shot classifier
# (medkt.evaluation); these names stay importable from here.
from medkt.evaluation.prompts import TEMPLATE_SETS, resolve_templates  # noqa: E402,F401


def scorer_for(model, requested: str) -> str:
    """``similarity`` for dual encoders, ``itm`` for match-score models (``auto`` picks)."""
    from medkt.evaluation.classifier import scorer_for as _f
    return _f(model, requested)


def itm_scores(model, pixels, texts, batch: int = 64):
    """ITM logits ``[B, T]`` of every image against every text (:func:`medkt.evaluation.classifier.itm_scores`)."""
    from medkt.evaluation.classifier import itm_scores as _f
    return _f(model, pixels, texts, batch)


def percent(x) -> float | None:
    return None if x is None else 100.0 * float(x)
