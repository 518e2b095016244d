"""Checks every reader applies before and after reading: size limits from headers, truncation, geometry.

* **Size limits, before any allocation.**  :func:`check_size` refuses an image whose header claims
  more than ``max_voxels`` array elements (default :data:`DEFAULT_MAX_VOXELS` = 2**28, e.g.
  512 x 512 x 1024; RGB channels and frames count) or more than ``max_voxels * 8`` bytes of
  pixel data.  Users raise it with ``--max-voxels N`` (Python ``max_voxels=N``).
* **Truncation.**  :func:`check_file_holds` compares the bytes a header claims with the bytes the
  file can hold: the file size for uncompressed data, and ``1032 x`` the compressed size for gzip
  (deflate cannot expand further), so a 72-byte ``.nii.gz`` claiming 1000**3 voxels is refused
  without reading it.
* **Geometry.**  :func:`check_geometry` refuses a non-finite or singular affine, a zero-length
  axis and a non-finite or non-positive spacing with a :class:`~medkt.errors.GeometryError`
  naming the file; :func:`medkt.io.read_case`, the in-memory constructors and
  :func:`medkt.io.make_slice_map` all call it, so slicing never sees bad geometry.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from medkt.errors import ConfigError, GeometryError, InputError, InputTooLargeError

#: Default limit on the number of array elements one image may have (512 x 512 x 1024).
DEFAULT_MAX_VOXELS = 2 ** 28
#: Pixel-data bytes allowed per allowed voxel (float64 volumes of ``max_voxels`` pass).
MAX_BYTES_PER_VOXEL = 8
#: Deflate's maximum expansion ratio: a gzip file of n bytes never decompresses to more than this x n.
DEFLATE_MAX_RATIO = 1032
#: Largest absolute affine entry (mm) that is still a plausible scanner coordinate or voxel size (10 km).
MAX_WORLD_MM = 1e7
#: Smallest ratio of the affine's smallest to largest singular value that still counts as invertible.
SINGULAR_RTOL = 1e-6


def resolve_max_voxels(max_voxels) -> int:
    """``None`` -> :data:`DEFAULT_MAX_VOXELS`; otherwise a positive integer (else :class:`ConfigError`)."""
    if max_voxels is None:
        return DEFAULT_MAX_VOXELS
    try:
        n = int(max_voxels)
    except (TypeError, ValueError):
        raise ConfigError(f"max_voxels must be a positive integer, got {max_voxels!r}.",
                          hint="e.g. --max-voxels 500000000") from None
    if n <= 0 or n != float(max_voxels):
        raise ConfigError(f"max_voxels must be a positive integer, got {max_voxels!r}.",
                          hint="e.g. --max-voxels 500000000")
    return n


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def check_size(shape: Sequence[int], itemsize: int, path=None, max_voxels=None, *, what: str = "image") -> int:
    """Refuse an image whose claimed ``shape`` x ``itemsize`` exceeds the limits; return the element count.

    Args:
        shape: every axis of the array that would be allocated (channels and frames included).
        itemsize: bytes per element of the stored data.
        max_voxels: the element limit (``None``: :data:`DEFAULT_MAX_VOXELS`).

    Raises:
        InputTooLargeError: above the element or byte limit (the message gives the numbers and the fix).
        GeometryError: a negative axis length.
    """
    limit = resolve_max_voxels(max_voxels)
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise GeometryError(f"the header gives a negative axis length {tuple(dims)}.", path=path,
                            hint="the header is damaged; convert the image again")
    n = math.prod(dims)
    nbytes = n * max(int(itemsize), 1)
    if n > limit or nbytes > limit * MAX_BYTES_PER_VOXEL:
        shown = "x".join(str(d) for d in dims)
        raise InputTooLargeError(
            f"the {what} header claims {shown} = {n:,} voxels ({_gb(nbytes)} of pixel data), above the limit of "
            f"{limit:,} voxels; refusing to allocate it.", path=path,
            hint=f"if the {what} really is this large, raise the limit with --max-voxels {max(n, 1):d} "
                 f"(Python: max_voxels={max(n, 1):d}); otherwise the header is damaged")
    return n


def check_file_holds(path, claimed_bytes: int, offset: int = 0, *, compressed: bool = False,
                     what: str = "voxel data") -> None:
    """Refuse a file that cannot hold the ``claimed_bytes`` its header promises after ``offset``.

    Uncompressed: the file size must reach ``offset + claimed_bytes``.  Gzip: ``offset +
    claimed_bytes`` must not exceed :data:`DEFLATE_MAX_RATIO` x the compressed size.

    Raises:
        InputError: the file is too small for what its header claims (truncated, or a damaged header).
    """
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # unreadable files are reported by the reader itself
    need = int(offset) + int(claimed_bytes)
    if compressed:
        if need > size * DEFLATE_MAX_RATIO:
            raise InputError(f"the header claims {need:,} bytes of {what} but the compressed file has only "
                             f"{size:,} bytes, which can expand to at most {size * DEFLATE_MAX_RATIO:,}; the "
                             "file is truncated or its header is damaged.", path=path,
                             hint="copy the file again from its source, or convert it again")
    elif need > size:
        raise InputError(f"the file is truncated: its header claims {need:,} bytes ({what} from byte {offset:,}) "
                         f"but the file holds {size:,}.", path=path,
                         hint="copy the file again from its source")


def check_geometry(affine, shape: Sequence[int], spacing: Sequence[float] | None = None, path=None,
                   *, ndim: int = 3) -> np.ndarray:
    """Validate image geometry; return the affine as a ``4 x 4`` float64 array.

    Args:
        affine: voxel -> world ``4 x 4`` matrix.
        shape: the spatial shape (``ndim`` leading axes are checked).
        spacing: voxel sizes per spatial axis (mm); checked when given.
        ndim: 3 for volumes (the affine's ``3 x 3`` block must be invertible), 2 for 2-D images
            (only the ``2`` in-plane columns must be independent).

    Raises:
        GeometryError: a zero-length axis, a non-finite affine, an affine entry above
            :data:`MAX_WORLD_MM`, a singular (non-invertible) affine, or a non-finite / non-positive spacing.
    """
    dims = [int(d) for d in tuple(shape)[:ndim]]
    if len(dims) < ndim or any(d <= 0 for d in dims):
        raise GeometryError(f"the image has a zero-length or missing axis (shape {tuple(shape)}).", path=path,
                            hint="the file holds no pixels along that axis; check the conversion or export")
    try:
        a = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"the affine is not numeric ({affine!r}).", path=path) from None
    if a.shape != (4, 4):
        raise GeometryError(f"the affine must be 4x4, got shape {a.shape}.", path=path)
    if not np.isfinite(a).all():
        raise GeometryError("the voxel-to-world affine contains NaN or infinite values.", path=path,
                            hint="the header's qform/sform (or DICOM position/orientation/spacing) is damaged; "
                                 "fix it (e.g. nibabel set_qform/set_sform) or convert the image again")
    if np.abs(a[:3]).max() > MAX_WORLD_MM:
        raise GeometryError(f"the voxel-to-world affine holds implausible values (largest {np.abs(a[:3]).max():.3g} "
                            f"mm, above {MAX_WORLD_MM:.0e} mm).", path=path,
                            hint="the header's qform/sform (or DICOM position/spacing) is damaged; fix it or "
                                 "convert the image again")
    cols = a[:3, :ndim]
    try:
        with np.errstate(all="ignore"):
            sv = np.linalg.svd(cols, compute_uv=False)
    except np.linalg.LinAlgError:
        sv = np.zeros(ndim)
    if not np.isfinite(sv).all() or sv[0] == 0 or sv[-1] < SINGULAR_RTOL * sv[0]:
        raise GeometryError(f"the voxel-to-world affine is singular (singular values {np.round(sv, 6).tolist()}): "
                            "voxel axes are zero-length or parallel, so voxels have no position.", path=path,
                            hint="the header's qform/sform (or DICOM orientation/spacing) is damaged; fix it or "
                                 "convert the image again")
    if spacing is not None:
        sp = [float(s) for s in tuple(spacing)[:ndim]]
        if not all(math.isfinite(s) and s > 0 for s in sp):
            raise GeometryError(f"the voxel spacing {sp} is not finite and positive.", path=path,
                                hint="the header's pixel dimensions are damaged; fix them or convert again")
    return a


def check_volume(vol, path=None) -> None:
    """Run :func:`check_geometry` on an :class:`~medkt.io.types.ImageVolume` (2-D or 3-D)."""
    where = path if path is not None else _source(vol)
    check_geometry(vol.affine, vol.spatial_shape, vol.spacing, where, ndim=vol.ndim_spatial)
    if vol.array.size == 0:
        raise GeometryError(f"the image has no pixels (array shape {vol.array.shape}).", path=where)


def _source(vol):
    paths = (vol.meta or {}).get("source_paths") or []
    if paths:
        p = Path(paths[0])
        return p.parent if len(set(paths)) > 1 else p
    return None if vol.case_id in ("array", "nifti") else vol.case_id


__all__ = ["DEFAULT_MAX_VOXELS", "check_size", "check_file_holds", "check_geometry", "check_volume",
           "resolve_max_voxels"]
