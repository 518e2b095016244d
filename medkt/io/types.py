"""Core I/O data types: :class:`Case` (what discovery found) and :class:`ImageVolume` (what a reader returns).

Conventions (shared by every reader and writer in :mod:`medkt.io`):

* **3-D volumes** (``ImageVolume.ndim_spatial == 3``): ``array`` is indexed ``array[i, j, k]`` in
  NIfTI/nibabel voxel order, and ``affine`` maps ``(i, j, k, 1)`` to **RAS+ world millimetres**
  (x toward the patient's Right, y Anterior, z Superior), exactly as ``nibabel`` does.  For NIfTI
  input the array and affine are the file's own (no reorientation).  For DICOM input ``i`` runs
  along a row (increasing column index), ``j`` down the rows and ``k`` along the slice normal
  (``row_cosine x column_cosine``), i.e. ``array[i, j, k] == slice_k.pixel_array[j, i]``; the LPS
  patient coordinates of DICOM are flipped to RAS.  A mask written with ``write_mask`` therefore
  lands on the same world coordinate voxel for voxel.
* **2-D images** (``ndim_spatial == 2``): ``array`` is ``(H, W)`` grayscale or ``(H, W, 3)`` RGB,
  row 0 at the top.  ``affine`` maps ``(row, col, 0, 1)`` to millimetres in the image plane
  (pixel spacing on the diagonal; identity when unknown); it is *not* a patient coordinate.
* ``spacing`` is per spatial array axis, in millimetres (``(si, sj, sk)`` or ``(s_row, s_col)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import MedktError

KINDS = ("dicom", "nifti", "image2d", "array")


@dataclass
class Case:
    """One readable unit found by :func:`medkt.io.discover_cases`.

    Attributes:
        case_id: stable, filesystem-safe identifier (used for output names and resume markers).
        kind: ``"dicom"`` (one series), ``"nifti"`` (one file) or ``"image2d"`` (one PNG/JPEG/TIFF).
        paths: the files that make up the case (DICOM: every instance of the series).
        root: the input path the user gave (the *input tree* that outputs must stay out of).
        error: a :class:`MedktError` if the case is known to be unreadable (``read_case`` raises it).
        warnings: non-fatal findings (recoveries that were applied), also logged.
        info: header-level summary without reading pixels: ``modality``, ``shape``, ``spacing``,
            ``series_uid``, ``description`` ... (what ``medkt inspect`` shows).
        options: reader options chosen at discovery (e.g. ``nifti_volume``).
    """

    case_id: str
    kind: str
    paths: list[Path]
    root: Path | None = None
    error: MedktError | None = None
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> str | None:
        """The reason this case cannot be read, or ``None`` when it looks readable."""
        return self.error.format() if self.error is not None else None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __str__(self) -> str:
        return self.case_id


@dataclass
class ImageVolume:
    """An image with its geometry and provenance.

    Attributes:
        array: ``(I, J, K)`` for volumes (NIfTI voxel order, see module docstring), ``(H, W)`` or
            ``(H, W, 3)`` for 2-D images.  Intensities are physical (DICOM rescale applied, NIfTI
            ``scl_slope``/``scl_inter`` applied); not windowed.
        affine: ``4 x 4`` float64, voxel index -> RAS+ world mm (2-D: -> image-plane mm).
        spacing: voxel size per spatial array axis in mm.
        modality: ``"CT"``, ``"MR"``, ``"US"``, ``"CR"``, ``"DX"``, ``"XR"``, ... or ``"unknown"``.
        case_id: identifier of the source case (``"array"`` for in-memory input).
        kind: ``"dicom"``, ``"nifti"``, ``"image2d"`` or ``"array"``.
        meta: provenance.  DICOM: ``source_paths`` (one per k, or one multi-frame file),
            ``sop_instance_uids``, ``series_instance_uid``, ``study_instance_uid``,
            ``frame_of_reference_uid``, ``photometric``.  NIfTI: ``nifti_header`` (a copy of the
            original header; writers reuse its qform/sform), ``volume_index`` for 4-D input.
        source_root: the input tree (writers refuse to write inside it); ``None`` for in-memory input.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, ...]
    modality: str = "unknown"
    case_id: str = "array"
    kind: str = "array"
    meta: dict[str, Any] = field(default_factory=dict)
    source_root: Path | None = None

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)

    @property
    def is_2d(self) -> bool:
        """True for 2-D images (``(H, W)`` or ``(H, W, 3)``)."""
        return len(self.spacing) == 2

    @property
    def ndim_spatial(self) -> int:
        return len(self.spacing)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape of the spatial axes (drops the RGB axis of 2-D colour images)."""
        return tuple(self.array.shape[: self.ndim_spatial])

    def voxel_to_world(self, ijk) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` (or ``(..., 2)`` for 2-D) to world mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        if ijk.shape[-1] == 2:
            ijk = np.concatenate([ijk, np.zeros(ijk.shape[:-1] + (1,))], axis=-1)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def summary(self) -> dict[str, Any]:
        """A small JSON-able description (for run.json / ``medkt inspect``)."""
        return {"case_id": self.case_id, "kind": self.kind, "modality": self.modality,
                "shape": list(self.array.shape), "dtype": str(self.array.dtype),
                "spacing": [round(s, 6) for s in self.spacing]}
