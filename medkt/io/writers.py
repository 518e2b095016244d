"""Writers for masks and saliency maps in the source geometry, safely.

Every writer

* refuses a path inside the input tree (``reference.source_root`` / its source files) -> :class:`OutputError`;
* refuses an existing file unless ``overwrite=True`` -> :class:`OutputError`;
* writes to a temp file and renames it (``medkt.runs.atomic_path``; inside an output folder a run
  holds, the temp file lives in ``OUT/.medkt-tmp/``), so a crash never leaves a half-written output.

NIfTI outputs copy the reference NIfTI header (qform **and** sform with their codes, pixdim, units)
and change only shape, dtype, scaling (``scl_slope=1, scl_inter=0``) and intent; for DICOM or
in-memory references the affine is stored as sform and qform (code 1, scanner).  The written file
is loaded back and its geometry compared before the rename.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medkt.errors import OutputError, UnknownNameError
from medkt.io._fs import suffix_of
from medkt.io.types import ImageVolume
from medkt.runs import atomic_path

log = logging.getLogger("medkt.io")

MASK_FORMATS = {".nii": "nifti", ".nii.gz": "nifti", ".dcm": "dicom-seg", ".png": "png", ".npy": "npy"}


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except (ValueError, OSError):
        return False


def guard_output(path: str | Path, reference: ImageVolume | None = None, *, overwrite: bool = False,
                 inputs=()) -> Path:
    """Check that ``path`` may be written: outside every input tree, and new unless ``overwrite``.

    Raises:
        OutputError: the path is inside an input folder, is an input file, or exists without ``overwrite``.
    """
    path = Path(path)
    roots = [Path(p) for p in inputs]
    if reference is not None:
        if reference.source_root is not None:
            roots.append(Path(reference.source_root))
        roots.extend(Path(p) for p in reference.meta.get("source_paths", []) if p)
    for r in roots:
        if (r.is_dir() and _inside(path, r)) or (r.exists() and path.exists() and path.resolve() == r.resolve()):
            raise OutputError(f"refusing to write {path}: it is inside the input {r}; medkt never writes into "
                              "an input tree.", path=path, hint="choose an output folder outside the input folder")
    if path.exists() and not overwrite:
        raise OutputError("the output file already exists.", path=path,
                          hint="pass --overwrite (overwrite=True) to replace it, or --resume to skip finished cases")
    if path.exists() and path.is_dir():
        raise OutputError("the output path is a folder.", path=path, hint="give a file name")
    return path


def _format(path: Path, format: str | None, allowed: dict) -> str:
    if format is None:
        fmt = allowed.get(suffix_of(path))
        if fmt is None:
            raise OutputError(f"cannot tell the output format from the suffix '{suffix_of(path)}'.", path=path,
                              hint=f"use one of {', '.join(sorted(allowed))} or pass format=")
        return fmt
    fmt = format.lower().replace("_", "-")
    fmt = {"nii": "nifti", "nii.gz": "nifti", "seg": "dicom-seg", "dicomseg": "dicom-seg"}.get(fmt, fmt)
    if fmt not in set(allowed.values()):
        raise UnknownNameError("output format", format, set(allowed.values()))
    return fmt


def _mask_array(mask, reference: ImageVolume) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != tuple(reference.spatial_shape):
        raise OutputError(f"mask shape {m.shape} differs from the image shape {reference.spatial_shape}; a mask "
                          "must be on the input grid (use medkt.io.reassemble for 2-D slice masks).")
    if m.dtype == bool:
        return m.astype(np.uint8)
    if np.issubdtype(m.dtype, np.floating):
        if not np.all(np.isfinite(m)) or not np.array_equal(m, np.round(m)):
            raise OutputError("mask holds non-integer values; masks are integer labels.",
                              hint="threshold it first, or write it with write_saliency()")
    if m.size and m.min() < 0:
        raise OutputError("mask holds negative labels.")
    top = int(m.max()) if m.size else 0
    return m.astype(np.uint8 if top <= 255 else np.uint16)


def _nifti_image(data: np.ndarray, reference: ImageVolume, *, intent: str, descrip: str, cal=None):
    import nibabel as nib
    hdr0 = reference.meta.get("nifti_header")
    if reference.is_2d:
        raise OutputError("NIfTI output needs a 3-D reference; this image is 2-D.", hint="write PNG or .npy")
    if hdr0 is not None:
        klass = nib.Nifti2Image if isinstance(hdr0, nib.Nifti2Header) else nib.Nifti1Image
        hdr = klass.header_class.from_header(hdr0)
    else:
        klass, hdr = nib.Nifti1Image, nib.Nifti1Header()
        aff = reference.affine
        hdr.set_sform(aff, code=1)
        rz = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
        if np.allclose(rz.T @ rz, np.eye(3), atol=1e-5):
            hdr.set_qform(aff, code=1)
        else:
            hdr.set_qform(None, code=0)
            log.warning("affine is not orthogonal; the qform is left unset (sform only)")
        hdr.set_xyzt_units("mm", "sec")
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    if cal is None:
        cal = (0.0, float(data.max())) if data.size else (0.0, 0.0)
    hdr["cal_min"], hdr["cal_max"] = cal
    hdr.set_intent(intent)
    hdr["descrip"] = descrip[:79].encode()
    img = klass(data, None, header=hdr)
    return img, img.header


_GEOM_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                "qoffset_z", "srow_x", "srow_y", "srow_z")


def _save_nifti_checked(img, hdr, reference: ImageVolume, path: Path) -> Path:
    import nibabel as nib
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
        back = nib.load(str(tmp))
        h = back.header
        same = all(np.array_equal(np.asarray(h[f]), np.asarray(hdr[f])) for f in _GEOM_FIELDS)
        same = same and np.array_equal(np.asarray(h["pixdim"])[:4], np.asarray(hdr["pixdim"])[:4])
        same = same and np.allclose(back.affine, reference.affine, atol=1e-4)
        if not same or tuple(back.shape) != tuple(reference.spatial_shape):
            raise OutputError("the written NIfTI does not reproduce the input geometry; nothing was written.",
                              path=path, hint="report this as a medkt bug with the input header")
    return path


def write_mask(mask, reference: ImageVolume, path: str | Path, format: str | None = None, *,
               overwrite: bool = False, labels: dict[int, str] | None = None, inputs=(),
               png_binary_value: int = 255) -> Path:
    """Write a label mask on the reference grid.

    Args:
        mask: integer/bool labels with ``reference.spatial_shape`` (``(I, J, K)`` or ``(H, W)``).
        reference: the image the mask belongs to (from :func:`~medkt.io.read_case` or ``volume_from_*``).
        path: output file; the format follows the suffix (``.nii.gz``/``.nii``, ``.dcm`` = DICOM-SEG,
            ``.png``, ``.npy``) unless ``format`` is ``"nifti"``, ``"dicom-seg"``, ``"png"`` or ``"npy"``.
        overwrite: replace an existing file.
        labels: ``{label_value: name}`` for DICOM-SEG segment descriptions.
        inputs: further input paths the output must stay out of.
        png_binary_value: PNG only: a binary mask is stored as ``0/png_binary_value`` (255 shows in
            any viewer); multi-label masks keep their label values.

    Returns:
        the written path.

    Raises:
        OutputError: unsafe path, existing file, wrong shape, non-integer mask, 3-D mask as PNG.
        OptionalDependencyError: DICOM-SEG without highdicom.
    """
    path = guard_output(path, reference, overwrite=overwrite, inputs=inputs)
    fmt = _format(path, format, MASK_FORMATS)
    data = _mask_array(mask, reference)
    if fmt == "nifti":
        img, hdr = _nifti_image(data, reference, intent="label", descrip="medkt mask")
        return _save_nifti_checked(img, hdr, reference, path)
    if fmt == "dicom-seg":
        from medkt.io.dicom_seg import write_dicom_seg
        return write_dicom_seg(data, reference, path, labels=labels)
    if fmt == "png":
        if not reference.is_2d:
            raise OutputError("PNG masks are for 2-D images; this reference is a 3-D volume.", path=path,
                              hint="write .nii.gz or DICOM-SEG, or slice the volume first")
        out = data
        if data.size and data.max() <= 1:
            out = (data * png_binary_value).astype(np.uint8)
        from PIL import Image
        with atomic_path(path) as tmp:
            Image.fromarray(out).save(tmp, format="PNG")
        return path
    with atomic_path(path) as tmp:  # npy
        np.save(tmp, data)
    return path


def write_saliency(saliency, reference: ImageVolume, path: str | Path, format: str | None = None, *,
                   overwrite: bool = False, inputs=()) -> Path:
    """Write a float saliency / probability map on the reference grid as float32 NIfTI or ``.npy``.

    ``saliency`` must have ``reference.spatial_shape``.  NIfTI output reuses the reference header
    exactly like :func:`write_mask` (so it overlays as a heat map); 2-D references need ``.npy``.
    """
    path = guard_output(path, reference, overwrite=overwrite, inputs=inputs)
    fmt = _format(path, format, {".nii": "nifti", ".nii.gz": "nifti", ".npy": "npy"})
    s = np.asarray(saliency, dtype=np.float32)
    if s.shape != tuple(reference.spatial_shape):
        raise OutputError(f"saliency shape {s.shape} differs from the image shape {reference.spatial_shape}.",
                          path=path)
    if fmt == "nifti":
        if not s.size:
            cal = (0.0, 0.0)
        elif np.isfinite(s).all():  # the usual case: no copy of the values
            cal = (float(s.min()), float(s.max()))
        else:
            finite = s[np.isfinite(s)]
            cal = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        img, hdr = _nifti_image(s, reference, intent="none", descrip="medkt saliency", cal=cal)
        return _save_nifti_checked(img, hdr, reference, path)
    with atomic_path(path) as tmp:
        np.save(tmp, s)
    return path
