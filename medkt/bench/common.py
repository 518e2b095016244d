"""Pieces shared by the benchmark pipelines: block results, image batches, prompt templates."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medkt.errors import ConfigError


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


# ---------------------------------------------------------------------- templates
def _openai_imagenet() -> list[str]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]


def _simple_imagenet() -> list[str]:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES
    return [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES]


TEMPLATE_SETS = {
    "openai_imagenet": _openai_imagenet,  # CLIP's 80 ImageNet prompts (prompt ensembling)
    "simple_imagenet": _simple_imagenet,  # CLIP's 7-prompt subset
    "photo": lambda: ["a photo of a {}."],
    "name": lambda: ["{}"],
    "cxr": lambda: ["a chest x-ray showing {}.", "a chest radiograph with {}.", "{} on a chest x-ray."],
    "medical": lambda: ["a medical image showing {}.", "an image of {}."],
}


def resolve_templates(spec: Sequence[str]) -> list[str]:
    """Template set names and/or literal templates containing ``{}`` → list of templates."""
    out: list[str] = []
    for item in spec:
        if item in TEMPLATE_SETS:
            out += TEMPLATE_SETS[item]()
        elif "{}" in item:
            out.append(item)
        else:
            raise ConfigError(f"template '{item}' is neither a template set nor contains '{{}}'.",
                              hint=f"template sets: {', '.join(sorted(TEMPLATE_SETS))}")
    if not out:
        raise ConfigError("at least one prompt template is needed.")
    return list(dict.fromkeys(out))


def scorer_for(model, requested: str) -> str:
    """``similarity`` for dual encoders, ``itm`` for match-score models (``auto`` picks)."""
    from medkt.models.base import CONTRASTIVE, ITM
    if requested == "auto":
        return "similarity" if model.supports(CONTRASTIVE) else "itm"
    model.require(CONTRASTIVE if requested == "similarity" else ITM)
    return requested


def itm_scores(model, pixels, texts: Sequence[str], batch: int = 64):
    """ITM logits ``[B, T]`` of every image in ``pixels`` against every text (pairs in chunks)."""
    import torch
    from medkt.models.base import to_device
    b, t = pixels.shape[0], len(texts)
    out = torch.empty(b, t)
    tokens = model.tokenize(list(texts))
    pairs = [(i, j) for i in range(b) for j in range(t)]
    with torch.no_grad():
        for s in range(0, len(pairs), batch):
            chunk = pairs[s:s + batch]
            ii = torch.tensor([p[0] for p in chunk])
            jj = torch.tensor([p[1] for p in chunk])
            tok = {k: (v[jj] if torch.is_tensor(v) else v) for k, v in tokens.items()}
            scores = model.match_score(pixels[ii.to(pixels.device)], to_device(tok, model.device))
            out[ii, jj] = scores.float().cpu()
    return out


def percent(x) -> float | None:
    return None if x is None else 100.0 * float(x)
