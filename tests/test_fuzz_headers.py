"""Seeded header fuzz: mutated DICOM tags and NIfTI header fields must end in success or a MedktError.

Each case starts from files that pydicom and nibabel ship (a 3-slice series built from
``CT_small.dcm``; ``anatomical.nii``), mutates the header fields medkt reads (wrong lengths,
non-numeric text, NaN/inf, zero, negative and huge values, deleted tags, truncated files), and
pushes the result through discover -> read -> prepare_intensity -> iter_slices -> reassemble.
Any exception that is not a :class:`~medkt.errors.MedktError` fails the test, with the seed and
mutations of every such case.

``MEDKT_FUZZ_CASES`` sets the number of cases (default 250, half DICOM and NIfTI);
``MEDKT_FUZZ_SEED`` the base seed.  A long run: ``MEDKT_FUZZ_CASES=2000 pytest tests/test_fuzz_headers.py``.
"""
from __future__ import annotations

import functools
import gzip
import io
import logging
import os
import random
import shutil
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

from medkt import io as mio
from medkt.errors import MedktError
from medkt.io.testing import make_dicom_series, nibabel_file

N_CASES = int(os.environ.get("MEDKT_FUZZ_CASES", "250"))
BASE_SEED = int(os.environ.get("MEDKT_FUZZ_SEED", "1234"))

# ----------------------------------------------------------------------------- DICOM
#: (keyword, tag) of the attributes medkt reads.
DICOM_TAGS = {
    "ImagePositionPatient": 0x00200032, "ImageOrientationPatient": 0x00200037, "PixelSpacing": 0x00280030,
    "ImagerPixelSpacing": 0x00181164, "RescaleSlope": 0x00281053, "RescaleIntercept": 0x00281052,
    "Rows": 0x00280010, "Columns": 0x00280011, "SamplesPerPixel": 0x00280002, "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101, "HighBit": 0x00280102, "PixelRepresentation": 0x00280103,
    "NumberOfFrames": 0x00280008, "SeriesInstanceUID": 0x0020000E, "SOPInstanceUID": 0x00080018,
    "Modality": 0x00080060, "SliceThickness": 0x00180050, "SpacingBetweenSlices": 0x00180088,
    "WindowCenter": 0x00281050, "WindowWidth": 0x00281051, "PhotometricInterpretation": 0x00280004,
    "InstanceNumber": 0x00200013, "GantryDetectorTilt": 0x00181120, "GridFrameOffsetVector": 0x3004000C,
    "SeriesNumber": 0x00200011, "PatientName": 0x00100010,
}
RAW_TEXT = [b"", b"abc", b"nan", b"inf", b"-inf", b"1", b"0", b"-1", b"1\\2", b"1\\2\\3", b"1\\0\\0\\0\\1\\0",
            b"0\\0\\0\\0\\0\\0", b"1\\0\\0\\1\\0\\0", b"1\\2\\3\\4\\5\\6\\7", b"nan\\nan\\nan", b"1e400\\0\\0",
            b"-1e308\\1e308\\0", b"1\\abc\\3", b"\\\\\\", b"65535", b"2\\5", b"0.0000001\\0.0000001",
            b"1\\0\\0\\0\\0\\1", b"0.5\\0\\0\\0\\0.5\\0"]


def _raw_value(rng: random.Random) -> bytes:
    if rng.random() < 0.75:
        v = rng.choice(RAW_TEXT)
    elif rng.random() < 0.5:
        v = "\\".join(str(rng.choice([0, 1, -1, 3, 1e9, -1e-9, 0.5, 2**31, 65535, 7]))
                      for _ in range(rng.randint(1, 8))).encode()
    else:
        v = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
    return v + (b" " if len(v) % 2 else b"")


def _mutate_dataset(ds, rng: random.Random, log: list) -> None:
    from pydicom.dataelem import DataElement
    name = rng.choice(sorted(DICOM_TAGS))
    tag = DICOM_TAGS[name]
    op = rng.random()
    if op < 0.15:
        if tag in ds:
            del ds[tag]
        log.append(f"del {name}")
    elif op < 0.3 and name in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                               "PixelRepresentation"):
        v = rng.choice([0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 32, 64, 255, 4096, 65535])
        ds[tag] = DataElement(tag, "US", v)
        log.append(f"{name}=US {v}")
    else:
        v = _raw_value(rng)
        ds[tag] = DataElement(tag, "OB", v)  # written without a VR (implicit VR): read back with the dictionary's
        log.append(f"{name}=raw {v!r}")


@functools.lru_cache(maxsize=1)
def _base_series() -> tuple[tuple[str, bytes], ...]:
    """The unmutated 3-slice 16 x 16 series (from CT_small.dcm) as ``(file name, bytes)``, built once."""
    with tempfile.TemporaryDirectory() as d:
        info = make_dicom_series(Path(d) / "s", 3, size=16, shuffle=False)
        return tuple((p.name, p.read_bytes()) for p in info["paths"])


def build_dicom_case(tmp, rng: random.Random) -> tuple:
    """The base series with 1-3 mutations applied to every slice or to one; sometimes truncated."""
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian
    folder = tmp / "series"
    folder.mkdir()
    log: list[str] = []
    every = rng.random() < 0.6
    target = rng.randrange(3)
    mutations = [random.Random(rng.random()) for _ in range(rng.randint(1, 3))]
    paths = []
    for i, (name, data) in enumerate(_base_series()):
        ds = pydicom.dcmread(io.BytesIO(data))
        if every or i == target:
            for m in mutations:
                _mutate_dataset(ds, random.Random(m.random()), log)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        paths.append(folder / name)
        ds.save_as(paths[-1], implicit_vr=True, little_endian=True)
    if rng.random() < 0.1:
        data = paths[target].read_bytes()
        paths[target].write_bytes(data[: rng.randrange(len(data))])
        log.append(f"truncated slice {target}")
    return folder, (("all" if every else f"slice {target}"), log)


# ----------------------------------------------------------------------------- NIfTI
NIFTI_FIELDS = {  # field: indices to mutate (None = scalar)
    "dim": range(8), "pixdim": range(8), "datatype": None, "bitpix": None, "vox_offset": None,
    "scl_slope": None, "scl_inter": None, "qform_code": None, "sform_code": None, "quatern_b": None,
    "quatern_c": None, "quatern_d": None, "qoffset_x": None, "qoffset_y": None, "qoffset_z": None,
    "srow_x": range(4), "srow_y": range(4), "srow_z": range(4), "dim_info": None, "xyzt_units": None,
    "intent_code": None, "cal_min": None, "cal_max": None,
}
NIFTI_VALUES = [0, 1, -1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 128, 255, 511, 1024, 1536, 1792, 2048, 2304, 32767,
                -32768, 2**31 - 1, float("nan"), float("inf"), float("-inf"), 1e-30, 1e30, 0.5, -2.5, 352, 348]


def build_nifti_case(tmp, rng: random.Random) -> tuple:
    """``anatomical.nii`` with 1-3 raw header-field mutations (no nibabel checks); sometimes gzipped or cut."""
    import nibabel as nib
    raw = nibabel_file("anatomical.nii").read_bytes()
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    arr = hdr.structarr
    log: list[str] = []
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(sorted(NIFTI_FIELDS))
        idx = NIFTI_FIELDS[field]
        value = rng.choice(NIFTI_VALUES)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if idx is None:
                    arr[field] = value
                else:
                    i = rng.choice(list(idx))
                    arr[field][i] = value
                    field = f"{field}[{i}]"
            except (OverflowError, ValueError):  # value does not fit the field's type: store its wrap-around
                continue
        log.append(f"{field}={value}")
    data = hdr.binaryblock + raw[348:]
    if rng.random() < 0.1:
        data = data[: rng.randrange(348, len(data))]
        log.append("truncated")
    if rng.random() < 0.3:
        path = tmp / "fuzz.nii.gz"
        path.write_bytes(gzip.compress(data, 1))
        log.append("gz")
    else:
        path = tmp / "fuzz.nii"
        path.write_bytes(data)
    return path, log


# ----------------------------------------------------------------------------- pipeline
def run_pipeline(path) -> int:
    """discover -> read -> prepare_intensity -> iter_slices -> reassemble; the number of cases read.

    Raises the first case's error once every readable case has gone through (a case that
    discovery lists with ``Case.error`` counts as a MedktError outcome, not a success).
    """
    n = 0
    errors = []
    for case in mio.discover_cases(path):
        if not case.ok:
            errors.append(case.error)
            continue
        vol = mio.read_case(case)
        img01, _ = mio.prepare_intensity(vol)
        assert np.isfinite(img01).all() and img01.min() >= 0 and img01.max() <= 1
        slices, smap = mio.iter_slices(vol, "axial", array=img01)
        masks = {k: (s > 0.5).any(axis=-1) if s.ndim == 3 else s > 0.5 for k, s in slices}
        mask = mio.reassemble(masks, smap)
        assert mask.shape == tuple(vol.spatial_shape)
        n += 1
    if errors:
        raise errors[0]
    return n


def fuzz(tmp_path, n_cases: int, seed: int) -> tuple[dict, list]:
    """Run ``n_cases`` seeded cases (even: DICOM, odd: NIfTI); ``(outcome counts, non-MedktError cases)``."""
    logging.disable(logging.CRITICAL)  # thousands of expected pydicom/nibabel/medkt warnings; keep the run fast
    try:
        return _fuzz(tmp_path, n_cases, seed)
    finally:
        logging.disable(logging.NOTSET)


def _fuzz(tmp_path, n_cases: int, seed: int) -> tuple[dict, list]:
    outcomes = {"ok": 0, "medkt_error": 0}
    bad = []
    for i in range(n_cases):
        rng = random.Random(seed * 100_003 + i)
        work = tmp_path / f"c{i}"
        work.mkdir()
        kind = "dicom" if i % 2 == 0 else "nifti"
        try:
            path, log = build_dicom_case(work, rng) if kind == "dicom" else build_nifti_case(work, rng)
        except Exception as e:  # the mutation itself could not be written: not a medkt outcome
            log, path = f"build failed: {e}", None
        if path is not None:
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    run_pipeline(path)
                outcomes["ok"] += 1
            except MedktError:
                outcomes["medkt_error"] += 1
            except Exception as e:  # noqa: BLE001 - what the fuzz looks for
                frames = [f for f in traceback.extract_tb(e.__traceback__) if "medkt" in f.filename]
                where = f"{frames[-1].filename}:{frames[-1].lineno} ({frames[-1].name})" if frames else "?"
                bad.append((i, kind, log, f"{type(e).__name__}: {e}", f"  last medkt frame: {where}"))
        shutil.rmtree(work, ignore_errors=True)
    return outcomes, bad


def test_header_fuzz_ends_in_success_or_medkt_error(tmp_path):
    outcomes, bad = fuzz(tmp_path, N_CASES, BASE_SEED)
    report = "\n".join(f"case {i} ({kind}) {log}: {err}\n{tb}" for i, kind, log, err, tb in bad[:10])
    assert not bad, f"{len(bad)} of {N_CASES} fuzzed headers raised a non-MedktError:\n{report}"
    # the fuzz must exercise both outcomes, or it tests nothing
    assert outcomes["ok"] > N_CASES // 20 and outcomes["medkt_error"] > N_CASES // 20, outcomes


def test_fuzz_pipeline_flags_a_non_medkt_error(tmp_path, monkeypatch):
    """The harness itself can fail: a reader bug that raises TypeError is reported as bad."""
    from medkt.io import nifti

    def broken(*a, **k):
        raise TypeError("simulated reader bug")
    monkeypatch.setattr(nifti, "volume_from_nibabel", broken)
    _, bad = fuzz(tmp_path, 6, BASE_SEED)
    assert bad and all("simulated reader bug" in b[3] for b in bad)


@pytest.mark.parametrize("kind", ["dicom", "nifti"])
def test_unmutated_inputs_run_the_whole_pipeline(tmp_path, kind):
    if kind == "dicom":
        folder = tmp_path / "s"
        make_dicom_series(folder, 3, size=16)
        assert run_pipeline(folder) == 1
    else:
        assert run_pipeline(nibabel_file("anatomical.nii")) == 1
