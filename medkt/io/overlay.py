"""Overlay PNGs for people to look at: the image in gray, a saliency heat map and the mask outline.

Overlays are for quick visual checks only (8-bit, display-oriented); analysis outputs are the
NIfTI / DICOM-SEG / ``.npy`` files from :mod:`medkt.io.writers`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medkt.errors import OutputError
from medkt.io.types import ImageVolume
from medkt.runs import atomic_path

_LABEL_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 128, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def _to_unit(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if a.size and (a.min() < 0 or a.max() > 1):
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def make_overlay(image: np.ndarray, mask: np.ndarray | None = None, saliency: np.ndarray | None = None, *,
                 alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Compose a ``(H, W, 3)`` uint8 overlay.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)``; values in [0, 1] are used as is, others are min-max scaled.
        mask: ``(H, W)`` labels; each label's outline is drawn in its own colour (label 1 red).
        saliency: ``(H, W)`` float map, min-max scaled and blended as a heat map with weight ``alpha``.
    """
    img = _to_unit(image)
    rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
    hw = rgb.shape[:2]
    if saliency is not None:
        s = _to_unit(saliency)
        if s.shape != hw:
            raise OutputError(f"saliency shape {s.shape} differs from the image slice {hw}.")
        import matplotlib
        heat = matplotlib.colormaps[cmap](s)[..., :3]
        rgb = (1 - alpha) * rgb + alpha * heat
    out = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != hw:
            raise OutputError(f"mask shape {m.shape} differs from the image slice {hw}.")
        from skimage.segmentation import find_boundaries
        for n, lab in enumerate(v for v in np.unique(m) if v != 0):
            edge = find_boundaries(m == lab, mode="inner")
            out[edge] = _LABEL_COLOURS[n % len(_LABEL_COLOURS)]
    return out


def write_overlay(image: ImageVolume | np.ndarray, path: str | Path, mask: np.ndarray | None = None,
                  saliency: np.ndarray | None = None, *, axis: str | int = "axial", index: int | None = None,
                  window=None, overwrite: bool = False, inputs=()) -> Path:
    """Write an overlay PNG of one slice (or of a 2-D image).

    Args:
        image: an :class:`ImageVolume` (intensities prepared with :func:`~medkt.io.prepare_intensity`,
            honouring ``window``) or an already prepared 2-D array.
        path: output ``.png`` (atomic; refused inside the input tree or when it exists without ``overwrite``).
        mask, saliency: on the same grid as ``image`` (3-D for volumes, 2-D for images).
        axis, index: for volumes, the plane (display-oriented, see :func:`~medkt.io.iter_slices`) and the
            slice; default index: the slice with the largest mask area, else the middle slice.

    Returns:
        the written path.
    """
    from medkt.io.writers import guard_output
    ref = image if isinstance(image, ImageVolume) else None
    path = guard_output(path, ref, overwrite=overwrite, inputs=inputs)
    if ref is not None:
        from medkt.io.intensity import prepare_intensity
        from medkt.io.slicing import make_slice_map
        img01, _ = prepare_intensity(ref, window=window)
        if ref.is_2d:
            img2d, m2d, s2d = img01, mask, saliency
        else:
            smap = make_slice_map(ref, axis)
            if index is None:
                if mask is not None:
                    areas = [int(np.count_nonzero(s)) for s in smap.extract(np.asarray(mask))]
                    index = int(np.argmax(areas)) if max(areas, default=0) > 0 else len(smap) // 2
                else:
                    index = len(smap) // 2
            pick = lambda a: None if a is None else smap.extract(np.asarray(a))[index]  # noqa: E731
            img2d, m2d, s2d = pick(img01), pick(mask), pick(saliency)
    else:
        img2d, m2d, s2d = np.asarray(image), mask, saliency
        if img2d.ndim not in (2, 3) or (img2d.ndim == 3 and img2d.shape[-1] not in (3, 4)):
            raise OutputError(f"overlay of an array of shape {img2d.shape}: pass a 2-D image or an ImageVolume.")
    rgb = make_overlay(img2d, m2d, s2d)
    from PIL import Image
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path
