"""Offline sample data and synthetic DICOM builders for tests and examples (no network, ever).

* :func:`pydicom_file` / :func:`nibabel_file`: paths to files that pydicom and nibabel ship
  (``CT_small.dcm``, ``MR_small.dcm``, ``anatomical.nii``, ``example4d.nii.gz``...).  pydicom's
  ``get_testdata_file`` is never called (it may try to download).
* :func:`make_dicom_series`: a small CT series written from ``CT_small.dcm`` with chosen slice
  count, spacing, orientation, tilt, gaps, rescale, shuffled InstanceNumbers and file names.
* :func:`make_enhanced_multiframe`: the same series as one enhanced multi-frame file.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np


def pydicom_file(name: str) -> Path:
    """Path of a file in pydicom's bundled ``data/test_files`` (raises FileNotFoundError if absent)."""
    import pydicom
    p = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not p.is_file():
        raise FileNotFoundError(f"{name} is not among pydicom's bundled test files")
    return p


def nibabel_file(name: str) -> Path:
    """Path of a file in ``nibabel.testing.data_path`` (e.g. ``anatomical.nii``, ``example4d.nii.gz``)."""
    from nibabel.testing import data_path
    p = Path(data_path) / name
    if not p.is_file():
        raise FileNotFoundError(f"{name} is not among nibabel's bundled test files")
    return p


def make_dicom_series(folder: str | Path, n_slices: int = 6, *, spacing: float = 2.5,
                      orientation=(1, 0, 0, 0, 1, 0), origin=(-50.0, -60.0, 10.0), tilt_mm: float = 0.0,
                      gaps: dict[int, float] | None = None, slopes=None, intercept: float = -1024.0,
                      size: int | None = 32, seed: int = 0, series_uid: str | None = None,
                      series_number: int = 7, modality: str = "CT", shuffle: bool = True) -> dict:
    """Write a synthetic single-frame series into ``folder`` and return its ground truth.

    Slice ``k`` (in true spatial order along the normal) stores ``base + 10 * k`` so tests can tell
    slices apart; positions are ``origin + k * spacing * normal`` plus ``tilt_mm * k`` along the
    column direction (gantry tilt) and extra ``gaps[k]`` mm before slice ``k``.  InstanceNumbers and
    file names are shuffled so neither gives the spatial order.

    Returns:
        ``{"paths", "sop_uids" (spatial order), "positions" (LPS, spatial order), "stored" ((K, R, C)
        stored values), "hu" ((K, R, C) after rescale), "series_uid", "orientation"}``.
    """
    import pydicom
    from pydicom.uid import generate_uid
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    src = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    base = src.pixel_array.astype(np.int16)
    if size:
        base = np.ascontiguousarray(base[:size, :size])
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    series_uid = series_uid or generate_uid()
    order = rng.permutation(n_slices) if shuffle else np.arange(n_slices)
    slopes = list(slopes) if slopes is not None else [1.0] * n_slices
    out = {"paths": [None] * n_slices, "sop_uids": [], "positions": [], "stored": [], "hu": [],
           "series_uid": series_uid, "orientation": iop}
    offset = 0.0
    for k in range(n_slices):
        offset += (gaps or {}).get(k, 0.0)
        pos = np.asarray(origin, float) + (k * spacing + offset) * normal + k * tilt_mm * iop[3:]
        ds = copy.deepcopy(src)
        stored = (base + 10 * k).astype(np.int16)
        ds.Rows, ds.Columns = stored.shape
        ds.PixelData = stored.tobytes()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.Modality = modality
        ds.InstanceNumber = int(order[k]) + 1
        ds.ImageOrientationPatient = [float(x) for x in iop]
        ds.ImagePositionPatient = [round(float(x), 6) for x in pos]
        ds.SliceThickness = spacing
        ds.RescaleSlope = slopes[k]
        ds.RescaleIntercept = intercept
        name = folder / f"im_{int(order[k]):04d}_{rng.integers(1e6):06d}.dcm"
        ds.save_as(name, enforce_file_format=True)
        out["paths"][k] = name
        out["sop_uids"].append(ds.SOPInstanceUID)
        out["positions"].append(np.array(ds.ImagePositionPatient, float))
        out["stored"].append(stored)
        out["hu"].append(stored.astype(np.float64) * slopes[k] + intercept)
    out["stored"], out["hu"] = np.stack(out["stored"]), np.stack(out["hu"])
    return out


def make_enhanced_multiframe(path: str | Path, n_frames: int = 5, *, spacing: float = 3.0,
                             orientation=(1, 0, 0, 0, 1, 0), origin=(-20.0, -30.0, 5.0), size: int = 24,
                             frame_order=None, slope: float = 2.0, intercept: float = -1000.0) -> dict:
    """Write one Enhanced CT multi-frame file whose frames are stored in ``frame_order``.

    Frame ``f`` of the file holds spatial slice ``frame_order[f]`` (default: reversed), which stores
    ``100 * slice + arange``.  Returns ``{"path", "hu" ((K, R, C) spatial order), "positions"}``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = list(frame_order) if frame_order is not None else list(range(n_frames))[::-1]
    iop = np.asarray(orientation, float)
    normal = np.cross(iop[:3], iop[3:])
    stored = np.stack([(np.arange(size * size).reshape(size, size) % 97 + 100 * k).astype(np.int16)
                       for k in range(n_frames)])
    positions = [np.asarray(origin, float) + k * spacing * normal for k in range(n_frames)]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, 1
    ds.PatientName, ds.PatientID = "Synthetic^Multiframe", "MF001"
    ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "19700101", "O", "20240101", "120000"
    ds.ReferringPhysicianName, ds.AccessionNumber, ds.StudyID = "", "", "1"
    ds.Manufacturer, ds.ImageType = "medkt-synthetic", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = n_frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    po, pm, pvt = Dataset(), Dataset(), Dataset()
    po.ImageOrientationPatient = [float(x) for x in iop]
    pm.PixelSpacing, pm.SliceThickness = [0.8, 0.7], spacing
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = slope, intercept, "HU"
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for f in range(n_frames):
        item, pp = Dataset(), Dataset()
        pp.ImagePositionPatient = [float(x) for x in positions[order[f]]]
        item.PlanePositionSequence = Sequence([pp])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack([stored[order[f]] for f in range(n_frames)]).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return {"path": path, "hu": stored.astype(np.float64) * slope + intercept, "positions": positions,
            "frame_order": order}
