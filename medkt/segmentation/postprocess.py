"""Saliency map → binary coarse mask, as named modes.

Binarisation modes (registry :data:`BINARISERS`):

* ``kmeans`` (MedCLIP-SAMv2 default): the map is resized to ``kmeans_size²`` (nearest),
  its intensities split into 2 clusters by 1-D Lloyd k-means (deterministic: centroids
  start at the min and max), the cluster with the higher centroid is foreground, and
  the mask is resized back (nearest).  MedCLIP-SAMv2 used scikit-learn's ``KMeans(2,
  random_state=10)`` on the same 256² intensities; in 1-D both converge to the same
  split for the bimodal maps M2IB gives, without the scikit-learn dependency.
* ``otsu``: Otsu's threshold (scikit-image) on the map;
* ``percentile``: foreground = values > the ``percentile``-th percentile q (values ≥ q
  when nothing is above q, i.e. q is the maximum);
* ``threshold``: foreground = values > ``threshold`` (MedCLIP-SAMv2 "thresholding", 0.3).

Then, in this order: optional dense CRF (``crf``, needs pydensecrf, imported lazily),
removal of components smaller than ``min_area`` pixels, the ``top_k`` largest connected
components (``top_k=0`` keeps all; ties broken by raster order of each component's
first pixel, so exactly K survive — ``ties="keep"`` reproduces MedCLIP-SAMv2, where every
component whose size is among the K largest sizes survives), and hole filling.

Masks are ``H×W`` bool arrays, row-major, same shape as the map.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from medkt.errors import ConfigError, OptionalDependencyError, look_up

log = logging.getLogger("medkt.segmentation")


@dataclass
class PostprocessConfig:
    """Saliency → coarse mask settings (defaults = MedCLIP-SAMv2: kmeans, top-1 component)."""

    mode: str = "kmeans"
    threshold: float = 0.3
    percentile: float = 90.0
    kmeans_size: int = 256
    top_k: int = 1
    ties: str = "first"
    min_area: int = 0
    fill_holes: bool = False
    connectivity: int = 2
    crf: bool = False
    crf_iterations: int = 1
    crf_tau: float = 1.05
    crf_gaussian_sxy: float = 5.0
    crf_gaussian_compat: float = 3.0
    crf_bilateral_sxy: float = 5.0
    crf_bilateral_srgb: float = 3.0
    crf_bilateral_compat: float = 5.0

    def validate(self) -> "PostprocessConfig":
        look_up("post-processing mode", self.mode, BINARISERS)
        if self.ties not in ("first", "keep"):
            raise ConfigError(f"postprocess.ties must be 'first' or 'keep', got '{self.ties}'.")
        if self.top_k < 0 or self.min_area < 0:
            raise ConfigError("postprocess.top_k and postprocess.min_area must be ≥ 0.")
        if self.connectivity not in (1, 2):
            raise ConfigError("postprocess.connectivity must be 1 (4-neighbours) or 2 (8-neighbours).")
        return self


# ---------------------------------------------------------------------- binarisers
def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize sampling pixel centres (a round trip keeps every pixel)."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * a.shape[0] / shape[0]).astype(int), a.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * a.shape[1] / shape[1]).astype(int), a.shape[1] - 1)
    return a[np.ix_(rows, cols)]


def kmeans_1d(values: np.ndarray, iters: int = 100) -> float:
    """Two-cluster 1-D Lloyd k-means; returns the split threshold (midpoint of centroids)."""
    v = values.astype(np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return hi
    c0, c1 = lo, hi
    for _ in range(iters):
        thr = 0.5 * (c0 + c1)
        fg = v > thr
        if fg.all() or not fg.any():
            break
        n0, n1 = float(v[~fg].mean()), float(v[fg].mean())
        if n0 == c0 and n1 == c1:
            break
        c0, c1 = n0, n1
    return 0.5 * (c0 + c1)


def binarise_kmeans(m: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    small = _resize_nearest(m, (cfg.kmeans_size, cfg.kmeans_size)) if cfg.kmeans_size else m
    if small.max() <= small.min():
        return np.zeros(m.shape, bool)
    fg = small > kmeans_1d(small)
    return _resize_nearest(fg, m.shape) if cfg.kmeans_size else fg


def binarise_otsu(m: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    from skimage.filters import threshold_otsu
    if m.max() <= m.min():
        return np.zeros(m.shape, bool)
    return m > threshold_otsu(m)


def binarise_percentile(m: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    if m.max() <= m.min():
        return np.zeros(m.shape, bool)
    q = np.percentile(m, cfg.percentile)
    above = m > q
    return above if above.any() else m >= q


def binarise_threshold(m: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    return m > cfg.threshold


BINARISERS: dict[str, Callable[[np.ndarray, PostprocessConfig], np.ndarray]] = {
    "kmeans": binarise_kmeans,
    "otsu": binarise_otsu,
    "percentile": binarise_percentile,
    "threshold": binarise_threshold,
}


# ---------------------------------------------------------------------- components
def label_components(mask: np.ndarray, connectivity: int = 2) -> tuple[np.ndarray, int]:
    structure = ndimage.generate_binary_structure(2, connectivity)
    return ndimage.label(mask, structure=structure)


def components_by_size(labels: np.ndarray, n: int) -> list[tuple[int, int]]:
    """``[(label, area)]`` sorted by area descending, ties by first pixel in raster order."""
    if n == 0:
        return []
    flat = labels.ravel()
    areas = np.bincount(flat, minlength=n + 1)
    first = np.full(n + 1, flat.size, dtype=np.int64)
    idx = np.flatnonzero(flat)
    np.minimum.at(first, flat[idx], idx)
    order = sorted(range(1, n + 1), key=lambda k: (-int(areas[k]), int(first[k])))
    return [(k, int(areas[k])) for k in order]


def keep_top_k(mask: np.ndarray, k: int, *, ties: str = "first", connectivity: int = 2) -> np.ndarray:
    """Keep the ``k`` largest connected components (``k = 0``: all)."""
    if k <= 0 or not mask.any():
        return mask.astype(bool)
    labels, n = label_components(mask, connectivity)
    comps = components_by_size(labels, n)
    if ties == "keep":
        sizes = sorted({a for _, a in comps}, reverse=True)[:k]
        keep = [lab for lab, a in comps if a in sizes]
    else:
        keep = [lab for lab, _ in comps[:k]]
    return np.isin(labels, keep)


def remove_small(mask: np.ndarray, min_area: int, connectivity: int = 2) -> np.ndarray:
    if min_area <= 0 or not mask.any():
        return mask.astype(bool)
    labels, n = label_components(mask, connectivity)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    good = np.flatnonzero(areas >= min_area)
    good = good[good > 0]
    return np.isin(labels, good)


# ---------------------------------------------------------------------- CRF
def dense_crf(prob: np.ndarray, image: np.ndarray | None, cfg: PostprocessConfig) -> np.ndarray:
    """MedCLIP-SAMv2's 2-label DenseCRF2D refinement of a [0, 1] map (needs pydensecrf).

    ``image``: ``H×W`` or ``H×W×3`` in [0, 1] (or uint8) for the bilateral term; the map
    itself is used when ``None``.  Returns the foreground mask.
    """
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise OptionalDependencyError("pydensecrf", "postprocess.crf", extra="crf") from None
    h, w = prob.shape
    eps = 1e-8
    p = np.clip(prob.astype(np.float64), eps, 1 - eps)
    sig = 1.0 / (1.0 + np.exp(-p))
    fg = -np.log(p) / (cfg.crf_tau * sig)
    bg = -np.log(1 - p) / (cfg.crf_tau * (1 - sig))
    unary = np.ascontiguousarray(np.stack([bg, fg]).reshape(2, -1).astype(np.float32))
    ref = prob if image is None else np.asarray(image)
    if ref.dtype != np.uint8:
        ref = (np.clip(ref, 0, 1) * 255).astype(np.uint8)
    if ref.ndim == 2:
        ref = np.repeat(ref[..., None], 3, axis=-1)
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=cfg.crf_gaussian_sxy, compat=cfg.crf_gaussian_compat)
    crf.addPairwiseBilateral(sxy=cfg.crf_bilateral_sxy, srgb=cfg.crf_bilateral_srgb,
                             rgbim=np.ascontiguousarray(ref), compat=cfg.crf_bilateral_compat)
    q = np.array(crf.inference(cfg.crf_iterations)).reshape(2, h, w)
    return q.argmax(axis=0) == 1


# ---------------------------------------------------------------------- pipeline
def postprocess(saliency: np.ndarray, cfg: PostprocessConfig | None = None,
                image: np.ndarray | None = None) -> np.ndarray:
    """Saliency ``H×W`` (any float range; [0, 1] expected by ``threshold``) → bool mask ``H×W``."""
    cfg = (cfg or PostprocessConfig()).validate()
    m = np.asarray(saliency, dtype=np.float32)
    if m.ndim != 2:
        raise ConfigError(f"postprocess expects a 2-D map, got shape {m.shape}.")
    m = np.nan_to_num(m, nan=0.0)
    if cfg.crf:
        rng = float(m.max() - m.min())
        mask = dense_crf((m - m.min()) / rng if rng > 0 else np.zeros_like(m), image, cfg)
    else:
        mask = BINARISERS[cfg.mode](m, cfg)
    mask = remove_small(mask, cfg.min_area, cfg.connectivity)
    mask = keep_top_k(mask, cfg.top_k, ties=cfg.ties, connectivity=cfg.connectivity)
    if cfg.fill_holes and mask.any():
        mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        log.info("post-processing (%s) produced an empty coarse mask", cfg.mode)
    return mask.astype(bool)
