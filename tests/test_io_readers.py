"""Readers on real files shipped by pydicom / nibabel and on small synthetic series (all offline)."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medkt import io as mio
from medkt.io.testing import make_dicom_series, make_enhanced_multiframe, nibabel_file, pydicom_file


# ----------------------------------------------------------------------------- DICOM
@pytest.mark.parametrize("name,modality,shape", [("CT_small.dcm", "CT", (128, 128, 1)),
                                                 ("MR_small.dcm", "MR", (64, 64, 1))])
def test_single_dicom_file_reads_with_rescale(name, modality, shape):
    vol = mio.read_image(pydicom_file(name))
    ds = pydicom.dcmread(pydicom_file(name))
    assert vol.kind == "dicom" and vol.modality == modality
    assert vol.array.shape == shape
    expected = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    np.testing.assert_array_equal(vol.array[:, :, 0], expected.T)  # array[i, j] == pixel_array[j, i]
    assert vol.meta["sop_instance_uids"] == [ds.SOPInstanceUID]
    assert vol.spacing == pytest.approx((float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]),
                                         float(ds.SliceThickness)))


def test_ct_small_is_in_hounsfield_units():
    vol = mio.read_image(pydicom_file("CT_small.dcm"))
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert float(ds.RescaleIntercept) == -1024
    assert vol.array.min() == ds.pixel_array.min() - 1024


def test_series_sorted_by_position_not_instance_number_or_name(tmp_path):
    gt = make_dicom_series(tmp_path / "ser", 7, spacing=2.0, shuffle=True)
    # the shuffled InstanceNumbers must not be in spatial order, or the test proves nothing
    inst = [pydicom.dcmread(p).InstanceNumber for p in gt["paths"]]
    assert inst != sorted(inst)
    (case,) = mio.discover_cases(tmp_path / "ser")
    vol = mio.read_case(case)
    np.testing.assert_array_equal(vol.array, gt["hu"].transpose(2, 1, 0))
    assert vol.meta["sop_instance_uids"] == gt["sop_uids"]
    assert vol.spacing[2] == pytest.approx(2.0)


def test_series_with_reversed_normal_is_sorted_along_the_normal(tmp_path):
    # IOP with column cosine (0, -1, 0): the normal points to -z (feet), so k must increase toward feet
    gt = make_dicom_series(tmp_path / "ser", 5, orientation=(1, 0, 0, 0, -1, 0), spacing=3.0)
    vol = mio.read_image(tmp_path / "ser")
    np.testing.assert_array_equal(vol.array, gt["hu"].transpose(2, 1, 0))
    assert vol.affine[2, 2] == pytest.approx(-3.0)  # RAS z decreases with k


def test_per_slice_rescale_slope_is_applied(tmp_path):
    gt = make_dicom_series(tmp_path / "ser", 4, slopes=[1.0, 0.5, 1.0, 2.5], intercept=-1000.0)
    vol = mio.read_image(tmp_path / "ser")
    np.testing.assert_allclose(vol.array, gt["hu"].transpose(2, 1, 0))
    assert vol.array.dtype == np.float32  # 0.5 * odd values is not integral


def test_enhanced_multiframe_frames_sorted_and_rescaled(tmp_path):
    mf = make_enhanced_multiframe(tmp_path / "mf" / "mf.dcm", 5, frame_order=[3, 0, 4, 1, 2])
    (case,) = mio.discover_cases(tmp_path / "mf")
    vol = mio.read_case(case)
    np.testing.assert_array_equal(vol.array, mf["hu"].transpose(2, 1, 0))
    assert vol.meta["frames"] == [1, 3, 4, 0, 2]  # file frame that holds spatial slice k
    assert vol.spacing == pytest.approx((0.7, 0.8, 3.0))


def test_rtdose_legacy_multiframe_grid():
    vol = mio.read_image(pydicom_file("rtdose.dcm"))
    ds = pydicom.dcmread(pydicom_file("rtdose.dcm"))
    assert vol.array.shape == (ds.Columns, ds.Rows, int(ds.NumberOfFrames))
    np.testing.assert_allclose(vol.array[:, :, 0], ds.pixel_array[0].T * float(ds.DoseGridScaling), rtol=1e-6)


def test_folder_with_several_series_gives_one_case_each(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm"):
        shutil.copy(pydicom_file(name), folder / name)
    make_dicom_series(folder / "sub", 4)
    shutil.copy(pydicom_file("rtstruct.dcm"), folder / "rtstruct.dcm")  # skipped, logged
    (folder / "README.txt").write_text("not an image")
    cases = mio.discover_cases(folder)
    assert len(cases) == 4 and all(c.ok for c in cases)
    assert len({c.case_id for c in cases}) == 4
    mods = sorted(c.info["modality"] for c in cases)
    assert mods == ["CT", "CT", "MR", "RTDOSE"]
    skipped = {p.name for p, _ in cases.skipped}
    assert skipped == {"rtstruct.dcm", "README.txt"}
    shapes = sorted(tuple(mio.read_case(c).array.shape) for c in cases)
    assert shapes == [(10, 10, 15), (32, 32, 4), (64, 64, 1), (128, 128, 1)]


def test_duplicate_instances_are_read_once(tmp_path):
    folder = tmp_path / "dup"
    folder.mkdir()
    shutil.copy(pydicom_file("MR_small.dcm"), folder / "a.dcm")
    shutil.copy(pydicom_file("MR_small_implicit.dcm"), folder / "b.dcm")  # same SOPInstanceUID
    (case,) = mio.discover_cases(folder)
    assert mio.read_case(case).array.shape == (64, 64, 1)


def test_compressed_file_with_available_decoder_reads():
    vol = mio.read_image(pydicom_file("MR_small_RLE.dcm"))  # RLE: pydicom's own decoder
    ref = mio.read_image(pydicom_file("MR_small.dcm"))
    np.testing.assert_array_equal(vol.array, ref.array)


def test_two_dimensional_dicom_without_geometry():
    vol = mio.read_image(pydicom_file("SC_rgb_small_odd.dcm"))
    assert vol.is_2d and vol.array.shape == (3, 3, 3) and vol.array.dtype == np.uint8


# ----------------------------------------------------------------------------- NIfTI
def test_nifti_3d_keeps_array_and_affine():
    path = nibabel_file("anatomical.nii")
    img = nib.load(path)
    vol = mio.read_image(path, modality="MR")
    np.testing.assert_array_equal(vol.array, np.asanyarray(img.dataobj))
    np.testing.assert_array_equal(vol.affine, img.affine)
    assert vol.array.dtype.isnative and vol.modality == "MR"
    assert vol.meta["nifti_header"]["sform_code"] == img.header["sform_code"]


def test_nifti_4d_volume_option():
    path = nibabel_file("example4d.nii.gz")
    img = nib.load(path)
    vol = mio.read_image(path, nifti_volume=1)
    assert vol.array.shape == img.shape[:3]
    np.testing.assert_array_equal(vol.array, np.asanyarray(img.dataobj)[..., 1])
    assert vol.meta["volume_index"] == 1


def test_nifti_4d_singleton_fourth_axis_is_dropped(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "one.nii.gz")
    vol = mio.read_image(tmp_path / "one.nii.gz")
    np.testing.assert_array_equal(vol.array, data[..., 0])


def test_nifti_folder_with_same_names_gets_unique_ids(tmp_path):
    for sub in ("p1", "p2"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "in" / sub / "ct.nii.gz")
    ids = sorted(c.case_id for c in mio.discover_cases(tmp_path / "in"))
    assert ids == ["p1_ct", "p2_ct"]


# ----------------------------------------------------------------------------- 2-D
def test_png_gray_rgb_jpeg_tiff(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    yy, xx = np.mgrid[0:20, 0:30]
    rgb = np.stack([xx * 8, yy * 12, 255 - xx * 8], -1).astype(np.uint8)  # smooth: JPEG keeps it close
    g16 = rng.integers(0, 60000, (20, 30)).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    import tifffile
    tifffile.imwrite(tmp_path / "g16.tif", g16)
    cases = {c.case_id: c for c in mio.discover_cases(tmp_path)}
    assert set(cases) == {"g", "c_png", "c_jpg", "g16"}
    np.testing.assert_array_equal(mio.read_case(cases["g"]).array, gray)
    np.testing.assert_array_equal(mio.read_image(tmp_path / "c.png").array, rgb)
    jpg = mio.read_image(tmp_path / "c.jpg").array
    assert jpg.shape == (20, 30, 3) and np.abs(jpg.astype(int) - rgb).mean() < 8
    t = mio.read_image(tmp_path / "g16.tif")
    np.testing.assert_array_equal(t.array, g16)
    assert t.is_2d and t.spatial_shape == (20, 30)


def test_rgb_with_equal_channels_is_grayscale(tmp_path):
    gray = np.tile(np.arange(16, dtype=np.uint8) * 10, (8, 1))
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "x.png")
    vol = mio.read_image(tmp_path / "x.png")
    np.testing.assert_array_equal(vol.array, gray)


# ----------------------------------------------------------------------------- in memory
def test_volume_from_array_and_nifti():
    arr = np.zeros((4, 5, 6), np.float32)
    v = mio.volume_from_array(arr, np.diag([2.0, 3.0, 4.0, 1.0]), modality="CT")
    assert v.spacing == (2.0, 3.0, 4.0) and not v.is_2d and v.modality == "CT"
    rgb = mio.volume_from_array(np.zeros((8, 9, 3), np.uint8))
    assert rgb.is_2d and rgb.spatial_shape == (8, 9)
    img = nib.load(nibabel_file("anatomical.nii"))
    nv = mio.volume_from_nifti(img)
    np.testing.assert_array_equal(nv.affine, img.affine)
    assert nv.meta["nifti_header"] is not None and nv.source_root is None


# ----------------------------------------------------------------------------- MONAI interop
@pytest.mark.filterwarnings("ignore:.*nvImageCodec")
def test_monai_loadimage_with_medkt_reader(tmp_path):
    pytest.importorskip("monai")
    from monai.transforms import LoadImage

    from medkt.io.monai_reader import MedktReader
    gt = make_dicom_series(tmp_path / "ser", 4)
    img = LoadImage(reader=MedktReader(), image_only=True)(str(tmp_path / "ser"))
    np.testing.assert_array_equal(np.asarray(img), gt["hu"].transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine.numpy(), mio.read_image(tmp_path / "ser").affine)
    assert img.meta["space"] == "RAS" and img.meta["modality"] == "CT"
