"""Loss functions of the engine, as small named registries.

Inversion objectives (``InversionConfig.objective``), per-sample losses ``[M]`` on image
features ``[M, D]`` vs text features ``[M, D]``:

* ``cosine`` — ``1 - cos`` (the paper's "sim", default);
* ``l2_normalized`` — ``||n(f) - n(t)||`` = ``sqrt(2 - 2 cos)`` (Kazemi et al.);
* ``l2_raw`` — ``||f - t||`` on un-normalised embeddings (the author's BiomedCLIP script);
* ``itm`` — ViLT: ``BCEWithLogits(match_score, 1)`` (handled in inversion.py).

Fine-tuning contrastive losses (``FinetuneConfig.loss`` / ``contrastive``):

* ``supcon`` (default) — the author's formulation: image and text features concatenated
  into ``2B`` rows, logits ``f fᵀ / T`` (T = 0.07 fixed), self-pairs excluded, image i's
  positive is its own caption copy (and vice versa).  With one concept per batch the
  other images and the other (identical) caption copies are negatives, so the images
  receive a real gradient.
* ``clip`` — CLIP's symmetric InfoNCE with the model's ``logit_scale``.  **Degenerate**
  when all captions in the batch are equal: the image→text half is exactly constant
  (every row holds B equal logits, zero gradient), and the text→image half's image
  gradients sum to zero over the batch (it reshuffles similarity, it cannot raise it).
  Kept only to reproduce that failure.
* ``clip_bank`` — image→text InfoNCE over the batch's distinct captions plus a caption
  bank (captions of the other concepts + ``negative_captions``); needs ≥ 1 negative.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from medkt.errors import ConfigError


# ---------------------------------------------------------------------- inversion objectives
def _cosine(f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(f, t, dim=-1)


def _l2_normalized(f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (F.normalize(f, dim=-1) - F.normalize(t, dim=-1)).norm(dim=-1)


def _l2_raw(f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (f - t).norm(dim=-1)


INVERSION_OBJECTIVES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": _cosine,
    "l2_normalized": _l2_normalized,
    "l2_raw": _l2_raw,
}
RAW_FEATURE_OBJECTIVES = {"l2_raw"}  # objectives that need un-normalised embeddings


# ---------------------------------------------------------------------- contrastive losses
def supcon_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """The author's SupCon-style loss on ``[B, D]`` image and caption features.

    ``f = normalize(cat[img; txt])`` (``2B`` rows); logits ``f fᵀ / T`` with the diagonal
    removed; row ``i`` (image i) has its positive at ``B + i`` (caption i), row ``B + i``
    at ``i``.  Mean cross-entropy over the ``2B`` rows.
    """
    b = img.shape[0]
    f = F.normalize(torch.cat([img, txt], dim=0), dim=-1)
    logits = f @ f.t() / temperature
    eye = torch.eye(2 * b, dtype=torch.bool, device=f.device)
    logits = logits.masked_fill(eye, float("-inf"))
    idx = torch.arange(b, device=f.device)
    target = torch.cat([idx + b, idx])
    return F.cross_entropy(logits, target)


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE on aligned ``[B, D]`` pairs (degenerate for equal captions)."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale * img @ txt.t()
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def clip_bank_loss(img: torch.Tensor, caption_feats: torch.Tensor, target: torch.Tensor,
                   logit_scale: torch.Tensor) -> torch.Tensor:
    """Image→text InfoNCE of ``img`` ``[B, D]`` over ``caption_feats`` ``[K, D]`` (true index ``target``)."""
    if caption_feats.shape[0] < 2:
        raise ConfigError("finetune.loss=clip_bank needs at least one negative caption, but the batch "
                          "holds one caption and the bank is empty.",
                          hint="learn several concepts together, set finetune.negative_captions, "
                               "or use finetune.loss=supcon")
    logits = logit_scale * F.normalize(img, dim=-1) @ F.normalize(caption_feats, dim=-1).t()
    return F.cross_entropy(logits, target)


CONTRASTIVE_LOSSES = ("supcon", "clip", "clip_bank")
