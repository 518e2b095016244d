"""NIfTI reader (``.nii`` / ``.nii.gz``, NIfTI-1 and NIfTI-2) built on nibabel.

The array is returned in the file's own voxel order ``(I, J, K)`` with ``img.affine`` (sform when
its code is set, else qform), so nothing is reoriented and a mask written back with the stored
header overlays exactly.  ``scl_slope``/``scl_inter`` are applied (nibabel's ``dataobj``).  4-D
files need a volume index (``nifti_volume``); a trailing singleton 4th axis is dropped.

Before any voxel is read, :func:`check_header` refuses what the header alone shows to be unusable
(:mod:`medkt.io.checks`): more voxels than ``max_voxels``, more bytes than the file can hold
(truncated, or a gzip that cannot expand that far), complex or RGB data types, a non-finite or
singular affine and zero-length axes.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import InputError, InputTooLargeError
from medkt.io._fs import NIFTI_SUFFIXES, check_readable, stem_of, suffix_of
from medkt.io.checks import check_file_holds, check_geometry, check_size
from medkt.io.readers import ImageReader
from medkt.io.types import Case, ImageVolume

log = logging.getLogger("medkt.io")


def _load(path: Path):
    import nibabel as nib
    check_readable(path)
    try:
        img = nib.load(str(path))
        _ = img.header.get_data_shape(), img.get_data_dtype(), img.affine
    except Exception as e:  # nibabel raises ImageFileError, EOFError, zlib.error, ValueError...
        raise InputError(f"not a readable NIfTI file ({type(e).__name__}: {e}).", path=path,
                         hint="the file is corrupt or truncated; convert or copy it again") from None
    if not hasattr(img, "affine") or img.__class__.__name__ not in ("Nifti1Image", "Nifti2Image", "Nifti1Pair",
                                                                      "Nifti2Pair"):
        raise InputError(f"{img.__class__.__name__} is not a NIfTI image.", path=path)
    return img


def _check_volume_choice(shape: tuple, volume: int | None, path) -> int | None:
    """Validate the 4-D volume choice; return the index to take (``None`` for 3-D data)."""
    if len(shape) <= 3 or (len(shape) == 4 and shape[3] == 1 and volume in (None, 0)):
        return None if len(shape) <= 3 else 0
    if len(shape) > 4:
        raise InputError(f"{len(shape)}-D NIfTI of shape {shape} is not supported (3-D or 4-D only).",
                         path=path, hint="extract a 3-D volume first (e.g. with fslroi or nibabel)")
    if volume is None:
        raise InputError(f"4-D NIfTI with {shape[3]} volumes (shape {shape}); medkt segments one 3-D "
                         "volume at a time and will not guess which.", path=path,
                         hint=f"choose one with --nifti-volume N (0..{shape[3] - 1}) or nifti_volume=N")
    if not -shape[3] <= volume < shape[3]:
        raise InputError(f"volume index {volume} is out of range for {shape[3]} volumes.", path=path,
                         hint=f"choose 0..{shape[3] - 1}")
    return volume % shape[3]


def _spacing(img, affine: np.ndarray, path, warnings: list[str]) -> tuple[float, float, float]:
    """Voxel sizes from pixdim; from the affine's column norms when pixdim is not finite and positive."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))
    if all(np.isfinite(z) and z > 0 for z in zooms):
        return tuple(zooms)
    derived = tuple(float(x) for x in np.linalg.norm(affine[:3, :3], axis=0))
    msg = (f"pixdim {zooms} is not finite and positive; voxel spacing {[round(d, 6) for d in derived]} is "
           "taken from the affine")
    warnings.append(msg)
    log.warning("%s: %s", path or "nifti", msg)
    return derived


def check_header(img, path=None, *, volume: int | None = None, max_voxels=None) -> tuple:
    """Validate a NIfTI header before reading voxels; return ``(shape, volume index or None)``.

    Raises:
        InputTooLargeError: the header claims more than ``max_voxels`` voxels (see :mod:`medkt.io.checks`).
        InputError: 4-D without a volume choice, > 4-D, complex / RGB data, fewer than 2 axes, or a file
            too small for the data its header claims.
        GeometryError: a non-finite or singular affine, or a zero-length axis.
    """
    shape = tuple(int(d) for d in img.header.get_data_shape())
    if len(shape) < 2:
        raise InputError(f"NIfTI of shape {shape} has fewer than 2 spatial axes.", path=path)
    vidx = _check_volume_choice(shape, volume, path)
    dtype = np.dtype(img.get_data_dtype())
    if dtype.kind == "c":
        raise InputError(f"complex-valued voxels ({dtype}); medkt would silently drop the imaginary part.",
                         path=path, hint="save the magnitude (or the real part) as a real-valued NIfTI first, e.g. "
                                         "nib.Nifti1Image(np.abs(img.get_fdata(dtype=np.complex64)), img.affine)")
    if dtype.kind not in "biuf":
        raise InputError(f"voxel data type {dtype} (e.g. RGB NIfTI) is not supported; medkt reads scalar volumes.",
                         path=path, hint="convert to a grayscale scalar NIfTI first")
    spatial = shape[:3] if len(shape) >= 3 else shape + (1,)
    check_size(spatial, dtype.itemsize, path, max_voxels, what="NIfTI")
    if path is not None and getattr(img.dataobj, "offset", None) is not None:
        check_file_holds(path, math.prod(shape) * dtype.itemsize, int(img.dataobj.offset),
                         compressed=suffix_of(Path(path)).endswith(".gz"))
    check_geometry(img.affine, spatial, None, path)
    return shape, vidx


def _read_voxels(img, vidx, path, shape) -> np.ndarray:
    try:
        data = img.dataobj[..., vidx] if vidx is not None else img.dataobj
        return np.asarray(np.asanyarray(data))
    except MemoryError:
        n = math.prod(shape[:3])
        raise InputTooLargeError(f"not enough memory to hold the {n:,} voxels of this image.", path=path,
                                 hint="free memory, use a machine with more RAM, or crop/downsample the "
                                      "image first") from None
    except Exception as e:
        raise InputError(f"cannot read the voxel data ({type(e).__name__}: {e}); the file is probably "
                         "truncated or damaged.", path=path, hint="copy the file again from its source") from None


def volume_from_nibabel(img, *, volume: int | None = None, modality: str = "unknown",
                        case_id: str = "nifti", path: Path | None = None, max_voxels=None) -> ImageVolume:
    """Build an :class:`ImageVolume` from a nibabel NIfTI image (array ``(I, J, K)``, RAS affine).

    Raises:
        InputError / GeometryError / InputTooLargeError: see :func:`check_header`; also NaN-only data.
    """
    shape, vidx = check_header(img, path, volume=volume, max_voxels=max_voxels)
    data = _read_voxels(img, vidx, path, shape)
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))  # native byte order for NumPy/torch consumers
    if data.ndim == 2:
        data = data[:, :, None]
    warnings: list[str] = []
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.any():
            raise InputError("the volume contains no finite values (all NaN or infinite).", path=path,
                             hint="check the conversion that produced this file (and scl_slope/scl_inter)")
        if not finite.all():
            n = int(data.size - finite.sum())
            msg = (f"{n} of {data.size} voxels are NaN/inf; prepare_intensity replaces them with the "
                   "lowest finite value")
            warnings.append(msg)
            log.warning("%s: %s", path or case_id, msg)
    hdr = img.header.copy()
    affine = np.asarray(img.affine, dtype=np.float64)
    zooms = _spacing(img, affine, path, warnings)
    meta: dict[str, Any] = {"nifti_header": hdr, "source_paths": [str(path)] if path else [],
                            "original_shape": list(shape), "warnings": warnings,
                            "qform_code": int(hdr["qform_code"]), "sform_code": int(hdr["sform_code"])}
    if vidx is not None and len(shape) == 4:
        meta["volume_index"] = vidx
    return ImageVolume(array=data, affine=affine, spacing=zooms,
                       modality=modality or "unknown", case_id=case_id, kind="nifti", meta=meta)


class NiftiReader(ImageReader):
    """Reads ``.nii`` and ``.nii.gz`` files, one case per file."""

    kind = "nifti"

    def claims(self, path: Path) -> bool:
        return suffix_of(path) in NIFTI_SUFFIXES

    def scan(self, paths: list[Path], root: Path, **options: Any) -> list[Case]:
        volume = options.get("nifti_volume")
        cases = []
        for p in paths:
            case = Case(case_id=stem_of(p), kind=self.kind, paths=[p], root=root,
                        options={"nifti_volume": volume, "modality": options.get("modality"),
                                 "max_voxels": options.get("max_voxels")})
            try:
                img = _load(p)
                case.info = {"modality": options.get("modality") or "unknown",
                             "shape": [int(d) for d in img.header.get_data_shape()],
                             "spacing": [round(float(z), 6) for z in img.header.get_zooms()[:3]],
                             "orientation": "".join(_axcodes(img.affine)), "dtype": str(img.get_data_dtype())}
                check_header(img, p, volume=volume, max_voxels=options.get("max_voxels"))
            except InputError as e:
                case.error = e
            cases.append(case)
        return cases

    def read(self, case: Case) -> ImageVolume:
        path = case.paths[0]
        img = _load(path)
        vol = volume_from_nibabel(img, volume=case.options.get("nifti_volume"),
                                  modality=case.options.get("modality") or "unknown",
                                  case_id=case.case_id, path=path, max_voxels=case.options.get("max_voxels"))
        case.warnings.extend(vol.meta.get("warnings", []))
        return vol


def _axcodes(affine) -> tuple[str, ...]:
    import nibabel as nib
    try:
        return tuple(str(c) for c in nib.aff2axcodes(affine))
    except Exception:  # pragma: no cover - degenerate affine
        return ("?", "?", "?")
