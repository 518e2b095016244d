"""Geometry of DICOM slice stacks: sort along the slice normal, detect tilt / irregular spacing, build affines.

Conventions:

* ``ImageOrientationPatient`` (IOP) = ``(row_cosine, column_cosine)`` in LPS patient coordinates;
  ``row_cosine`` is the direction of *increasing column index* within a row.
* The slice normal is ``n = row_cosine x column_cosine``; slices are ordered by
  ``dot(ImagePositionPatient, n)`` ascending, never by InstanceNumber or file name.
* The returned affine maps ``(i, j, k)`` = (column, row, slice) to **RAS+** mm:
  ``LPS(i, j, k) = IPP_0 + i * dc * row_cosine + j * dr * column_cosine + k * step``
  where ``PixelSpacing = (dr, dc)`` (row spacing first, as in DICOM) and ``step`` is the vector from
  the first to the next slice; RAS = ``diag(-1, -1, 1) @ LPS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medkt.errors import GeometryError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Slice gaps may differ from the median by this fraction (or by ``SPACING_ABS_TOL`` mm) and still be regular.
SPACING_REL_TOL = 0.01
SPACING_ABS_TOL = 0.01
#: Tilt (angle between the stacking direction and the slice normal) above which a stack is refused.
TILT_TOL_DEG = 0.1


@dataclass
class FrameRecord:
    """One 2-D frame: a single-frame instance, or one frame of a multi-frame instance."""

    path: Path
    sop_uid: str
    frame: int | None = None          # 0-based frame index inside a multi-frame file
    position: np.ndarray | None = None     # IPP, LPS mm
    orientation: np.ndarray | None = None  # IOP (6,)
    pixel_spacing: tuple[float, float] | None = None   # (row spacing, column spacing)
    slope: float = 1.0
    intercept: float = 0.0
    instance_number: int | None = None
    extra: dict = field(default_factory=dict)


def _vector(value, n: int, name: str, where) -> np.ndarray:
    """``value`` as ``n`` finite floats, else a :class:`GeometryError` naming ``where`` and ``name``."""
    try:
        v = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise GeometryError(f"{name} holds a non-numeric value ({value!r}).", path=where,
                            hint="the header is damaged; export the series again") from None
    if v.size != n:
        raise GeometryError(f"{name} has {v.size} values, expected {n}.", path=where,
                            hint="the header is damaged; export the series again")
    if not np.isfinite(v).all():
        raise GeometryError(f"{name} holds NaN or infinite values.", path=where,
                            hint="the header is damaged; export the series again")
    return v


def normal_of(iop, where: str | Path | None = None) -> np.ndarray:
    """Unit slice normal ``row_cosine x column_cosine`` of a 6-value ImageOrientationPatient.

    Raises:
        GeometryError: IOP of the wrong length, non-numeric or non-finite, or with parallel/zero directions.
    """
    iop = _vector(iop, 6, "ImageOrientationPatient", where)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise GeometryError("ImageOrientationPatient row and column directions are parallel or zero.", path=where,
                            hint="the header is damaged; export the series again")
    return n / norm


def check_orientations(frames: list[FrameRecord], where: str | Path | None = None) -> np.ndarray:
    """Return the common IOP; raise :class:`GeometryError` if frames disagree (e.g. a localizer mixed in)."""
    groups: list[tuple[np.ndarray, int]] = []
    for f in frames:
        for i, (iop, n) in enumerate(groups):
            if np.allclose(iop, f.orientation, atol=1e-4):
                groups[i] = (iop, n + 1)
                break
        else:
            groups.append((np.asarray(f.orientation, dtype=np.float64), 1))
    if len(groups) > 1:
        desc = "; ".join(f"{n} slices with IOP {np.round(iop, 3).tolist()}" for iop, n in groups)
        raise GeometryError(f"slices of one series have different orientations ({desc}); a localizer or "
                            "reformatted images are mixed into the series.", path=where,
                            hint="move the extra images to another folder, or export the axial series alone")
    return groups[0][0]


def sort_frames(frames: list[FrameRecord], where: str | Path | None = None) -> tuple[list[FrameRecord], list[str]]:
    """Sort frames along the slice normal and validate the stack.

    Returns:
        ``(sorted_frames, warnings)``.

    Raises:
        GeometryError: differing orientations, duplicate positions, gantry tilt, or irregular spacing.
    """
    warnings: list[str] = []
    for f in frames:
        f.orientation = _vector(f.orientation, 6, "ImageOrientationPatient", f.path)
        f.position = _vector(f.position, 3, "ImagePositionPatient", f.path)
    iop = check_orientations(frames, where)
    spacings = {tuple(round(x, 4) for x in f.pixel_spacing) for f in frames if f.pixel_spacing}
    if len(spacings) > 1:
        raise GeometryError(f"slices of one series have different pixel spacings {sorted(spacings)}.", path=where,
                            hint="export each acquisition as its own series, or resample first")
    n = normal_of(iop, where)
    dist = np.array([float(np.dot(f.position, n)) for f in frames])
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    dist = dist[order]
    if len(frames) < 2:
        return frames, warnings
    gaps = np.diff(dist)
    dup = np.flatnonzero(gaps < 1e-3)
    if dup.size:
        pos = sorted({round(float(dist[i]), 3) for i in dup})
        raise GeometryError(f"{dup.size} slices share a position with another slice (at {pos[:5]} mm along the "
                            "normal); the series holds several acquisitions, echoes or time points.", path=where,
                            hint="split the series (e.g. by AcquisitionNumber/EchoTime/TemporalPositionIndex) "
                                 "and pass one stack at a time")
    pos = np.stack([f.position for f in frames]).astype(np.float64)
    total = pos[-1] - pos[0]
    along = float(np.dot(total, n))
    inplane = float(np.linalg.norm(total - along * n))
    tilt = math.degrees(math.atan2(inplane, abs(along)))
    if tilt > TILT_TOL_DEG:
        gtilt = frames[0].extra.get("gantry_tilt")
        raise GeometryError(f"gantry tilt: the slices are stacked {tilt:.2f} degrees off their normal"
                            + (f" (GantryDetectorTilt {gtilt})" if gtilt not in (None, "") else "")
                            + "; a volume with a sheared grid would be misplaced by most viewers.", path=where,
                            hint="resample to an orthogonal grid first (e.g. dcm2niix, which corrects tilt), "
                                 "then pass the NIfTI")
    med = float(np.median(gaps))
    tol = max(SPACING_ABS_TOL, SPACING_REL_TOL * med)
    bad = np.flatnonzero(np.abs(gaps - med) > tol)
    if bad.size:
        examples = ", ".join(f"{gaps[i]:.3g} mm between slices {i} and {i + 1}" for i in bad[:3])
        raise GeometryError(f"inconsistent slice spacing: most slices are {med:.4g} mm apart but {bad.size} "
                            f"gap(s) differ ({examples}); slices are missing or the series mixes stacks.",
                            path=where, hint="check that the export is complete; resample to regular spacing "
                                             "(e.g. dcm2niix) if the gaps are real")
    if np.abs(gaps - med).max() > 1e-3:
        warnings.append(f"slice gaps vary by up to {np.abs(gaps - med).max():.4f} mm (within tolerance)")
    return frames, warnings


def stack_affine(frames: list[FrameRecord], default_step: float = 1.0) -> np.ndarray:
    """Voxel ``(i, j, k)`` -> RAS+ mm for frames already sorted by :func:`sort_frames`."""
    f0 = frames[0]
    iop = np.asarray(f0.orientation, dtype=np.float64)
    dr, dc = f0.pixel_spacing if f0.pixel_spacing else (1.0, 1.0)
    m = np.eye(4)
    m[:3, 0] = iop[:3] * dc
    m[:3, 1] = iop[3:] * dr
    if len(frames) > 1:
        m[:3, 2] = (np.asarray(frames[-1].position, dtype=np.float64) - f0.position) / (len(frames) - 1)
    else:
        m[:3, 2] = normal_of(iop, f0.path) * default_step
    m[:3, 3] = np.asarray(f0.position, dtype=np.float64)
    return LPS_TO_RAS @ m


def world_lps(frame: FrameRecord, i: float, j: float) -> np.ndarray:
    """LPS mm of column ``i``, row ``j`` of one frame, straight from its own IPP/IOP/PixelSpacing."""
    iop = np.asarray(frame.orientation, dtype=np.float64)
    dr, dc = frame.pixel_spacing
    return np.asarray(frame.position, dtype=np.float64) + i * dc * iop[:3] + j * dr * iop[3:]
