"""Image–text retrieval Recall@K in both directions, several captions per image.

Convention (Flickr30k / COCO, as in CLIP and ALBEF evaluations):

* ``similarity[i, j]`` is the score between image ``i`` and caption ``j``; shape
  ``(n_images, n_captions)`` (CLIP's ``logits_per_image``).  The gallery is the whole
  set: every image against every caption.
* ``caption_to_image[j]`` is the index of the image caption ``j`` describes; each image
  has one or more captions (e.g. 5), each caption exactly one image.
* **text → image** R@K: share of *captions* whose image is among the K best images.
* **image → text** R@K: share of *images* for which *at least one* of their captions is
  among the K best captions (rank = best rank over its captions).
* Ties are broken by index (the lower index ranks first), as a stable ``argsort`` does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from medkt.errors import InputError

__all__ = ["retrieval_recall", "ranks_text_to_image", "ranks_image_to_text"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _validate(sim: np.ndarray, cap2img: np.ndarray) -> None:
    if sim.ndim != 2:
        raise InputError(f"similarity must be a matrix (n_images, n_captions), got shape {sim.shape}.")
    n_img, n_cap = sim.shape
    if cap2img.shape != (n_cap,):
        raise InputError(f"caption_to_image has {cap2img.size} entries but the similarity matrix has "
                         f"{n_cap} caption columns.",
                         hint="similarity is (n_images, n_captions); transpose it if it is text-first")
    if n_cap and (cap2img.min() < 0 or cap2img.max() >= n_img):
        raise InputError(f"caption_to_image must hold image indices in [0, {n_img}).")
    missing = np.setdiff1d(np.arange(n_img), cap2img)
    if missing.size:
        raise InputError(f"{missing.size} image(s) have no caption (first: {int(missing[0])}).",
                         hint="drop captionless images from the gallery or give them captions")


def _rank_of(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of column ``target[r]`` in each row (descending, ties by lower index first)."""
    rows = np.arange(scores.shape[0])
    true = scores[rows, target]
    cols = np.arange(scores.shape[1])[None, :]
    return (scores > true[:, None]).sum(1) + ((scores == true[:, None]) & (cols < target[:, None])).sum(1)


def ranks_text_to_image(similarity, caption_to_image, chunk: int = 4096) -> np.ndarray:
    """0-based rank of the correct image for each caption, shape ``(n_captions,)``."""
    sim, cap2img = _np(similarity), np.asarray(caption_to_image, dtype=int)
    _validate(sim, cap2img)
    st = sim.T
    return np.concatenate([_rank_of(st[a:a + chunk], cap2img[a:a + chunk])
                           for a in range(0, st.shape[0], chunk)] or [np.zeros(0, int)])


def ranks_image_to_text(similarity, caption_to_image, chunk: int = 1024) -> np.ndarray:
    """0-based best rank of any correct caption for each image, shape ``(n_images,)``."""
    sim, cap2img = _np(similarity), np.asarray(caption_to_image, dtype=int)
    _validate(sim, cap2img)
    n_img, n_cap = sim.shape
    best = np.full(n_img, n_cap, dtype=np.int64)
    by_image = np.argsort(cap2img, kind="stable")
    bounds = np.searchsorted(cap2img[by_image], np.arange(n_img + 1))
    for a in range(0, n_img, chunk):
        block = sim[a:a + chunk]
        order = np.argsort(-block, axis=1, kind="stable")
        pos = np.empty_like(order)
        np.put_along_axis(pos, order, np.arange(n_cap)[None, :].repeat(block.shape[0], 0), axis=1)
        for r in range(block.shape[0]):
            i = a + r
            best[i] = pos[r, by_image[bounds[i]:bounds[i + 1]]].min()
    return best


def retrieval_recall(similarity, caption_to_image: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Recall@K both ways: ``{"t2i_R@1", ..., "i2t_R@10", "rsum", "n_images", "n_captions"}``.

    Values are fractions in [0, 1]; ``rsum`` is the sum of all recalls (×1, not percent).
    """
    t2i = ranks_text_to_image(similarity, caption_to_image)
    i2t = ranks_image_to_text(similarity, caption_to_image)
    out: dict = {}
    for k in ks:
        out[f"t2i_R@{k}"] = float((t2i < k).mean())
    for k in ks:
        out[f"i2t_R@{k}"] = float((i2t < k).mean())
    out["rsum"] = float(sum(out.values()))
    out["n_images"] = int(i2t.size)
    out["n_captions"] = int(t2i.size)
    return out
