"""The bad-input table (docs/io.md): every row ends in a clear MedktError subclass or a logged recovery.

Each row builds the bad input in a temp folder and states the outcome:

* ``raise`` rows: the error class, a message pattern, and where it surfaces (``discover`` = the
  path holds nothing usable; ``read`` = discovery lists the case with ``Case.error`` / the read
  fails, so a batch records the case as failed and goes on);
* ``recover`` rows: what still works, and the WARNING that was logged.
"""
from __future__ import annotations

import copy
import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medkt import io as mio
from medkt.errors import DecoderMissingError, GeometryError, InputError, MedktError, OutputError
from medkt.io import _fs
from medkt.io.testing import make_dicom_series, nibabel_file, pydicom_file
from medkt.runs import prepare_output_dir


# ----------------------------------------------------------------------------- builders
def corrupt_dicom(tmp, mp):
    d = tmp / "in"
    d.mkdir()
    (d / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + os.urandom(300))
    return d


def corrupt_nifti(tmp, mp):
    p = tmp / "broken.nii.gz"
    p.write_bytes(b"\x1f\x8b" + os.urandom(200))
    return p


def corrupt_png(tmp, mp):
    p = tmp / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    return p


def rtstruct_only(tmp, mp):
    d = tmp / "in"
    d.mkdir()
    shutil.copy(pydicom_file("rtstruct.dcm"), d)
    return d


def missing_pixeldata(tmp, mp):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    p = tmp / "nopix.dcm"
    ds.save_as(p)
    return p


def compressed_no_decoder(tmp, mp):
    # JPEG Lossless SV1 needs pylibjpeg-libjpeg or gdcm; if this machine happens to have one, hide it
    from medkt.io import dicom
    mp.setattr(dicom, "decoder_available", lambda ts: False)
    d = tmp / "in"
    d.mkdir()
    shutil.copy(pydicom_file("SC_rgb_jpeg_gdcm.dcm"), d)
    return d


def empty_folder(tmp, mp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def mixed_series_sizes(tmp, mp):
    d = tmp / "in"
    d.mkdir()
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.save_as(d / "a.dcm")
    small = copy.deepcopy(ds)
    small.SOPInstanceUID = pydicom.uid.generate_uid()
    small.Rows = small.Columns = 64
    small.PixelData = ds.pixel_array[:64, :64].tobytes()
    small.ImagePositionPatient = [-158.135803, -179.035797, -70.699997]
    small.save_as(d / "b.dcm")
    return d


def mixed_series_orientation(tmp, mp):
    gt = make_dicom_series(tmp / "in", 4)
    ds = pydicom.dcmread(gt["paths"][0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # a sagittal localizer in the axial series
    ds.save_as(tmp / "in" / "localizer.dcm")
    return tmp / "in"


def irregular_spacing(tmp, mp):
    make_dicom_series(tmp / "in", 6, spacing=2.0, gaps={3: 2.0})  # slice 3 missing
    return tmp / "in"


def gantry_tilt(tmp, mp):
    make_dicom_series(tmp / "in", 5, spacing=2.0, tilt_mm=0.6)
    return tmp / "in"


def duplicate_positions(tmp, mp):
    make_dicom_series(tmp / "in", 3, series_uid="1.2.3.4.5.6")
    make_dicom_series(tmp / "in", 3, series_uid="1.2.3.4.5.6", seed=1)  # a second echo, same positions
    return tmp / "in"


def nan_volume(tmp, mp):
    p = tmp / "nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((4, 4, 3), np.nan, np.float32), np.eye(4)), p)
    return p


def zero_byte(tmp, mp):
    p = tmp / "zero.dcm"
    p.touch()
    return p


def unreadable(tmp, mp):
    p = tmp / "locked.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4)), p)
    os.chmod(p, 0)
    if os.geteuid() == 0:  # root reads anything: simulate what a normal user gets
        real = _fs.open_binary

        def deny(path):
            if os.path.samefile(path, p):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        mp.setattr(_fs, "open_binary", deny)
    return p


def truncated_pixels(tmp, mp):
    return pydicom_file("MR_truncated.dcm")


def nifti_4d(tmp, mp):
    return nibabel_file("example4d.nii.gz")


def cine_multiframe(tmp, mp):
    return pydicom_file("examples_ybr_color.dcm")


def missing_path(tmp, mp):
    return tmp / "does-not-exist"


def symlink_loop_input(tmp, mp):
    os.symlink(tmp / "loop", tmp / "loop")
    return tmp / "loop"


RAISE = [  # id, builder, error, pattern, stage
    ("corrupt-dicom", corrupt_dicom, InputError, "not a readable DICOM", "read"),
    ("corrupt-nifti", corrupt_nifti, InputError, "not a readable NIfTI", "read"),
    ("corrupt-png", corrupt_png, InputError, "not a readable image", "read"),
    ("rtstruct-no-pixels", rtstruct_only, InputError, "RTSTRUCT.*no pixel data", "discover"),
    ("missing-pixeldata", missing_pixeldata, InputError, "no PixelData", "read"),
    ("compressed-no-decoder", compressed_no_decoder, DecoderMissingError, "pip install pylibjpeg pylibjpeg-libjpeg",
     "read"),
    ("empty-folder", empty_folder, InputError, "folder is empty", "discover"),
    ("mixed-series-sizes", mixed_series_sizes, InputError, "mixed series", "read"),
    ("mixed-series-orientation", mixed_series_orientation, GeometryError, "different orientations", "read"),
    ("inconsistent-spacing", irregular_spacing, GeometryError, "inconsistent slice spacing", "read"),
    ("gantry-tilt", gantry_tilt, GeometryError, "gantry tilt", "read"),
    ("duplicate-positions", duplicate_positions, GeometryError, "share a position", "read"),
    ("nan-volume", nan_volume, InputError, "no finite values", "read"),
    ("zero-byte-file", zero_byte, InputError, r"empty \(0 bytes\)", "read"),
    ("unreadable-permission", unreadable, InputError, "permission denied", "read"),
    ("truncated-pixel-data", truncated_pixels, InputError, "truncated", "read"),
    ("4d-nifti-no-volume", nifti_4d, InputError, "--nifti-volume", "read"),
    ("cine-multiframe", cine_multiframe, InputError, "no per-frame position", "read"),
    ("missing-path", missing_path, InputError, "does not exist", "discover"),
    ("symlink-loop-input", symlink_loop_input, InputError, "symbolic link loop", "discover"),
]


@pytest.mark.parametrize("build,error,pattern,stage", [r[1:] for r in RAISE], ids=[r[0] for r in RAISE])
def test_bad_input_raises_documented_error(tmp_path, monkeypatch, build, error, pattern, stage):
    path = build(tmp_path, monkeypatch)
    if stage == "discover":
        with pytest.raises(error, match=pattern) as e:
            mio.discover_cases(path)
    else:
        cases = mio.discover_cases(path)
        assert len(cases) == 1
        with pytest.raises(error, match=pattern) as e:
            mio.read_case(cases[0])
    msg = e.value.format()
    assert isinstance(e.value, MedktError)
    assert str(path.name) in msg or any(str(p) in msg for p in path.parent.iterdir())  # names the file/folder


# ----------------------------------------------------------------------------- recoveries
def test_rtstruct_and_text_file_beside_a_series_are_skipped_and_logged(tmp_path, caplog):
    gt = make_dicom_series(tmp_path / "in", 3)
    shutil.copy(pydicom_file("rtstruct.dcm"), tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("report")
    (tmp_path / "in" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level("WARNING", logger="medkt.io"):
        cases = mio.discover_cases(tmp_path / "in")
    assert len(cases) == 1 and cases[0].ok
    assert {p.name for p, _ in cases.skipped} == {"rtstruct.dcm", "notes.txt"}
    assert "RTSTRUCT" in caplog.text and "notes.txt" in caplog.text
    np.testing.assert_array_equal(mio.read_case(cases[0]).array, gt["hu"].transpose(2, 1, 0))


def test_zero_byte_file_in_series_folder_is_its_own_failed_case(tmp_path):
    gt = make_dicom_series(tmp_path / "in", 3)
    (tmp_path / "in" / "partial.dcm").touch()
    cases = {c.case_id: c for c in mio.discover_cases(tmp_path / "in")}
    assert "empty (0 bytes)" in cases["partial"].problem
    np.testing.assert_array_equal(mio.read_case(cases["in"]).array, gt["hu"].transpose(2, 1, 0))


def test_symlink_loop_inside_folder_is_skipped_and_logged(tmp_path, caplog):
    d = tmp_path / "in"
    d.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4)), d / "ct.nii.gz")
    os.symlink(d, d / "again")          # folder loop
    os.symlink(d / "self", d / "self")  # file link loop
    with caplog.at_level("WARNING", logger="medkt.io"):
        cases = mio.discover_cases(d)
    assert [c.case_id for c in cases] == ["ct"]
    reasons = {p.name: why for p, why in cases.skipped}
    assert "loop" in reasons["again"] and "loop" in reasons["self"]
    assert "loop" in caplog.text


def test_alpha_channel_is_dropped_with_a_warning(tmp_path, caplog):
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with caplog.at_level("WARNING", logger="medkt.io"):
        vol = mio.read_image(tmp_path / "a.png")
    assert vol.array.shape == (5, 7, 3)
    np.testing.assert_array_equal(vol.array, rgba[..., :3])
    assert "alpha channel dropped" in caplog.text and "1 partly transparent" in caplog.text
    assert any("alpha" in w for w in vol.meta["warnings"])


def test_partly_nan_volume_is_read_and_replaced_when_prepared(tmp_path, caplog):
    data = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "x.nii.gz")
    with caplog.at_level("WARNING", logger="medkt.io"):
        vol = mio.read_image(tmp_path / "x.nii.gz", modality="MR")
        out, params = mio.prepare_intensity(vol)
    assert np.isfinite(out).all() and params["nonfinite_replaced"] == 1
    assert "NaN" in caplog.text


def test_multipage_tiff_is_refused(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    (case,) = mio.discover_cases(tmp_path / "stack.tif")
    with pytest.raises(InputError, match="3 frames/pages"):
        mio.read_case(case)


# ----------------------------------------------------------------------------- outputs
def test_output_folder_inside_input_is_refused(tmp_path):
    make_dicom_series(tmp_path / "in", 2)
    with pytest.raises(OutputError, match="inside the input"):
        prepare_output_dir(tmp_path / "in" / "results", [tmp_path / "in"])
    vol = mio.read_image(tmp_path / "in")
    with pytest.raises(OutputError, match="never writes into an input tree"):
        mio.write_mask(np.zeros(vol.array.shape, np.uint8), vol, tmp_path / "in" / "sub" / "mask.nii.gz")
    assert not (tmp_path / "in" / "sub").exists()


def test_overwriting_the_input_file_is_refused(tmp_path):
    p = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4)), p)
    vol = mio.read_image(p)
    before = p.read_bytes()
    with pytest.raises(OutputError):
        mio.write_mask(np.zeros((3, 3, 3), np.uint8), vol, p, overwrite=True)
    assert p.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path):
    vol = mio.volume_from_array(np.zeros((3, 3, 3)), np.eye(4))
    out = mio.write_mask(np.ones((3, 3, 3), np.uint8), vol, tmp_path / "m.nii.gz")
    with pytest.raises(OutputError, match="--overwrite"):
        mio.write_mask(np.zeros((3, 3, 3), np.uint8), vol, out)
    assert np.asanyarray(nib.load(out).dataobj).max() == 1
    mio.write_mask(np.zeros((3, 3, 3), np.uint8), vol, out, overwrite=True)
    assert np.asanyarray(nib.load(out).dataobj).max() == 0


def test_wrong_mask_shape_and_float_mask_are_refused(tmp_path):
    vol = mio.volume_from_array(np.zeros((3, 4, 5)), np.eye(4))
    with pytest.raises(OutputError, match="differs from the image shape"):
        mio.write_mask(np.zeros((5, 4, 3), np.uint8), vol, tmp_path / "m.nii.gz")
    with pytest.raises(OutputError, match="write_saliency"):
        mio.write_mask(np.full((3, 4, 5), 0.5), vol, tmp_path / "m.nii.gz")
    assert list(tmp_path.iterdir()) == []
