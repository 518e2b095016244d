"""DICOM header parsing for :mod:`medkt.io.dicom`: strict numeric attributes, frame records, pixel-size checks.

Damaged headers are the norm in real archives, so every attribute medkt relies on is parsed here
with a typed error naming the file and the attribute: positions and orientations of the wrong
length, text where numbers belong, NaN/inf, an unreadable NumberOfFrames, pixel data shorter than
Rows x Columns x frames claim.  See :func:`frames_of` for the geometry conventions (LPS, IOP =
row cosine then column cosine, PixelSpacing = row spacing then column spacing).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medkt.errors import GeometryError, InputError
from medkt.io.dicom_geometry import FrameRecord

log = logging.getLogger("medkt.io")

#: Attributes whose values medkt relies on: an unreadable value (pydicom converts lazily, so a damaged
#: value raises on first access) is an InputError naming the attribute.
_STRICT_ATTRS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                 "PixelRepresentation", "PhotometricInterpretation", "NumberOfFrames", "Modality",
                 "SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                 "ImagerPixelSpacing", "RescaleSlope", "RescaleIntercept", "DoseGridScaling", "GridFrameOffsetVector",
                 "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "ModalityLUTSequence")
#: Descriptive attributes: an unreadable value is dropped with a warning.
_LENIENT_ATTRS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "FrameOfReferenceUID", "SeriesNumber",
                  "SeriesDescription", "InstanceNumber", "GantryDetectorTilt", "WindowCenter", "WindowWidth",
                  "SpacingBetweenSlices", "SliceThickness")


def check_values(ds, path) -> None:
    """Convert the attributes medkt reads once, so a damaged value fails here with a clear error.

    Raises:
        InputError: a value of :data:`_STRICT_ATTRS` cannot be converted (e.g. ``NumberOfFrames`` "1e400").
    """
    for kw in _STRICT_ATTRS + _LENIENT_ATTRS:
        try:
            if kw not in ds:
                continue
            _ = ds[kw].value
        except Exception as e:  # noqa: BLE001 - pydicom raises ValueError, OverflowError, TypeError...
            if kw in _STRICT_ATTRS:
                raise InputError(f"the header attribute {kw} holds an unreadable value ({type(e).__name__}: {e}).",
                                 path=path, hint="the header is damaged; export the image again") from None
            log.warning("%s: unreadable %s dropped (%s: %s)", path, kw, type(e).__name__, e)
            del ds[kw]


def as_float(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return default


def as_int(v, default: int) -> int:
    """``int(v)`` for a finite number, else ``default`` (damaged headers hold None, '', NaN, text...)."""
    x = as_float(v, None)
    return int(x) if x is not None and np.isfinite(x) else default


def first_value(v):
    """The first value of a possibly multi-valued element, as a float (``None`` if absent/empty/non-numeric)."""
    if v is None or isinstance(v, (str, bytes)):
        return as_float(v)
    try:
        return as_float(v[0]) if len(v) else None
    except TypeError:
        return as_float(v)


def parse_numbers(value, name: str, path, n: int | None = None, *, positive: bool = False) -> np.ndarray | None:
    """A DICOM numeric element as a float array (``None`` when absent or empty).

    Raises:
        GeometryError: the element has the wrong number of values, a non-numeric or non-finite value,
            or (``positive``) a value that is not > 0; the message names the file and the attribute.
    """
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") else list(value)
    if not items:
        return None
    try:
        arr = np.array([float(x) for x in items], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise GeometryError(f"{name} holds a non-numeric value ({list(map(str, items))[:6]}).", path=path,
                            hint="the header is damaged; export the series again") from None
    if n is not None and arr.size != n:
        raise GeometryError(f"{name} has {arr.size} values, expected {n}.", path=path,
                            hint="the header is damaged; export the series again")
    if not np.isfinite(arr).all():
        raise GeometryError(f"{name} holds NaN or infinite values.", path=path,
                            hint="the header is damaged; export the series again")
    if positive and not (arr > 0).all():
        raise GeometryError(f"{name} must be positive, got {arr.tolist()}.", path=path,
                            hint="the header is damaged; export the series again")
    return arr


def parse_orientation(value, path, name: str = "ImageOrientationPatient") -> np.ndarray | None:
    """IOP as 6 floats whose two direction cosines are unit length and orthogonal (within 1e-2)."""
    iop = parse_numbers(value, name, path, 6)
    if iop is None:
        return None
    r, c = iop[:3], iop[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-2 or abs(np.linalg.norm(c) - 1) > 1e-2 or abs(float(np.dot(r, c))) > 1e-2:
        raise GeometryError(f"{name} {np.round(iop, 4).tolist()} is not two orthogonal unit vectors.", path=path,
                            hint="the header is damaged; export the series again")
    return iop


def _rescale_pair(slope, intercept, path) -> tuple[float, float]:
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise InputError(f"RescaleSlope/RescaleIntercept ({slope}, {intercept}) is not finite.", path=path,
                         hint="the header is damaged; export the series again")
    return slope, intercept


def _item(seq_owner, name):
    seq = getattr(seq_owner, name, None)
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError, KeyError):
        return None


def n_frames(ds, path=None) -> int:
    """NumberOfFrames (1 when absent); a value below 1 or not a number is an :class:`InputError`."""
    v = ds.get("NumberOfFrames")
    if v is None or (isinstance(v, str) and not v.strip()):
        return 1
    n = as_float(v, None)
    if n is None or not np.isfinite(n) or n < 1 or n != int(n):
        raise InputError(f"NumberOfFrames {v!r} is not a positive whole number.", path=path,
                         hint="the header is damaged; export the image again")
    return int(n)


def frames_of(ds, path: Path) -> list[FrameRecord]:
    """Frame records of one instance (header only); positions are ``None`` for 2-D images.

    Raises:
        GeometryError: ImagePositionPatient / ImageOrientationPatient / PixelSpacing of the wrong
            length or with non-numeric, non-finite (or non-positive spacing) values.
        InputError: a damaged NumberOfFrames or a non-finite rescale.
    """
    sop = str(ds.get("SOPInstanceUID", path))
    nf = n_frames(ds, path)
    slope = as_float(ds.get("RescaleSlope"), None)
    if slope is None and ds.get("Modality") == "RTDOSE":
        slope = as_float(ds.get("DoseGridScaling"), None)
    slope, intercept = _rescale_pair(slope if slope is not None else 1.0,
                                     as_float(ds.get("RescaleIntercept"), 0.0), path)
    base = dict(slope=slope, intercept=intercept,
                instance_number=ds.get("InstanceNumber"), extra={"gantry_tilt": ds.get("GantryDetectorTilt")})
    ps_name = "PixelSpacing" if ds.get("PixelSpacing") else "ImagerPixelSpacing"
    ps = parse_numbers(ds.get(ps_name), ps_name, path, 2, positive=True)
    iop = parse_orientation(ds.get("ImageOrientationPatient"), path)
    ipp = parse_numbers(ds.get("ImagePositionPatient"), "ImagePositionPatient", path, 3)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    perframe = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if perframe:  # enhanced multi-frame
        out = []
        for f, grp in enumerate(perframe):
            def fg(name, attr):
                try:
                    for owner in (grp, shared):
                        it = _item(owner, name) if owner is not None else None
                        if it is not None and attr in it:
                            return it.get(attr)
                except Exception as e:  # noqa: BLE001 - a damaged nested value raises on access
                    raise InputError(f"frame {f}: {name} / {attr} holds an unreadable value "
                                     f"({type(e).__name__}: {e}).", path=path,
                                     hint="the header is damaged; export the image again") from None
                return None
            where = f"frame {f}: "
            pos = parse_numbers(fg("PlanePositionSequence", "ImagePositionPatient"), where + "ImagePositionPatient",
                           path, 3)
            ori = parse_orientation(fg("PlaneOrientationSequence", "ImageOrientationPatient"), path,
                               where + "ImageOrientationPatient")
            fps = parse_numbers(fg("PixelMeasuresSequence", "PixelSpacing"), where + "PixelSpacing", path, 2,
                           positive=True)
            fps = fps if fps is not None else ps
            sl, ic = fg("PixelValueTransformationSequence", "RescaleSlope"), \
                fg("PixelValueTransformationSequence", "RescaleIntercept")
            fsl, fic = _rescale_pair(as_float(sl, base["slope"]), as_float(ic, base["intercept"]), path)
            rec = FrameRecord(path, sop, f, **{**base, "slope": fsl, "intercept": fic})
            if pos is not None and ori is not None:
                rec.position, rec.orientation = pos, ori
            rec.pixel_spacing = tuple(float(x) for x in fps) if fps is not None else None
            out.append(rec)
        if len(out) != nf and ds.get("NumberOfFrames") is not None:
            raise InputError(f"NumberOfFrames is {nf} but PerFrameFunctionalGroupsSequence has {len(out)} items.",
                             path=path, hint="the header is damaged; export the image again")
        return out
    geom = dict(position=ipp, orientation=iop, pixel_spacing=tuple(float(x) for x in ps) if ps is not None else None)
    if nf == 1:
        return [FrameRecord(path, sop, None, **base, **geom)]
    gfov = parse_numbers(ds.get("GridFrameOffsetVector"), "GridFrameOffsetVector", path)
    if geom["position"] is not None and geom["orientation"] is not None and gfov is not None and len(gfov) == nf:
        from medkt.io.dicom_geometry import normal_of
        n = normal_of(geom["orientation"], path)
        off = gfov - float(gfov[0])
        return [FrameRecord(path, sop, f, **base, position=geom["position"] + off[f] * n,
                            orientation=geom["orientation"], pixel_spacing=geom["pixel_spacing"])
                for f in range(nf)]
    return [FrameRecord(path, sop, f, **base) for f in range(nf)]  # no per-frame geometry


def default_step(ds) -> float:
    for k in ("SpacingBetweenSlices", "SliceThickness"):
        v = as_float(ds.get(k))
        if v and np.isfinite(v):
            return abs(v)
    return 1.0


def itemsize_of(ds) -> int:
    """Bytes per stored sample (BitsAllocated rounded up; float pixel data 4 or 8)."""
    if "DoubleFloatPixelData" in ds:
        return 8
    if "FloatPixelData" in ds:
        return 4
    return max(1, (as_int(ds.get("BitsAllocated"), 16) + 7) // 8)


def check_pixel_bytes(ds, path, n_samples: int) -> None:
    """Refuse uncompressed pixel data shorter than the header's Rows x Columns x frames claim (truncation)."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        return
    raw = ds._dict.get(0x7FE00010)  # the raw element: its length is known without reading it
    if raw is None:
        return
    bits = as_int(ds.get("BitsAllocated"), 16)
    need = (n_samples * bits + 7) // 8
    length = getattr(raw, "length", None)
    if length is None:
        try:
            length = len(raw.value)
        except TypeError:
            return
    if length == 0xFFFFFFFF:  # undefined length (encapsulated without a compressed syntax): let pydicom judge
        return
    tell = getattr(raw, "value_tell", None)
    held = length
    if tell is not None:
        try:
            held = min(length, max(0, path.stat().st_size - tell))
        except OSError:
            pass
    if held < need:
        raise InputError(f"the pixel data holds {held:,} bytes but Rows x Columns x SamplesPerPixel x frames x "
                         f"BitsAllocated claim {need:,}; the file is truncated or its header is damaged.", path=path,
                         hint="copy the file again from its source, or export it again")
