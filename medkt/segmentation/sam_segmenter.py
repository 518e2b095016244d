"""Prompted SAM / MedSAM segmentation with one image embedding per image.

:class:`SamSegmenter` wraps a ``kind="sam"`` model from :func:`medkt.models.create_model`
(``sam-vit-b/l/h``, ``medsam``, ``tiny-sam``, ``tiny-medsam``).  The model wrapper owns the
variant-specific preprocessing: SAM resizes the longest side and applies its mean/std,
MedSAM resizes to a square and min-max scales to [0, 1] (no mean/std).  Here:

* :meth:`SamSegmenter.embed` encodes images in batches (``embed_batch_size``, across the
  slices of a volume) and keeps each embedding; every prompt of an image is decoded from
  that one embedding, all prompts of an image in one decoder call.  ``amp="bf16"`` runs the
  image encoder under ``torch.autocast(bfloat16)`` (the embeddings are returned in float32).
* Multimask fusion (``multimask=True``, 3 candidates per prompt) by ``select``:
  ``iou`` (highest predicted IoU), ``average`` (mean of the binary candidates, > 0.5),
  ``mrm`` (IoU-score-weighted sum, min-max, > 0.5) or ``staple`` (binary STAPLE EM,
  posterior > 0.5).  MedCLIP-SAMv2 fused along the prompt axis for box prompts by
  mistake; here fusion is always over the candidates of one prompt.
* Prompts of one image are OR-ed (MedCLIP-SAMv2 sums and clips), then, with
  ``keep_components``, only the N largest components survive (N = number of coarse
  components, as MedCLIP-SAMv2 does).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch

from medkt.errors import ConfigError, look_up
from medkt.models.memory import trim_heap
from medkt.models.sam_encoder import ATTENTION_MODES
from medkt.segmentation.m2ib import autocast
from medkt.segmentation.postprocess import keep_top_k
from medkt.segmentation.prompts import Prompts

log = logging.getLogger("medkt.segmentation")


@dataclass
class SamConfig:
    """SAM stage settings (defaults = MedCLIP-SAMv2 apart from the model: single mask)."""

    model: str = "sam-vit-b"
    weights: str | None = None
    multimask: bool = False
    select: str = "iou"
    keep_components: bool = True
    embed_batch_size: int | None = None  # None: 1 on the CPU, 8 on a GPU (see embed_batch)
    amp: str = "none"
    attention: str = "chunked"  # chunked: same maths, chunked queries on CPU (models/sam_encoder.py); stock

    def validate(self) -> "SamConfig":
        look_up("multimask selection", self.select, SELECTORS)
        look_up("sam.amp", self.amp, {"none": "none", "bf16": "bf16"})
        look_up("sam.attention", self.attention, {m: m for m in ATTENTION_MODES})
        if self.embed_batch_size is not None and self.embed_batch_size < 1:
            raise ConfigError("sam.embed_batch_size must be ≥ 1.")
        return self


# ---------------------------------------------------------------------- candidate fusion
def _select_iou(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return masks[int(np.argmax(scores))].astype(np.float32)


def _select_average(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return masks.astype(np.float32).mean(axis=0)


def _select_mrm(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    s = (masks.astype(np.float32) * scores[:, None, None]).sum(axis=0)
    lo, hi = float(s.min()), float(s.max())
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def staple(masks: np.ndarray, iters: int = 30, tol: float = 1e-6) -> np.ndarray:
    """Binary STAPLE (Warfield et al. 2004): ``[K, H, W]`` bool → posterior ``[H, W]`` in [0, 1]."""
    d = masks.reshape(masks.shape[0], -1).astype(np.float64)
    w = d.mean(axis=0)
    p = np.full(d.shape[0], 0.99)
    q = np.full(d.shape[0], 0.99)
    eps = 1e-10
    for _ in range(iters):
        f = np.clip(w.mean(), eps, 1 - eps)
        la = np.log(f) + (d * np.log(p[:, None] + eps) + (1 - d) * np.log(1 - p[:, None] + eps)).sum(0)
        lb = np.log(1 - f) + ((1 - d) * np.log(q[:, None] + eps) + d * np.log(1 - q[:, None] + eps)).sum(0)
        w_new = 1.0 / (1.0 + np.exp(np.clip(lb - la, -50, 50)))
        p = (w_new * d).sum(1) / max(w_new.sum(), eps)
        q = ((1 - w_new) * (1 - d)).sum(1) / max((1 - w_new).sum(), eps)
        done = np.abs(w_new - w).max() < tol
        w = w_new
        if done:
            break
    return w.reshape(masks.shape[1:]).astype(np.float32)


def _select_staple(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return staple(masks)


SELECTORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "iou": _select_iou, "average": _select_average, "mrm": _select_mrm, "staple": _select_staple}


# ---------------------------------------------------------------------- segmenter
@dataclass
class Embedded:
    """An image ready for decoding: prepared geometry plus its embedding ``[1, C, g, g]``."""

    prep: object
    embedding: torch.Tensor


@dataclass
class SamOutput:
    """SAM result for one image: ``mask`` ``H×W`` bool (``None`` when skipped), per-prompt
    chosen ``scores`` (predicted IoU), ``status`` from the prompts."""

    mask: np.ndarray | None
    scores: list[float] = field(default_factory=list)
    status: str = "ok"


class SamSegmenter:
    """Prompted segmentation over a SAM-kind model (see module docstring)."""

    def __init__(self, model, cfg: SamConfig | None = None):
        self.model = model
        self.cfg = (cfg or SamConfig()).validate()
        self.encoder_calls = 0  # number of images encoded (embedding reuse is observable)

    @classmethod
    def from_name(cls, cfg: SamConfig, device: str = "cpu") -> "SamSegmenter":
        from medkt.models import create_model
        return cls(create_model(cfg.model, weights=cfg.weights, device=device), cfg)

    def embed_batch(self) -> int:
        """Images per encoder call: ``sam.embed_batch_size``, or by default 1 on the CPU and 8 on a GPU.

        On the CPU batching gains nothing (a 4096-token ViT is compute-bound) and costs memory:
        in a global-attention block each 1024² image has 12 heads × 4096² float32 scores
        (805 MB), about three such tensors alive at once (measured: peak RSS 7.0 GiB encoding
        2 slices at once with the BiomedCLIP + ViT-B surrogates loaded, ≈1.5 GB of it weights).
        """
        if self.cfg.embed_batch_size is not None:
            return int(self.cfg.embed_batch_size)
        return 1 if self.model.device.type == "cpu" else 8

    @torch.no_grad()
    def embed(self, images: Sequence, *, attention: str | None = None) -> list[Embedded]:
        """Encode images (``H×W`` / ``H×W×C`` arrays, see :mod:`medkt.models.sam`) in batches.

        ``attention`` overrides ``sam.attention`` (``"chunked"`` / ``"stock"``) for this call.
        """
        out: list[Embedded] = []
        bs = self.embed_batch()
        for start in range(0, len(images), bs):
            preps = [self.model.prepare_image(im) for im in images[start:start + bs]]
            pixels = torch.cat([p.pixels for p in preps])
            trim_heap()  # the resize's temporaries: return them before the encoder's peak
            with autocast(pixels.device, self.cfg.amp):  # bf16 encoder; decoding stays float32
                emb = self.model.embed(pixels, attention=attention or self.cfg.attention).float()
            self.encoder_calls += len(preps)
            # The 1024² pixels (12 MiB an image) are not needed to decode: drop them, so a
            # batch of slices holds only its embeddings (4 MiB each) until it is decoded.
            out.extend(Embedded(replace(p, pixels=None), emb[i:i + 1]) for i, p in enumerate(preps))
            del preps, pixels
            trim_heap()  # else each encoder call's freed activations raise the next one's base
        return out

    @torch.no_grad()
    def decode(self, item: Embedded, prompts: Prompts) -> SamOutput:
        """Decode all prompts of one image from its embedding → :class:`SamOutput`."""
        h, w = item.prep.original_hw
        if prompts.status in ("skip", "empty"):
            mask = None if prompts.status == "skip" else np.zeros((h, w), bool)
            return SamOutput(mask, [], prompts.status)
        kw = {}
        if prompts.boxes is not None:
            kw["boxes"] = self.model.transform_boxes(prompts.boxes, item.prep)
        if prompts.points is not None:
            kw["points"] = self.model.transform_points(prompts.points, item.prep)
            kw["point_labels"] = torch.as_tensor(prompts.labels)
        low, iou = self.model.decode(item.embedding, multimask=self.cfg.multimask, **kw)
        logits = self.model.upscale(low, item.prep)  # [N, K, H, W]
        masks = (logits > self.model.mask_threshold).cpu().numpy()
        iou = iou.float().cpu().numpy()
        prob = np.zeros((h, w), np.float32)
        scores = []
        select = SELECTORS[self.cfg.select]
        for k in range(masks.shape[0]):
            if masks.shape[1] == 1:
                p = masks[k, 0].astype(np.float32)
                scores.append(float(iou[k, 0]))
            else:
                p = select(masks[k], iou[k])
                scores.append(float(iou[k].max()))
            prob = np.maximum(prob, p)
        mask = prob > 0.5
        if self.cfg.keep_components and prompts.n_components > 0:
            mask = keep_top_k(mask, prompts.n_components)
        return SamOutput(mask, scores, prompts.status)

    def segment(self, images: Sequence, prompts: Sequence[Prompts],
                timings: dict[str, float] | None = None) -> list[SamOutput]:
        """Images plus one :class:`Prompts` each → one :class:`SamOutput` each.

        Images whose prompts say ``skip``/``empty`` are not encoded at all.  ``timings``: seconds
        spent encoding and decoding are added to its ``sam_encode_s`` / ``sam_decode_s``.
        """
        if len(images) != len(prompts):
            raise ConfigError(f"got {len(images)} images but {len(prompts)} prompt sets.")
        t0 = time.perf_counter()
        need = [i for i, p in enumerate(prompts) if p.status not in ("skip", "empty")]
        embedded = dict(zip(need, self.embed([images[i] for i in need])))
        t1 = time.perf_counter()
        out = self._decode_all(images, prompts, embedded)
        if timings is not None:
            timings["sam_encode_s"] = timings.get("sam_encode_s", 0.0) + t1 - t0
            timings["sam_decode_s"] = timings.get("sam_decode_s", 0.0) + time.perf_counter() - t1
        return out

    def _decode_all(self, images, prompts, embedded: dict) -> list[SamOutput]:
        out = []
        for i, (im, p) in enumerate(zip(images, prompts)):
            if i in embedded:
                out.append(self.decode(embedded[i], p))
            else:
                h, w = np.asarray(im).shape[:2]
                out.append(SamOutput(None if p.status == "skip" else np.zeros((h, w), bool), [], p.status))
        return out
