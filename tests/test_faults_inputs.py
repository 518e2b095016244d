"""Hostile and broken inputs (issue 14, input side): one test per failure kind, each able to fail.

Kinds: size limits before allocation (NIfTI, DICOM, 2-D; ``--max-voxels``), truncation, Pillow's
decompression bomb inside a batch, YAML alias bombs and untyped values, degenerate geometry at
read, damaged DICOM position/orientation, silent wrong results (complex data, RescaleSlope 0,
constant CT), a multi-valued PatientName for DICOM-SEG.
"""
from __future__ import annotations

import gzip
import io
import json
import struct
import time
import tracemalloc
import zlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medkt import io as mio
from medkt.cli.main import main
from medkt.errors import (ConfigError, DicomSegError, GeometryError, InputError, InputTooLargeError)
from medkt.io.testing import make_dicom_series, nibabel_file


# ----------------------------------------------------------------------------- builders
def tiny_nifti_gz(path, shape=(1000, 1000, 1000), dtype=np.int16):
    """A .nii.gz holding only a header that claims ``shape`` (the 72-byte file of the issue)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["vox_offset"] = 352
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(hdr.binaryblock + b"\0" * 4)
    path.write_bytes(buf.getvalue())
    return path


def patch_nifti(src, dst, **fields):
    """Copy ``src`` to ``dst`` with raw header fields set (no nibabel checks): ``srow_x=[...]``, ``dim=...``."""
    raw = src.read_bytes()
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    for k, v in fields.items():
        hdr.structarr[k] = v
    dst.write_bytes(hdr.binaryblock + raw[348:])
    return dst


def rewrite_dicom(paths, **raw):
    """Rewrite DICOM files in implicit VR with raw attribute bytes (read back with the dictionary's VR)."""
    from pydicom.dataelem import DataElement
    from pydicom.datadict import tag_for_keyword
    from pydicom.uid import ImplicitVRLittleEndian
    for p in paths:
        ds = pydicom.dcmread(p)
        for kw, value in raw.items():
            tag = tag_for_keyword(kw)
            if isinstance(value, bytes):
                ds[tag] = DataElement(tag, "OB", value + (b" " if len(value) % 2 else b""))
            else:
                setattr(ds, kw, value)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(p, implicit_vr=True, little_endian=True)


def png_claiming(path, width, height):
    """A small PNG whose IHDR claims ``width x height`` 8-bit grayscale pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def segmenter():
    from medkt.segmentation.pipeline import Segmenter, load_segment_config
    return Segmenter(load_segment_config("tiny"))


# ----------------------------------------------------------------------------- 1. size limits
def test_tiny_gz_claiming_1000_cubed_is_refused_from_the_header_without_allocating(tmp_path):
    p = tiny_nifti_gz(tmp_path / "huge.nii.gz")
    assert p.stat().st_size < 100
    tracemalloc.start()
    t = time.perf_counter()
    (case,) = mio.discover_cases(p)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(case.error, InputTooLargeError)
    msg = case.problem
    assert "1000x1000x1000" in msg and "--max-voxels" in msg and "MemoryError" not in msg
    assert peak < 50e6 and seconds < 5, (peak, seconds)
    with pytest.raises(InputTooLargeError):
        mio.read_case(case)


def test_raising_max_voxels_turns_the_claim_into_a_truncation_error(tmp_path):
    p = tiny_nifti_gz(tmp_path / "huge.nii.gz")
    (case,) = mio.discover_cases(p, max_voxels=10**9)
    assert type(case.error) is InputError and "truncated" in case.problem and "expand to at most" in case.problem


def test_uncompressed_nifti_shorter_than_its_header_claims_is_truncated(tmp_path):
    src = nibabel_file("anatomical.nii")
    p = tmp_path / "cut.nii"
    p.write_bytes(src.read_bytes()[:5000])
    (case,) = mio.discover_cases(p)
    assert "truncated" in case.problem and "holds 5,000" in case.problem


def test_max_voxels_applies_to_nifti_dicom_and_2d_and_can_be_raised(tmp_path):
    nii = nibabel_file("anatomical.nii")  # 33 x 41 x 25
    assert isinstance(mio.discover_cases(nii, max_voxels=1000)[0].error, InputTooLargeError)
    assert mio.read_case(mio.discover_cases(nii)[0]).array.shape == (33, 41, 25)
    make_dicom_series(tmp_path / "s", 3, size=16)
    assert isinstance(mio.discover_cases(tmp_path / "s", max_voxels=700)[0].error, InputTooLargeError)
    assert mio.discover_cases(tmp_path / "s", max_voxels=768)[0].ok
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "a.png")
    assert isinstance(mio.discover_cases(tmp_path / "a.png", max_voxels=1000)[0].error, InputTooLargeError)
    assert mio.read_image(tmp_path / "a.png", max_voxels=1200).array.shape == (30, 40)


def test_dicom_header_claiming_huge_rows_is_refused_and_short_pixel_data_is_truncated(tmp_path):
    info = make_dicom_series(tmp_path / "big", 2, size=16)
    rewrite_dicom(info["paths"], Rows=65535, Columns=65535)
    (case,) = mio.discover_cases(tmp_path / "big")
    assert isinstance(case.error, InputTooLargeError) and "65535x65535" in case.problem
    info = make_dicom_series(tmp_path / "cut", 2, size=16)
    data = info["paths"][0].read_bytes()
    info["paths"][0].write_bytes(data[:-200])
    (case,) = mio.discover_cases(tmp_path / "cut")
    assert "truncated" in case.problem and str(info["paths"][0]) in case.problem


def test_cli_max_voxels_for_inspect_and_segment(tmp_path, capsys):
    p = tiny_nifti_gz(tmp_path / "huge.nii.gz", shape=(100, 100, 100))
    assert main(["inspect", str(p), "--max-voxels", "1000"]) == 1
    out = capsys.readouterr().out
    assert "100x100x100" in out and "above the limit of 1,000 voxels" in out
    assert main(["inspect", str(p), "--max-voxels", "2000000"]) == 1
    assert "truncated" in capsys.readouterr().out
    from medkt import segment
    res = segment(nibabel_file("anatomical.nii"), dry_run=True, max_voxels=1000)
    assert "above the limit of 1,000" in res.table[0]["problem"]
    assert res.record["config"]["max_voxels"] == 1000
    with pytest.raises(ConfigError):
        segment(nibabel_file("anatomical.nii"), dry_run=True, max_voxels=-5)


# ----------------------------------------------------------------------------- 2. decompression bomb
def test_bomb_png_is_one_failed_case_and_the_good_image_beside_it_is_segmented(tmp_path, segmenter):
    folder = tmp_path / "in"
    folder.mkdir()
    png_claiming(folder / "bomb.png", 40000, 40000)
    Image.fromarray((np.random.default_rng(0).random((48, 64)) * 255).astype(np.uint8)).save(folder / "good.png")
    cases = {c.case_id: c for c in mio.discover_cases(folder)}  # discovery must not abort
    assert isinstance(cases["bomb"].error, InputTooLargeError) and "refusing" in cases["bomb"].problem
    assert cases["good"].ok
    from medkt import segment
    out = tmp_path / "out"
    res = segment(folder, prompt="a lesion", output=out, config="tiny", segmenter=segmenter)
    rows = {r["case_id"]: r for r in res.table}
    assert rows["bomb"]["status"] == "failed" and "40000x40000" in rows["bomb"]["reason"]
    assert rows["good"]["status"] == "ok" and (out / "good" / "mask.png").exists()


def test_bomb_png_can_be_allowed_by_max_voxels(tmp_path):
    png_claiming(tmp_path / "big.png", 20000, 10000)  # 2e8 pixels: above Pillow's guard, below 2**28
    (case,) = mio.discover_cases(tmp_path / "big.png")
    assert case.ok and case.info["shape"] == [10000, 20000]
    (case,) = mio.discover_cases(tmp_path / "big.png", max_voxels=10**8)  # below Pillow's own guard
    assert isinstance(case.error, InputTooLargeError) and "decompression bomb" in case.problem


# ----------------------------------------------------------------------------- 3. YAML
BOMB = "name: bomb\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + \
    "concepts:\n  - name: x\n    descriptions: *i\n"


def test_yaml_alias_bomb_in_a_concepts_file_is_refused_quickly(tmp_path):
    from medkt.transfer.concepts import load_concepts
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_concepts(p)
    assert time.perf_counter() - t < 2


def test_yaml_alias_bomb_and_recursion_in_a_config_are_refused(tmp_path):
    from medkt.segmentation.pipeline import load_segment_config
    p = tmp_path / "cfg.yaml"
    p.write_text(BOMB.replace("concepts:\n  - name: x\n    descriptions: *i\n", "prompt: *i\n"))
    with pytest.raises(ConfigError, match="alias bomb"):
        load_segment_config(p)
    p.write_text("prompt: &p [a, *p]\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        load_segment_config(p)
    p.write_text("prompt: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(ConfigError, match="nest"):
        load_segment_config(p)


@pytest.mark.parametrize("concept,pattern", [
    ({"name": ["a", ["b"]], "descriptions": ["ok"]}, "'name' must be a string, got a list"),
    ({"name": "x" * 101, "descriptions": ["ok"]}, "at most 100"),
    ({"name": "x", "descriptions": [["nested", ["list"]]]}, "must be a string, got a list"),
    ({"name": "x", "descriptions": [{"a": 1}]}, "must be a string, got a mapping"),
    ({"name": "x", "descriptions": {"a": "b"}}, "string or a list of strings"),
    ({"name": "x", "descriptions": ["d" * 2001]}, "at most 2,000"),
    ({"name": True, "descriptions": ["ok"]}, "got a boolean"),
])
def test_concept_values_are_validated_by_type_and_length(tmp_path, concept, pattern):
    import yaml
    from medkt.transfer.concepts import load_concepts
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"name": "set", "concepts": [concept]}))
    with pytest.raises(ConfigError, match=pattern) as e:
        load_concepts(p)
    assert str(p) in str(e.value)


def test_config_string_fields_refuse_lists_and_mappings(tmp_path):
    from medkt.segmentation.pipeline import load_segment_config
    p = tmp_path / "cfg.yaml"
    p.write_text("prompt: [a, [b, c]]\n")
    with pytest.raises(ConfigError, match="'prompt' must be a single str"):
        load_segment_config(p)
    p.write_text("m2ib:\n  beta: {a: 1}\n")
    with pytest.raises(ConfigError, match="m2ib.beta"):
        load_segment_config(p)


# ----------------------------------------------------------------------------- 4. geometry at read
@pytest.mark.parametrize("fields,pattern", [
    ({"sform_code": 1, "srow_x": [np.nan, 0, 0, 0]}, "NaN or infinite"),
    ({"sform_code": 1, "srow_z": [0, 0, 0, 5]}, "singular"),
    ({"qform_code": 1, "sform_code": 0, "quatern_b": np.nan}, "NaN or infinite"),
    ({"sform_code": 1, "srow_x": [2, 0, 0, 0], "srow_y": [4, 0, 0, 0]}, "singular"),
    ({"dim": [3, 33, 41, 0, 1, 1, 1, 1]}, "zero-length"),
])
def test_degenerate_nifti_geometry_is_a_geometry_error_naming_the_file(tmp_path, capsys, fields, pattern):
    p = patch_nifti(nibabel_file("anatomical.nii"), tmp_path / "bad.nii", **fields)
    (case,) = mio.discover_cases(p)
    assert isinstance(case.error, GeometryError), case.problem
    assert pattern in case.problem and str(p) in case.problem
    assert main(["inspect", str(p)]) == 1
    out = capsys.readouterr().out
    assert "0 readable" in out and pattern in out


def test_in_memory_and_hand_built_volumes_with_bad_geometry_are_refused():
    with pytest.raises(GeometryError, match="NaN"):
        mio.volume_from_array(np.zeros((4, 4, 4)), np.full((4, 4), np.nan))
    with pytest.raises(GeometryError, match="zero-length"):
        mio.volume_from_array(np.zeros((4, 0, 4)))
    vol = mio.ImageVolume(np.zeros((4, 4, 4)), np.diag([1.0, 1.0, 0.0, 1.0]), (1, 1, 1))
    with pytest.raises(GeometryError, match="singular"):
        mio.iter_slices(vol, "axial")
    with pytest.raises(InputError, match="no pixels"):
        mio.prepare_intensity(np.zeros((0, 5)))


# ----------------------------------------------------------------------------- 5. DICOM position/orientation
@pytest.mark.parametrize("raw,pattern", [
    ({"ImagePositionPatient": b"1\\2"}, "ImagePositionPatient has 2 values, expected 3"),
    ({"ImagePositionPatient": b"1\\abc\\3"}, "ImagePositionPatient holds a non-numeric value"),
    ({"ImageOrientationPatient": b"1\\0\\0\\0\\1"}, "ImageOrientationPatient has 5 values, expected 6"),
    ({"ImageOrientationPatient": b"1\\0\\0\\x\\1\\0"}, "ImageOrientationPatient holds a non-numeric value"),
    ({"ImageOrientationPatient": b"1\\0\\0\\1\\0\\0"}, "not two orthogonal unit vectors"),
    ({"PixelSpacing": b"nan\\1"}, "PixelSpacing holds NaN"),
    ({"NumberOfFrames": b"1e400"}, "NumberOfFrames"),
])
def test_damaged_dicom_geometry_attributes_give_an_error_naming_the_file(tmp_path, raw, pattern):
    info = make_dicom_series(tmp_path / "s", 3, size=16)
    rewrite_dicom(info["paths"][:1], **raw)
    cases = mio.discover_cases(tmp_path / "s")
    bad = [c for c in cases if not c.ok]
    assert bad and isinstance(bad[0].error, InputError), [c.problem for c in cases]
    assert pattern in bad[0].problem and str(info["paths"][0]) in bad[0].problem


def test_sort_frames_and_normal_of_refuse_bad_vectors_with_the_file_name(tmp_path):
    from pathlib import Path

    from medkt.io.dicom_geometry import FrameRecord, normal_of, sort_frames
    with pytest.raises(GeometryError, match="has 5 values"):
        normal_of([1, 0, 0, 0, 1], "x.dcm")
    with pytest.raises(GeometryError, match="non-numeric"):
        normal_of(["a", 0, 0, 0, 1, 0], "x.dcm")
    frames = [FrameRecord(Path(f"{k}.dcm"), str(k), position=np.array([0, 0, k]), orientation=np.eye(3)[:2].ravel())
              for k in range(3)]
    frames[1].position = np.array([0.0, 1.0])
    with pytest.raises(GeometryError, match="ImagePositionPatient has 2 values") as e:
        sort_frames(frames, "series")
    assert "1.dcm" in str(e.value)


# ----------------------------------------------------------------------------- 6. silent wrong results
def test_complex_nifti_is_refused(tmp_path):
    p = tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image((np.ones((4, 4, 4)) * (1 + 2j)).astype(np.complex64), np.eye(4)), p)
    (case,) = mio.discover_cases(p)
    assert "complex" in case.problem and "imaginary" in case.problem
    with pytest.raises(InputError, match="complex"):
        mio.prepare_intensity(np.ones((4, 4), np.complex64))


def test_rescale_slope_zero_and_a_constant_ct_are_warned_and_recorded_in_run_json(tmp_path, segmenter):
    info = make_dicom_series(tmp_path / "s", 3, size=16)
    rewrite_dicom(info["paths"], RescaleSlope=0)
    vol = mio.read_image(tmp_path / "s")
    assert any("RescaleSlope is 0" in w for w in vol.meta["warnings"])
    _, params = mio.prepare_intensity(vol)
    assert params["constant_image"] and "constant" in params["warnings"][0]
    ct = mio.volume_from_array(np.full((8, 8, 3), -1000, np.int16), modality="CT")
    _, params = mio.prepare_intensity(ct, window="lung")
    assert params["constant_image"] and "every voxel is -1000" in params["warnings"][0]
    from medkt import segment
    out = tmp_path / "out"
    segment(tmp_path / "s", prompt="a nodule", output=out, config="tiny", mask_format="nifti", segmenter=segmenter)
    (row,) = json.loads((out / "run.json").read_text())["cases"]
    assert any("RescaleSlope is 0" in w for w in row["warnings"])
    assert any("constant" in w for w in row["warnings"]) and row["intensity"]["constant_image"]


# ----------------------------------------------------------------------------- 7. DICOM-SEG fallback
def test_multivalued_patient_name_falls_back_to_nifti_with_a_warning(tmp_path, segmenter):
    pytest.importorskip("highdicom")
    info = make_dicom_series(tmp_path / "s", 3, size=16)
    for p in info["paths"]:
        ds = pydicom.dcmread(p)
        ds.PatientName = ["Doe^John", "Roe^Jane"]
        ds.save_as(p)
    vol = mio.read_image(tmp_path / "s")
    with pytest.raises(DicomSegError, match="PatientName|person name"):
        mio.write_mask(np.zeros(vol.array.shape, np.uint8), vol, tmp_path / "m.seg.dcm")
    from medkt import segment
    out = tmp_path / "out"
    res = segment(tmp_path / "s", prompt="a nodule", output=out, config="tiny", segmenter=segmenter)
    row = res.table[0]
    assert row["status"] == "ok"
    mask = nib.load(out / row["case_id"] / "mask.nii.gz")
    assert mask.shape == vol.spatial_shape
    assert not (out / row["case_id"] / "mask.seg.dcm").exists()
    (rec,) = json.loads((out / "run.json").read_text())["cases"]
    assert any("DICOM-SEG not written" in w for w in rec["warnings"])
