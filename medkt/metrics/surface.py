"""Boundary metrics on binary masks: NSD (surface Dice), HD95, and the MedCLIP-SAMv2 slab "NSD".

Conventions (all functions):

* ``pred`` and ``gt`` are boolean arrays of the same shape, 2-D ``(H, W)`` or 3-D
  ``(D, H, W)`` — any axis order, as long as both masks and ``spacing`` share it.
* ``spacing`` has one entry per array axis, **in the order of** ``array.shape``, in mm;
  ``None`` means 1 per axis (distances and tolerances are then in pixels).
* Boundary-voxel modes (``nsd_mode="surface"``, ``hd95_mode="monai"`` / ``"medpy"``; the
  ``"deepmind"`` modes use area-weighted surface elements, :mod:`medkt.metrics.surfels`).
  Boundaries are MONAI's (``monai.metrics.utils.get_mask_edges`` without sub-voxels): a
  foreground voxel is on the boundary if one of its face neighbours (4-/6-connectivity)
  is background or lies outside the image.  Distances are exact Euclidean distances
  between boundary voxel centres, scaled by ``spacing`` (MONAI's
  ``get_surface_distance``).  Both are re-done here with SciPy, because importing MONAI
  costs 5–15 s per process on CPU; ``surface_distances(..., backend="monai")`` calls
  MONAI itself, and the tests check parity with ``compute_surface_dice`` /
  ``compute_hausdorff_distance``.
* Conventions (``mode`` arguments; the same names as :class:`~medkt.metrics.SegMetricConfig`):

  ====================  ======================================================================
  ``nsd_mode``
  ``"deepmind"``        area-weighted surface elements (DeepMind ``surface-distance``'s
                        ``compute_surface_dice_at_tolerance``; the challenges, MedSAM) — default,
                        see :mod:`medkt.metrics.surfels`
  ``"surface"``         boundary-voxel count (MONAI ``compute_surface_dice``, no sub-voxels)
  ``"medclip-samv2"``   MedCLIP-SAMv2's slab "NSD" (a tolerant area overlap, pixels)
  ``hd95_mode``
  ``"deepmind"``        area-weighted percentile, no interpolation, max of the two directions
                        (``compute_robust_hausdorff(..., 95)``) — default
  ``"monai"``           ``max(P95(d(pred→gt)), P95(d(gt→pred)))`` over boundary voxels,
                        linearly interpolated (MONAI ``compute_hausdorff_distance``)
  ``"medpy"``           ``P95`` of both directions' boundary-voxel distances pooled, linearly
                        interpolated (``medpy.metric.binary.hd95``)
  ====================  ======================================================================

* These functions return the *raw* value, ``nan`` where a metric is undefined (both masks
  empty; HD95 with one empty mask).  :func:`medkt.metrics.segmentation_scores` replaces
  those with the declared empty-mask policy; call these directly only if you handle
  emptiness yourself.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from medkt.metrics.conventions import DEFAULT_HD95_MODE, DEFAULT_NSD_MODE, check_mode

__all__ = ["mask_edges", "surface_distances", "compute_nsd", "compute_hd95", "compute_slab_nsd",
           "nsd_from_distances", "hd_from_distances"]


def _spacing_tuple(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    if np.isscalar(spacing):
        return (float(spacing),) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        from medkt.errors import InputError
        raise InputError(f"spacing {sp} has {len(sp)} entries but the masks have {ndim} axes.",
                         hint="give one spacing value per array axis, in the order of array.shape")
    return sp


def mask_edges(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundary voxels of ``pred`` and ``gt``, cropped to the bounding box of their union.

    Same definition as MONAI's ``get_mask_edges`` without sub-voxels (``mask XOR
    binary_erosion(mask)``, face connectivity, outside the image = background); done here
    with plain SciPy because MONAI's crop transform costs seconds on a 512² × 100 volume.
    Parity with MONAI is tested.
    """
    from scipy.ndimage import binary_erosion
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    union = pred | gt
    if not union.any():
        return np.zeros_like(pred), np.zeros_like(gt)
    box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in np.nonzero(union))
    p, g = pred[box], gt[box]
    return p ^ binary_erosion(p), g ^ binary_erosion(g)


def _nearest(from_edges: np.ndarray, to_edges: np.ndarray, spacing) -> np.ndarray:
    from scipy.spatial import cKDTree
    src = np.argwhere(from_edges).astype(np.float64)
    dst = np.argwhere(to_edges).astype(np.float64)
    if spacing is not None:
        scale = np.asarray(spacing, dtype=np.float64)
        src *= scale
        dst *= scale
    return cKDTree(dst, leafsize=32).query(src, k=1)[0]


def surface_distances(pred: np.ndarray, gt: np.ndarray, spacing=None,
                      backend: str = "scipy") -> tuple[np.ndarray, np.ndarray]:
    """Distances pred-boundary → gt-boundary and gt-boundary → pred-boundary (both masks non-empty).

    Returns two 1-D float64 arrays, one entry per boundary voxel of ``pred`` and of ``gt``.
    ``backend="scipy"`` (default) computes exact Euclidean nearest-boundary distances with a
    k-d tree, the same algorithm as MONAI's CPU path, without importing MONAI (5–15 s);
    ``backend="monai"`` calls ``monai.metrics.utils.get_mask_edges`` /
    ``get_surface_distance`` (float32 distances) and is kept for cross-checks.
    """
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    sp = _spacing_tuple(spacing, pred.ndim)
    if backend == "monai":
        from monai.metrics.utils import get_mask_edges, get_surface_distance
        edges_pred, edges_gt = get_mask_edges(pred, gt, crop=True)
        d_pg = np.asarray(get_surface_distance(edges_pred, edges_gt, "euclidean", sp), dtype=np.float64)
        d_gp = np.asarray(get_surface_distance(edges_gt, edges_pred, "euclidean", sp), dtype=np.float64)
        return d_pg, d_gp
    if backend != "scipy":
        from medkt.errors import UnknownNameError
        raise UnknownNameError("surface-distance backend", backend, ("scipy", "monai"))
    edges_pred, edges_gt = mask_edges(pred, gt)
    return _nearest(edges_pred, edges_gt, sp), _nearest(edges_gt, edges_pred, sp)


def compute_nsd(pred: np.ndarray, gt: np.ndarray, tolerance: float, spacing=None,
                mode: str = DEFAULT_NSD_MODE) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance``, in the convention ``mode``.

    * ``"deepmind"`` (default): area-weighted surface elements, equal to DeepMind's
      ``compute_surface_dice_at_tolerance`` (see :mod:`medkt.metrics.surfels`).
    * ``"surface"``: ``(#pred-boundary within tol of gt-boundary + #gt-boundary within tol of
      pred-boundary) / (#pred-boundary + #gt-boundary)`` — MONAI ``compute_surface_dice`` with
      ``use_subvoxels=False``.
    * ``"medclip-samv2"``: :func:`compute_slab_nsd` (``tolerance`` in pixels, spacing ignored).

    ``tolerance`` is in the units of ``spacing`` (mm), or pixels when ``spacing`` is None.
    Raw empty handling: one mask empty → 0.0, both empty → nan.
    """
    check_mode("NSD", mode)
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if mode == "medclip-samv2":
        return compute_slab_nsd(pred, gt, tolerance)
    if not pred.any() and not gt.any():
        return math.nan
    if not pred.any() or not gt.any():
        return 0.0
    sp = _spacing_tuple(spacing, pred.ndim)
    if mode == "deepmind":
        from medkt.metrics.surfels import surfel_distances, surfel_nsd
        return surfel_nsd(surfel_distances(pred, gt, sp), tolerance)
    return nsd_from_distances(*surface_distances(pred, gt, sp), tolerance)


def nsd_from_distances(d_pg: np.ndarray, d_gp: np.ndarray, tolerance: float) -> float:
    """NSD from the two boundary-distance arrays of :func:`surface_distances`."""
    total = d_pg.size + d_gp.size
    return float((np.count_nonzero(d_pg <= tolerance) + np.count_nonzero(d_gp <= tolerance)) / total)


def hd_from_distances(d_pg: np.ndarray, d_gp: np.ndarray, percentile: float = 95.0,
                      mode: str = "monai") -> float:
    """Percentile Hausdorff distance from the two boundary-distance arrays of :func:`surface_distances`.

    ``mode="monai"``: ``max(P_q(d_pg), P_q(d_gp))``; ``mode="medpy"``: ``P_q`` of both arrays
    pooled.  ``P_q`` is NumPy's linearly interpolated percentile.  (``"deepmind"`` needs surface
    areas: :func:`medkt.metrics.surfels.surfel_hd`.)
    """
    if mode == "medpy":
        return float(np.percentile(np.concatenate([d_pg, d_gp]), percentile))
    if mode != "monai":
        check_mode("HD95", mode)
        raise ValueError("hd_from_distances takes boundary-voxel distances; use surfels.surfel_hd "
                         "for mode 'deepmind'")
    return float(max(np.percentile(d_pg, percentile), np.percentile(d_gp, percentile)))


def compute_hd95(pred: np.ndarray, gt: np.ndarray, spacing=None, percentile: float = 95.0,
                 mode: str = DEFAULT_HD95_MODE) -> float:
    """Percentile (default 95th) Hausdorff distance, in the convention ``mode``.

    * ``"deepmind"`` (default): area-weighted percentile of surface-element distances, no
      interpolation, larger direction — DeepMind ``compute_robust_hausdorff(d, percentile)``.
    * ``"monai"``: ``max(P_q(d(pred→gt)), P_q(d(gt→pred)))`` over boundary voxels, ``P_q`` the
      linearly interpolated percentile — MONAI ``compute_hausdorff_distance``.
    * ``"medpy"``: ``P_q`` of the two directions' boundary-voxel distances pooled —
      ``medpy.metric.binary.hd95``.

    Units: those of ``spacing`` (mm) or pixels.  Raw: nan if either mask is empty.
    """
    check_mode("HD95", mode)
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if not pred.any() or not gt.any():
        return math.nan
    sp = _spacing_tuple(spacing, pred.ndim)
    if mode == "deepmind":
        from medkt.metrics.surfels import surfel_distances, surfel_hd
        return surfel_hd(surfel_distances(pred, gt, sp), percentile)
    return hd_from_distances(*surface_distances(pred, gt, sp), percentile, mode=mode)


def _within(mask: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Voxels whose Euclidean distance (in pixels) to the nearest ``mask`` voxel is ≤ tolerance."""
    from scipy.ndimage import distance_transform_edt
    if not mask.any():
        return np.zeros_like(mask)
    return distance_transform_edt(~mask) <= tolerance_px


def compute_slab_nsd(pred: np.ndarray, gt: np.ndarray, tolerance_px: float = 2.0) -> float:
    """MedCLIP-SAMv2's "NSD", which is really a tolerant *area* overlap (compatibility mode).

    ``(|G ∩ dilate(P)| + |P ∩ dilate(G)|) / (|G| + |P|)`` where ``dilate(X)`` is every
    pixel within Euclidean distance ``tolerance_px`` (pixels, spacing ignored) of ``X``.
    MedCLIP-SAMv2 obtains (approximately) this by feeding 2-D masks to 3-D surface code as
    one-slice slabs, so every foreground pixel counts as "surface"; it is always ≥ DSC.
    Raw empty handling: one mask empty → 0.0, both empty → nan.
    """
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    n_p, n_g = int(pred.sum()), int(gt.sum())
    if n_p + n_g == 0:
        return math.nan
    if n_p == 0 or n_g == 0:
        return 0.0
    # crop to the union bounding box plus a margin: nothing outside it can be within tolerance
    union = pred | gt
    margin = int(math.ceil(tolerance_px)) + 1
    box = tuple(slice(max(int(ix.min()) - margin, 0), int(ix.max()) + margin + 1)
                for ix in np.nonzero(union))
    p, g = pred[box], gt[box]
    hits = np.count_nonzero(g & _within(p, tolerance_px)) + np.count_nonzero(p & _within(g, tolerance_px))
    return float(hits / (n_p + n_g))
