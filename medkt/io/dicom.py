"""DICOM reader (pydicom): series folders, several series per folder, multi-frame files, 2-D radiographs.

* Instances are grouped by SeriesInstanceUID; each series is one case (several series in one folder
  give several cases).  Objects without an image (RTSTRUCT, SR, RTPLAN, SEG, PR, KO...) are skipped
  and logged; duplicate SOPInstanceUIDs are read once.
* Slices are sorted by their position along the slice normal (:mod:`medkt.io.dicom_geometry`);
  differing orientations, duplicate positions, gantry tilt and irregular spacing are refused with a
  :class:`~medkt.errors.GeometryError` that says what to do.
* Multi-frame files: enhanced CT/MR (per-frame PlanePositionSequence) and legacy grids with
  GridFrameOffsetVector (RTDOSE) become volumes; a multi-frame file without per-frame positions
  (cine) is refused.
* Intensities: ``stored * RescaleSlope + RescaleIntercept`` per frame (``DoseGridScaling`` for RTDOSE;
  Modality LUT sequences through pydicom), so CT is in HU.
* Compressed transfer syntaxes without an installed decoder raise
  :class:`~medkt.errors.DecoderMissingError` naming the plugin to install.
* Images without ImagePositionPatient/Orientation (CR, DX, US, secondary capture) are 2-D cases,
  one per instance: ``(H, W)`` or ``(H, W, 3)``.

Volume arrays follow :mod:`medkt.io.types`: ``array[i, j, k] == slice_k.pixel_array[j, i]``.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import DecoderMissingError, GeometryError, InputError, InputTooLargeError
from medkt.io._fs import case_base, check_readable, looks_like_dicom, stem_of
from medkt.io.checks import check_geometry, check_size
from medkt.io.dicom_geometry import FrameRecord, sort_frames, stack_affine
from medkt.io.dicom_header import (as_int, check_pixel_bytes, check_values, default_step, first_value, frames_of,
                                   itemsize_of, n_frames)
from medkt.io.readers import ImageReader
from medkt.io.types import Case, ImageVolume

log = logging.getLogger("medkt.io")

#: DICOM objects that never hold an image to segment; they are skipped (and logged) during discovery.
NON_IMAGE_MODALITIES = {"RTSTRUCT": "RT Structure Set (contours, no pixel data)", "RTPLAN": "RT Plan",
                        "RTRECORD": "RT treatment record", "SR": "structured report", "SEG": "segmentation",
                        "PR": "presentation state", "KO": "key object selection", "REG": "registration",
                        "ECG": "waveform", "DOC": "encapsulated document", "RWV": "real world value map"}

_PLUGINS = {  # transfer syntax UID prefix -> packages that decode it
    "1.2.840.10008.1.2.4.5": "pylibjpeg pylibjpeg-libjpeg",     # JPEG baseline / extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",    # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",    # JPEG lossless SV1
    "1.2.840.10008.1.2.4.8": "pylibjpeg pylibjpeg-libjpeg",     # JPEG-LS
    "1.2.840.10008.1.2.4.9": "pylibjpeg pylibjpeg-openjpeg",    # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pylibjpeg pylibjpeg-openjpeg",   # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",           # RLE
}


def plugin_for(ts_uid: str) -> str:
    """The pip packages that decode transfer syntax ``ts_uid`` (python-gdcm is an alternative)."""
    for prefix in sorted(_PLUGINS, key=len, reverse=True):
        if str(ts_uid).startswith(prefix):
            return _PLUGINS[prefix]
    return "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def decoder_available(ts_uid) -> bool:
    """Whether pydicom can decode ``ts_uid`` with the packages installed here."""
    from pydicom.pixels import get_decoder
    try:
        return bool(get_decoder(ts_uid).is_available)
    except NotImplementedError:
        return False


def check_decoder(ds, path) -> None:
    """Raise :class:`DecoderMissingError` if the pixel data is compressed and cannot be decoded here."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or not ts.is_compressed or "PixelData" not in ds:
        return
    if not decoder_available(ts):
        plugins = plugin_for(ts)
        raise DecoderMissingError(f"pixel data is compressed with '{ts.name}' (TransferSyntaxUID {ts}) and no "
                                  f"decoder for it is installed; it needs the plugin(s) {plugins}.", path=path,
                                  hint=f"pip install {plugins}  (or python-gdcm), or decompress the files "
                                       "first (e.g. dcmdjpeg / gdcmconv --raw)")


def read_header(path: Path):
    """Read a DICOM header without loading large values (pixel data stays on disk)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    check_readable(path)
    try:
        try:
            ds = pydicom.dcmread(path, defer_size=4096)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, defer_size=4096, force=True)
            if "SOPClassUID" not in ds and "Rows" not in ds:
                raise InvalidDicomError("no DICOM preamble and no SOP Class / image attributes")
        if not any(k in ds for k in ("SOPClassUID", "Modality", "Rows")):
            raise InvalidDicomError("no SOP Class, Modality or image attributes could be read")
        _ = ds.get("Modality"), ds.get("SeriesInstanceUID")
    except Exception as e:  # pydicom raises many types on damaged files
        raise InputError(f"not a readable DICOM file ({type(e).__name__}: {e}).", path=path,
                         hint="the file is corrupt or truncated; copy it again or remove it from the folder") from None
    check_values(ds, path)
    return ds


def _non_image_reason(ds) -> str | None:
    mod = str(ds.get("Modality", "")).upper()
    if mod in NON_IMAGE_MODALITIES:
        return f"{mod} object: {NON_IMAGE_MODALITIES[mod]}; not an image to segment"
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")) and "Rows" not in ds:
        return f"{mod or 'DICOM'} object without pixel data ({ds.get('SOPClassUID', 'unknown SOP class')!s})"
    return None


class DicomReader(ImageReader):
    """DICOM series / multi-frame / 2-D reader (see module docstring)."""

    kind = "dicom"

    def claims(self, path: Path) -> bool:
        return looks_like_dicom(path)

    # ------------------------------------------------------------------ discovery
    def scan(self, paths: list[Path], root: Path, **options: Any) -> list[Case]:
        skipped: list = options.get("skipped", [])
        cases: list[Case] = []
        series: OrderedDict[str, list] = OrderedDict()
        for p in paths:
            try:
                ds = read_header(p)
            except InputError as e:
                cases.append(Case(case_id=stem_of(p), kind=self.kind, paths=[p], root=root, error=e))
                continue
            reason = _non_image_reason(ds)
            if reason:
                skipped.append((p, reason))
                log.warning("%s: skipped, %s", p, reason)
                continue
            series.setdefault(str(ds.get("SeriesInstanceUID", f"no-series:{p}")), []).append((p, ds))
        folders = [members[0][0].parent for members in series.values()]
        for (uid, members), folder in zip(series.items(), folders):
            multi = folders.count(folder) > 1  # several series share a folder: tell them apart
            cases.extend(self._series_cases(uid, members, root, multi, options))
        return cases

    def _series_cases(self, uid, members, root, multi, options) -> list[Case]:
        p0, ds0 = members[0]
        base = case_base(p0.parent, root, p0)
        if multi:
            sn = ds0.get("SeriesNumber")
            if uid.startswith("no-series:"):
                base = f"{base}_{stem_of(p0)}"
            else:
                base = f"{base}_s{sn}" if sn not in (None, "") else f"{base}_{uid.split('.')[-1][-8:]}"
        seen, uniq = set(), []
        for p, ds in members:
            sop = str(ds.get("SOPInstanceUID", p))
            if sop in seen:
                log.warning("%s: duplicate SOPInstanceUID %s; read once", p, sop)
                continue
            seen.add(sop)
            uniq.append((p, ds))
        info = {"modality": str(ds0.get("Modality", "unknown")), "series_uid": uid,
                "description": str(ds0.get("SeriesDescription", "")), "instances": len(uniq),
                "transfer_syntax": str(getattr(ds0.file_meta, "TransferSyntaxUID", "")) if hasattr(ds0, "file_meta")
                else ""}
        case = Case(case_id=base, kind=self.kind, paths=[p for p, _ in uniq], root=root, info=info,
                    options={"modality": options.get("modality"), "max_voxels": options.get("max_voxels")})
        try:
            frames = self._plan(uniq, case)
        except InputError as e:
            case.error = e
            return [case]
        if frames == "2d-split":  # several 2-D images (e.g. PA + lateral radiographs): one case each
            out = []
            for p, ds in uniq:
                c = Case(case_id=f"{base}_{stem_of(p)}", kind=self.kind, paths=[p], root=root,
                         info={**info, "instances": 1}, options=dict(case.options))
                try:
                    self._plan([(p, ds)], c)
                except InputError as e:
                    c.error = e
                out.append(c)
            return out
        return [case]

    def _plan(self, members, case: Case):
        """Validate a series from headers; fill ``case.info``; return frames or ``"2d-split"``."""
        where = case.paths[0].parent if len(case.paths) > 1 else case.paths[0]
        shapes = {(as_int(ds.get("Rows"), 0), as_int(ds.get("Columns"), 0), as_int(ds.get("SamplesPerPixel"), 1))
                  for _, ds in members}
        if len(shapes) > 1:
            raise InputError(f"mixed series: instances of series {case.info['series_uid']} have different image "
                             f"sizes {sorted(shapes)}.", path=where,
                             hint="export each acquisition as its own series / folder")
        if any(sh[0] <= 0 or sh[1] <= 0 for sh in shapes):
            raise GeometryError("the image has no size (Rows/Columns missing or 0).", path=where,
                                hint="the file is damaged or not an image; remove it from the input")
        rows, cols, spp = next(iter(shapes))
        if spp not in (1, 3):
            raise InputError(f"SamplesPerPixel {spp} is not supported (1 = grayscale, 3 = colour).", path=where,
                             hint="the header is damaged or the image is not grayscale/RGB")
        counts = [n_frames(ds, p) for p, ds in members]
        check_size((rows, cols, spp, sum(counts)), itemsize_of(members[0][1]), where,
                   case.options.get("max_voxels"), what="DICOM")
        for (p, ds), nf in zip(members, counts):
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise InputError(f"instance {ds.get('SOPInstanceUID', '?')} ({ds.get('Modality', '?')}) has "
                                 "image attributes but no PixelData.", path=p,
                                 hint="the export stripped the pixels; export again with images included")
            check_decoder(ds, p)
            check_pixel_bytes(ds, p, rows * cols * spp * nf)
        frames = [fr for p, ds in members for fr in frames_of(ds, p)]
        has_geom = all(f.position is not None and f.orientation is not None for f in frames)
        n_multi = sum(1 for nf in counts if nf > 1)
        if not has_geom:
            if len(frames) == 1:
                f = frames[0]
                sp = f.pixel_spacing or (1.0, 1.0)
                check_geometry(np.diag([sp[0], sp[1], 1.0, 1.0]), (rows, cols), sp, where, ndim=2)
                case.info.update(shape=[rows, cols] + ([3] if spp == 3 else []), spacing=list(sp), layout="2d")
                return frames
            if n_multi:
                raise InputError(f"multi-frame image with {len(frames)} frames but no per-frame position "
                                 "(cine / time series); medkt reads spatial volumes and single 2-D images.",
                                 path=where, hint="export a single frame, or a volume with plane positions")
            return "2d-split"
        if n_multi and len(members) > 1:
            raise InputError(f"series mixes {n_multi} multi-frame files with other instances.", path=where,
                             hint="pass one multi-frame file (or one single-frame series) per case")
        if spp != 1:
            raise InputError(f"colour (SamplesPerPixel={spp}) volumes are not supported.", path=where)
        frames, warns = sort_frames(frames, where)
        case.warnings.extend(w for w in warns if w not in case.warnings)
        aff = stack_affine(frames, default_step(members[0][1]))
        sp = tuple(float(x) for x in np.linalg.norm(aff[:3, :3], axis=0))
        check_geometry(aff, (cols, rows, len(frames)), sp, where)
        case.info.update(shape=[cols, rows, len(frames)], spacing=[round(s, 6) for s in sp], layout="volume")
        return frames

    # ------------------------------------------------------------------ pixels
    def read(self, case: Case) -> ImageVolume:
        members = [(p, read_header(p)) for p in case.paths]
        frames = self._plan(members, case)
        if frames == "2d-split":
            raise InputError("several 2-D images in one case; discover them with discover_cases().",
                             path=case.paths[0].parent)
        try:
            data, ds_by_path = self._pixels(members, frames)
        except MemoryError:
            raise InputTooLargeError(f"not enough memory to hold the {len(frames)} frame(s) of this series.",
                                     path=case.paths[0].parent if len(case.paths) > 1 else case.paths[0],
                                     hint="free memory, use a machine with more RAM, or pass fewer slices") from None
        ds0 = ds_by_path[frames[0].path]
        shape = case.info.get("shape") or []
        want = tuple(shape) if case.info.get("layout") == "2d" else (shape[1], shape[0]) if len(shape) == 3 else None
        for f, plane in zip(frames, data):
            if want is not None and tuple(plane.shape) != want:
                raise InputError(f"the decoded pixel data has shape {tuple(plane.shape)} but the header "
                                 f"(Rows, Columns, SamplesPerPixel) says {want}.", path=f.path,
                                 hint="the header is damaged; export the image again")
        zero = sum(1 for f in frames if f.slope == 0 and "ModalityLUTSequence" not in ds_by_path[f.path])
        if zero:
            msg = (f"RescaleSlope is 0 in {zero} of {len(frames)} frame(s): those pixels all become RescaleIntercept "
                   f"({frames[0].intercept:g}); the header is probably damaged")
            log.warning("%s: %s", case.case_id, msg)
            case.warnings.append(msg)
        meta = {"source_paths": [str(f.path) for f in frames], "frames": [f.frame for f in frames],
                "sop_instance_uids": [f.sop_uid for f in frames],
                "series_instance_uid": str(ds0.get("SeriesInstanceUID", "")),
                "study_instance_uid": str(ds0.get("StudyInstanceUID", "")),
                "frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", "")),
                "photometric": str(ds0.get("PhotometricInterpretation", "")),
                "rescale": sorted({(f.slope, f.intercept) for f in frames}),
                "dicom_window": [first_value(ds0.get("WindowCenter")), first_value(ds0.get("WindowWidth"))],
                "warnings": list(case.warnings)}
        modality = case.options.get("modality") or str(ds0.get("Modality", "unknown"))
        if case.info.get("layout") == "2d":
            dr, dc = frames[0].pixel_spacing or (1.0, 1.0)
            arr = data[0]
            return ImageVolume(array=arr, affine=np.diag([dr, dc, 1.0, 1.0]), spacing=(dr, dc), modality=modality,
                               case_id=case.case_id, kind=self.kind, meta=meta)
        vol = np.stack(data, axis=0).transpose(2, 1, 0)  # (K, R, C) -> (I=C, J=R, K)
        aff = stack_affine(frames, default_step(ds0))
        return ImageVolume(array=np.ascontiguousarray(vol), affine=aff,
                           spacing=tuple(np.linalg.norm(aff[:3, :3], axis=0)), modality=modality,
                           case_id=case.case_id, kind=self.kind, meta=meta)

    @staticmethod
    def _pixels(members, frames) -> tuple[list[np.ndarray], dict]:
        """Decode every instance once; rescaled planes in frame order (common dtype) and the datasets."""
        pixels: dict[Path, np.ndarray] = {}
        ds_by_path = {}
        for p, _ in members:
            ds_by_path[p], pixels[p] = _load_pixels(p)
        planes = []
        for f in frames:
            a = pixels[f.path] if f.frame is None else _frame(pixels[f.path], f, ds_by_path[f.path])
            planes.append(_rescale(a, f, ds_by_path[f.path]))
        return _common_dtype(planes), ds_by_path


def _load_pixels(path: Path):
    import pydicom
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise InputError(f"not a readable DICOM file ({type(e).__name__}: {e}).", path=path) from None
    check_values(ds, path)
    check_decoder(ds, path)
    try:
        arr = ds.pixel_array
    except Exception as e:
        raise InputError(f"cannot decode the pixel data ({type(e).__name__}: {e}); the file is probably "
                         "truncated or damaged.", path=path, hint="copy the file again from its source") from None
    return ds, arr


def _frame(arr: np.ndarray, f: FrameRecord, ds) -> np.ndarray:
    nf = n_frames(ds, f.path)
    if nf > 1 and (arr.ndim < 3 or f.frame >= arr.shape[0]):
        raise InputError(f"frame {f.frame} is missing from the decoded pixel data (shape {arr.shape}).",
                         path=f.path, hint="the header is damaged; export the image again")
    return arr[f.frame] if nf > 1 else arr


def _rescale(a: np.ndarray, f: FrameRecord, ds) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut
        return np.asarray(apply_modality_lut(a, ds))
    if f.slope == 1.0 and f.intercept == 0.0:
        return a
    return a.astype(np.float64) * f.slope + f.intercept


def _common_dtype(planes: list[np.ndarray]) -> list[np.ndarray]:
    """Keep integers when every rescaled plane is integral (int16 when it fits), else float32."""
    if all(np.issubdtype(p.dtype, np.integer) for p in planes) and len({p.dtype for p in planes}) == 1:
        return planes
    integral = all(np.issubdtype(p.dtype, np.integer) or np.array_equal(p, np.round(p)) for p in planes)
    if integral:
        lo = min(float(p.min()) for p in planes)
        hi = max(float(p.max()) for p in planes)
        dt = np.int16 if -32768 <= lo and hi <= 32767 else np.int32
        return [p.astype(dt) for p in planes]
    return [p.astype(np.float32) for p in planes]


__all__ = ["DicomReader", "check_decoder", "decoder_available", "plugin_for", "read_header", "frames_of",
           "GeometryError"]
