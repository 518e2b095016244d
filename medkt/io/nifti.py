"""NIfTI reader (``.nii`` / ``.nii.gz``, NIfTI-1 and NIfTI-2) built on nibabel.

The array is returned in the file's own voxel order ``(I, J, K)`` with ``img.affine`` (sform when
its code is set, else qform), so nothing is reoriented and a mask written back with the stored
header overlays exactly.  ``scl_slope``/``scl_inter`` are applied (nibabel's ``dataobj``).  4-D
files need a volume index (``nifti_volume``); a trailing singleton 4th axis is dropped.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import InputError
from medkt.io._fs import NIFTI_SUFFIXES, check_readable, stem_of, suffix_of
from medkt.io.readers import ImageReader
from medkt.io.types import Case, ImageVolume

log = logging.getLogger("medkt.io")


def _load(path: Path):
    import nibabel as nib
    check_readable(path)
    try:
        img = nib.load(str(path))
        _ = img.header.get_data_shape()
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


def volume_from_nibabel(img, *, volume: int | None = None, modality: str = "unknown",
                        case_id: str = "nifti", path: Path | None = None) -> ImageVolume:
    """Build an :class:`ImageVolume` from a nibabel NIfTI image (array ``(I, J, K)``, RAS affine)."""
    shape = tuple(img.header.get_data_shape())
    vidx = _check_volume_choice(shape, volume, path)
    if len(shape) < 2:
        raise InputError(f"NIfTI of shape {shape} has fewer than 2 spatial axes.", path=path)
    try:
        if vidx is not None:
            data = np.asanyarray(img.dataobj[..., vidx])
        else:
            data = np.asanyarray(img.dataobj)
    except Exception as e:
        raise InputError(f"cannot read the voxel data ({type(e).__name__}: {e}); the file is probably "
                         "truncated.", path=path, hint="copy the file again from its source") from None
    data = np.asarray(data)
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))  # native byte order for NumPy/torch consumers
    if data.ndim == 2:
        data = data[:, :, None]
    warnings: list[str] = []
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.any():
            raise InputError("the volume contains no finite values (all NaN or infinite).", path=path,
                             hint="check the conversion that produced this file")
        if not finite.all():
            n = int(data.size - finite.sum())
            msg = (f"{n} of {data.size} voxels are NaN/inf; prepare_intensity replaces them with the "
                   "lowest finite value")
            warnings.append(msg)
            log.warning("%s: %s", path or case_id, msg)
    hdr = img.header.copy()
    zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
    if len(zooms) < 3:
        zooms = zooms + (1.0,) * (3 - len(zooms))
    meta: dict[str, Any] = {"nifti_header": hdr, "source_paths": [str(path)] if path else [],
                            "original_shape": list(shape), "warnings": warnings,
                            "qform_code": int(hdr["qform_code"]), "sform_code": int(hdr["sform_code"])}
    if vidx is not None and len(shape) == 4:
        meta["volume_index"] = vidx
    return ImageVolume(array=data, affine=np.asarray(img.affine, dtype=np.float64), spacing=zooms,
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
                        options={"nifti_volume": volume, "modality": options.get("modality")})
            try:
                img = _load(p)
                shape = tuple(img.header.get_data_shape())
                _check_volume_choice(shape, volume, p)
                case.info = {"modality": options.get("modality") or "unknown", "shape": list(shape),
                             "spacing": [round(float(z), 6) for z in img.header.get_zooms()[:3]],
                             "orientation": "".join(_axcodes(img.affine)), "dtype": str(img.get_data_dtype())}
            except InputError as e:
                case.error = e
            cases.append(case)
        return cases

    def read(self, case: Case) -> ImageVolume:
        path = case.paths[0]
        img = _load(path)
        vol = volume_from_nibabel(img, volume=case.options.get("nifti_volume"),
                                  modality=case.options.get("modality") or "unknown",
                                  case_id=case.case_id, path=path)
        case.warnings.extend(vol.meta.get("warnings", []))
        return vol


def _axcodes(affine) -> tuple[str, ...]:
    import nibabel as nib
    try:
        return tuple(str(c) for c in nib.aff2axcodes(affine))
    except Exception:  # pragma: no cover - degenerate affine
        return ("?", "?", "?")
