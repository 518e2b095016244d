"""Reader contract and registry (in the spirit of MONAI ``ImageReader`` / nnU-Net ``BaseReaderWriter``).

A reader handles one ``kind`` of input.  Discovery asks each registered reader, in order, whether it
*claims* a file; the reader then groups its files into :class:`~medkt.io.types.Case` objects from
headers alone (``scan``) and later reads one case into an :class:`~medkt.io.types.ImageVolume`
(``read``).  Every reader returns arrays in the conventions of :mod:`medkt.io.types`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import InputError, look_up
from medkt.io.checks import check_geometry, check_volume
from medkt.io.types import Case, ImageVolume


class ImageReader(ABC):
    """Base class of medkt readers.

    Subclasses set :attr:`kind` and implement :meth:`claims`, :meth:`scan` and :meth:`read`.
    """

    kind: str = ""

    @abstractmethod
    def claims(self, path: Path) -> bool:
        """Cheap test (suffix / magic bytes): should this reader handle ``path``?"""

    @abstractmethod
    def scan(self, paths: list[Path], root: Path, **options: Any) -> list[Case]:
        """Group claimed ``paths`` into cases using headers only; unreadable ones get ``Case.error``."""

    @abstractmethod
    def read(self, case: Case) -> ImageVolume:
        """Read the pixels of ``case``; raise a :class:`~medkt.errors.InputError` subclass if impossible."""


_READERS: dict[str, ImageReader] = {}


def register_reader(reader: ImageReader, *, first: bool = False) -> ImageReader:
    """Register ``reader`` under ``reader.kind`` (``first=True`` gives it priority in discovery)."""
    global _READERS
    if first:
        _READERS = {reader.kind: reader, **{k: v for k, v in _READERS.items() if k != reader.kind}}
    else:
        _READERS[reader.kind] = reader
    return reader


def _ensure_builtin() -> None:
    if _READERS:
        return
    from medkt.io.dicom import DicomReader
    from medkt.io.image2d import Image2DReader
    from medkt.io.nifti import NiftiReader
    for r in (NiftiReader(), Image2DReader(), DicomReader()):
        _READERS.setdefault(r.kind, r)


def list_readers() -> list[ImageReader]:
    """Registered readers in discovery order."""
    _ensure_builtin()
    return list(_READERS.values())


def get_reader(kind: str) -> ImageReader:
    """The reader registered for ``kind`` (``"dicom"``, ``"nifti"``, ``"image2d"``)."""
    _ensure_builtin()
    return look_up("reader", kind, _READERS)


def read_case(case: Case) -> ImageVolume:
    """Read one discovered case.

    Raises:
        InputError: ``case.error`` when discovery already found the case unreadable, or the
            reader's own error (corrupt pixels, NaN-only data, missing decoder...).
    """
    if case.error is not None:
        raise case.error
    vol = get_reader(case.kind).read(case)
    vol.case_id = case.case_id
    vol.source_root = case.root
    check_volume(vol, case.paths[0] if len(case.paths) == 1 else case.paths[0].parent)
    return vol


def read_image(path: str | Path, *, nifti_volume: int | None = None, modality: str | None = None,
               max_voxels: int | None = None) -> ImageVolume:
    """Read a path holding exactly one case (a NIfTI file, a 2-D image, a single DICOM series).

    ``max_voxels`` raises the size limit (default :data:`medkt.io.checks.DEFAULT_MAX_VOXELS`).

    Raises:
        InputError: the path holds several cases (use :func:`medkt.io.discover_cases`) or none.
    """
    from medkt.io.discover import discover_cases
    cases = discover_cases(path, nifti_volume=nifti_volume, modality=modality, max_voxels=max_voxels)
    if len(cases) != 1:
        raise InputError(f"expected one image, found {len(cases)} cases: "
                         f"{', '.join(c.case_id for c in cases[:5])}{'...' if len(cases) > 5 else ''}.",
                         path=path, hint="use medkt.io.discover_cases() to iterate over them")
    return read_case(cases[0])


# ----------------------------------------------------------------------------- in-memory input
def volume_from_array(array, affine=None, *, modality: str = "unknown", spacing=None,
                      rgb: bool | None = None, case_id: str = "array") -> ImageVolume:
    """Wrap an in-memory array (NumPy or CPU tensor) as an :class:`ImageVolume`.

    Args:
        array: ``(I, J, K)`` volume in the voxel order that ``affine`` describes, or a 2-D image
            ``(H, W)`` / ``(H, W, 3)``.  A 3-D ``uint8`` array whose last axis has length 3 and that
            comes without ``affine``/``spacing`` is taken as RGB; pass ``rgb=`` to decide explicitly.
        affine: ``4 x 4`` voxel -> RAS+ mm.  Default: ``diag(spacing)`` (spacing default 1 mm).
        modality: e.g. ``"CT"``; steers :func:`~medkt.io.prepare_intensity` defaults.
        spacing: voxel size per spatial axis; derived from ``affine`` column norms when omitted.

    Raises:
        InputError: unsupported number of dimensions, an affine/spacing of the wrong size, complex data.
        GeometryError: a non-finite or singular affine, a zero-length axis, a non-positive spacing.
    """
    arr = np.asarray(array)
    if rgb is None:
        rgb = arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8 and affine is None and spacing is None
    ndim = arr.ndim - (1 if rgb else 0)
    if ndim not in (2, 3) or (rgb and ndim != 2):
        raise InputError(f"in-memory image of shape {arr.shape} is not a 2-D image (H, W), (H, W, 3) "
                         "or a 3-D volume (I, J, K).", hint="squeeze extra axes or pick one volume first")
    if affine is None:
        sp = [1.0] * ndim if spacing is None else [float(s) for s in spacing]
        if len(sp) != ndim:
            raise InputError(f"spacing {spacing} does not match a {ndim}-D image.")
        affine = np.diag(sp + [1.0] * (4 - ndim))
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"affine must be 4x4, got shape {affine.shape}.")
    if spacing is None:
        spacing = np.linalg.norm(affine[:3, :ndim], axis=0)
    if np.iscomplexobj(arr):
        raise InputError(f"complex-valued array ({arr.dtype}); medkt would silently drop the imaginary part.",
                         hint="pass np.abs(array) (magnitude) or array.real explicitly")
    check_geometry(affine, arr.shape[:ndim], spacing, None, ndim=ndim)
    return ImageVolume(array=arr, affine=affine, spacing=tuple(spacing), modality=modality or "unknown",
                       case_id=case_id, kind="array", meta={"source": "in-memory"})


def volume_from_nifti(img, *, volume: int | None = None, modality: str = "unknown",
                      case_id: str = "nifti", max_voxels: int | None = None) -> ImageVolume:
    """Wrap an in-memory ``nibabel`` NIfTI image; its header is kept so masks reuse qform/sform.

    Raises:
        InputError: a 4-D image without ``volume``, complex data, or NaN-only data.
        GeometryError: a non-finite or singular affine, or a zero-length axis.
        InputTooLargeError: more than ``max_voxels`` voxels (matters for file-backed proxies).
    """
    from medkt.io.nifti import volume_from_nibabel
    return volume_from_nibabel(img, volume=volume, modality=modality, case_id=case_id, path=None,
                               max_voxels=max_voxels)
