"""Do a prediction and its ground truth lie on the same voxel grid?  Compare, or resample (``medkt evaluate``).

Scoring voxel by voxel is only meaningful when voxel ``(i, j, k)`` of the prediction and of the
ground truth are the same place in the patient.  Two masks are on the same grid when their shapes
are equal and their affines (voxel index -> world mm, as :class:`medkt.io.ImageVolume.affine`) put
every corner voxel of the grid within ``tolerance`` voxels of the same world point.  A different
spacing, a flipped or permuted axis, or a shifted origin all fail this test.

:func:`resample_nearest` maps a prediction onto the ground-truth grid by nearest neighbour
(labels stay labels): GT voxel ``v`` takes the prediction's value at
``round(inv(A_pred) @ A_gt @ v)``, or 0 outside the prediction's field of view.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["grid_mismatch", "resample_nearest"]


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    """Homogeneous voxel coordinates ``(4, 2**3)`` of the corner voxels of a 3-D grid."""
    pts = np.array(list(itertools.product(*[(0, max(n - 1, 0)) for n in shape])), dtype=np.float64)
    return np.c_[pts, np.ones(len(pts))].T


def grid_mismatch(pred_shape, pred_affine, gt_shape, gt_affine, tolerance: float = 0.01) -> str | None:
    """``None`` if the two 3-D grids agree, else a short description of how they differ.

    Args:
        pred_shape, gt_shape: spatial shapes ``(I, J, K)``.
        pred_affine, gt_affine: ``4 x 4`` voxel -> world (mm) matrices.
        tolerance: allowed corner displacement, in units of the ground truth's smallest voxel size.
    """
    pa, ga = np.asarray(pred_affine, float), np.asarray(gt_affine, float)
    p_sp = np.linalg.norm(pa[:3, :3], axis=0)
    g_sp = np.linalg.norm(ga[:3, :3], axis=0)
    tol_mm = tolerance * float(g_sp.min())
    what = []
    if tuple(pred_shape) != tuple(gt_shape):
        what.append(f"shape {tuple(pred_shape)} vs {tuple(gt_shape)}")
    if np.abs(p_sp - g_sp).max() > tol_mm:
        what.append("spacing " + "x".join(f"{s:.4g}" for s in p_sp) + " vs "
                    + "x".join(f"{s:.4g}" for s in g_sp) + " mm")
    p_dir, g_dir = pa[:3, :3] / p_sp, ga[:3, :3] / g_sp
    if np.abs(p_dir - g_dir).max() > 1e-3:
        flips = [str(i) for i in range(3) if float(p_dir[:, i] @ g_dir[:, i]) < -0.99]
        what.append(f"axis {', '.join(flips)} flipped" if flips else "orientation (axis directions) differs")
    if not what:
        corners = _corners(tuple(gt_shape))
        shift = np.linalg.norm((pa @ corners - ga @ corners)[:3], axis=0).max()
        if shift > tol_mm:
            what.append(f"origin/position differs by up to {shift:.3g} mm")
    return "; ".join(what) or None


def resample_nearest(pred: np.ndarray, pred_affine, gt_shape, gt_affine) -> np.ndarray:
    """``pred`` resampled onto the ground-truth grid by nearest neighbour; 0 outside its field of view.

    Returns an array of shape ``gt_shape`` with ``pred``'s dtype (bool stays bool).
    """
    from scipy.ndimage import affine_transform
    m = np.linalg.inv(np.asarray(pred_affine, float)) @ np.asarray(gt_affine, float)
    src = np.asarray(pred)
    work = src.astype(np.uint8) if src.dtype == bool else src
    out = affine_transform(work, m[:3, :3], offset=m[:3, 3], output_shape=tuple(gt_shape),
                           order=0, mode="constant", cval=0)
    return out.astype(bool) if src.dtype == bool else out
