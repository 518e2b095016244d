"""Geometry round trips: masks written for an input land on the same world coordinates, voxel for voxel."""
from __future__ import annotations

import importlib.util
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medkt import io as mio
from medkt.errors import OptionalDependencyError
from medkt.io.dicom_geometry import LPS_TO_RAS
from medkt.io.testing import make_dicom_series, nibabel_file, pydicom_file

HAS_HIGHDICOM = importlib.util.find_spec("highdicom") is not None
GEOM = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z",
        "srow_x", "srow_y", "srow_z", "pixdim")


def _blob(shape, seed=0):
    """An asymmetric label mask (so flips and transposes cannot go unnoticed)."""
    rng = np.random.default_rng(seed)
    m = (rng.random(shape) > 0.7).astype(np.uint8)
    m[(0,) * len(shape)] = 2
    return m


def _ijk_samples(shape, n=20, seed=1):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in shape], axis=1)


def _dicom_world_ras(vol, ijk):
    """World RAS of voxels computed independently from each source slice's own IPP/IOP/PixelSpacing."""
    out = []
    for i, j, k in ijk:
        ds = pydicom.dcmread(vol.meta["source_paths"][k], stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, float)
        dr, dc = (float(x) for x in ds.PixelSpacing)
        lps = np.array(ds.ImagePositionPatient, float) + i * dc * iop[:3] + j * dr * iop[3:]
        out.append((LPS_TO_RAS[:3, :3] @ lps))
    return np.array(out)


def _check_mask_file(path, vol, mask, ijk):
    img = nib.load(path)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), mask)
    assert img.header["qform_code"] > 0 and img.header["sform_code"] > 0
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-4)
    np.testing.assert_allclose(nib.affines.apply_affine(img.get_qform(), ijk), nib.affines.apply_affine(vol.affine, ijk),
                               atol=1e-3)
    return img


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_dicom_file_mask_roundtrip_world_coordinates(tmp_path, name):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file(name), src / name)
    vol = mio.read_image(src)
    mask = _blob(vol.array.shape)
    out = mio.write_mask(mask, vol, tmp_path / "out" / "mask.nii.gz")
    ijk = _ijk_samples(vol.array.shape)
    img = _check_mask_file(out, vol, mask, ijk)
    np.testing.assert_allclose(nib.affines.apply_affine(img.affine, ijk), _dicom_world_ras(vol, ijk), atol=1e-3)


def test_multiseries_folder_mask_roundtrip(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(pydicom_file(name), folder / name)
    make_dicom_series(folder / "oblique", 5, orientation=(0.866025, 0.5, 0, 0, 0, -1), spacing=1.5)
    cases = mio.discover_cases(folder)
    assert len(cases) == 3
    for case in cases:
        vol = mio.read_case(case)
        mask = _blob(vol.array.shape, seed=len(case.case_id))
        out = mio.write_mask(mask, vol, tmp_path / "out" / f"{case.case_id}.nii.gz")
        ijk = _ijk_samples(vol.array.shape)
        img = _check_mask_file(out, vol, mask, ijk)
        np.testing.assert_allclose(nib.affines.apply_affine(img.affine, ijk), _dicom_world_ras(vol, ijk), atol=1e-3)


@pytest.mark.parametrize("name,volume", [("anatomical.nii", None), ("example4d.nii.gz", 0)])
def test_nifti_mask_has_identical_header_geometry(tmp_path, name, volume):
    src = nibabel_file(name)
    vol = mio.read_image(src, nifti_volume=volume)
    mask = _blob(vol.array.shape)
    out = mio.write_mask(mask, vol, tmp_path / "mask.nii.gz")
    img, ref = nib.load(out), nib.load(src)
    for f in GEOM:
        got, exp = np.asarray(img.header[f]), np.asarray(ref.header[f])
        if f == "pixdim":
            got, exp = got[:4], exp[:4]
        np.testing.assert_array_equal(got, exp, err_msg=f)
    np.testing.assert_array_equal(img.affine, ref.affine)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), mask)
    assert img.header["scl_slope"] in (1, 0) or np.isnan(img.header["scl_slope"])
    ijk = _ijk_samples(vol.array.shape)
    np.testing.assert_array_equal(nib.affines.apply_affine(img.affine, ijk), nib.affines.apply_affine(ref.affine, ijk))


def _oblique_affine(lps=False):
    a, b = np.deg2rad(20), np.deg2rad(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag([0.9, 1.1, 2.5])
    if lps:
        aff[:3, :3] = np.diag([-1, -1, 1]) @ aff[:3, :3]
    aff[:3, 3] = [-40.0, 25.0, -12.0]
    return aff


@pytest.mark.parametrize("kind", ["lps", "oblique", "oblique_lps"])
def test_oblique_and_lps_nifti_survive_slice_reassemble_write(tmp_path, kind):
    shape = (12, 10, 7)
    aff = np.diag([-0.8, -0.8, 2.0, 1.0]) if kind == "lps" else _oblique_affine(lps=kind == "oblique_lps")
    aff[:3, 3] = aff[:3, 3] if kind != "lps" else [30.0, 40.0, -5.0]
    img = nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.int16).reshape(shape), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=2)
    nib.save(img, tmp_path / "img.nii.gz")
    vol = mio.read_image(tmp_path / "img.nii.gz", modality="CT")
    truth = _blob(shape, seed=3)
    for axis in ("axial", "coronal", "sagittal", 0, 2):
        slices, smap = mio.iter_slices(vol, axis, array=truth)
        back = mio.reassemble({k: s for k, s in slices}, smap)
        np.testing.assert_array_equal(back, truth)
    slices, smap = mio.iter_slices(vol, "axial", array=truth)
    out = mio.write_mask(mio.reassemble([s for _, s in slices], smap), vol, tmp_path / "out" / "mask.nii.gz")
    got, ref = nib.load(out), nib.load(tmp_path / "img.nii.gz")
    for f in GEOM:
        np.testing.assert_array_equal(np.asarray(got.header[f])[:4] if f == "pixdim" else got.header[f],
                                      np.asarray(ref.header[f])[:4] if f == "pixdim" else ref.header[f], err_msg=f)
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), truth)


def test_display_slices_do_not_depend_on_storage_orientation():
    """The same anatomy stored RAS, LPS or with permuted axes gives identical display slices."""
    rng = np.random.default_rng(0)
    ras = rng.integers(0, 100, (6, 5, 4)).astype(np.int16)
    aff = np.diag([1.0, 1.2, 2.0, 1.0])
    vol_ras = mio.volume_from_array(ras, aff)
    lps_arr = ras[::-1, ::-1, :]                              # flip x and y ...
    lps_aff = aff @ np.array([[-1, 0, 0, 5], [0, -1, 0, 4], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    perm_arr = ras.transpose(2, 0, 1)                         # store z first
    perm_aff = aff[:, [2, 0, 1, 3]]
    for axis in ("axial", "coronal", "sagittal"):
        ref, smap = mio.iter_slices(vol_ras, axis)
        for arr, a in ((lps_arr, lps_aff), (perm_arr, perm_aff)):
            got, smap2 = mio.iter_slices(mio.volume_from_array(arr, a), axis)
            assert smap2.pixel_spacing == smap.pixel_spacing
            for (k1, s1), (k2, s2) in zip(ref, got):
                np.testing.assert_array_equal(s1, s2)


def test_axial_display_is_radiological():
    vol = np.zeros((5, 6, 4), np.uint8)
    vol[4, 0, 1] = 1   # far patient right (x max), posterior (y min)
    v = mio.volume_from_array(vol, np.eye(4))
    slices, smap = mio.iter_slices(v, "axial")
    r, c = np.argwhere(slices[1][1])[0]
    assert (r, c) == (5, 0)  # posterior -> bottom row, patient right -> left column
    assert smap.source_axis_index(1) == (2, 1)


def test_reassemble_rejects_wrong_slice_shape():
    v = mio.volume_from_array(np.zeros((4, 5, 3)), np.eye(4))
    _, smap = mio.iter_slices(v, "axial")
    from medkt.errors import GeometryError
    with pytest.raises(GeometryError, match="expected"):
        mio.reassemble({0: np.zeros((4, 4))}, smap)


def test_png_mask_and_npy_saliency_for_2d(tmp_path):
    from PIL import Image
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / "x.png")
    vol = mio.read_image(tmp_path / "x.png")
    mask = _blob((6, 9)).clip(0, 1)
    out = mio.write_mask(mask, vol, tmp_path / "o" / "mask.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), mask * 255)
    sal = np.random.default_rng(0).random((6, 9)).astype(np.float32)
    np.testing.assert_array_equal(np.load(mio.write_saliency(sal, vol, tmp_path / "o" / "sal.npy")), sal)


def test_float_saliency_nifti_on_input_grid(tmp_path):
    vol = mio.read_image(nibabel_file("anatomical.nii"))
    sal = np.random.default_rng(0).random(vol.array.shape).astype(np.float32)
    out = mio.write_saliency(sal, vol, tmp_path / "sal.nii.gz")
    img = nib.load(out)
    assert img.get_data_dtype().newbyteorder("=") == np.float32  # byte order follows the input header
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), sal)
    np.testing.assert_array_equal(img.affine, vol.affine)


def test_overlay_png(tmp_path):
    from PIL import Image
    vol = mio.read_image(nibabel_file("anatomical.nii"), modality="MR")
    mask = (vol.array > np.percentile(vol.array, 90)).astype(np.uint8)
    out = mio.write_overlay(vol, tmp_path / "ov.png", mask=mask, saliency=vol.array.astype(float))
    rgb = np.asarray(Image.open(out))
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and (rgb == [255, 0, 0]).all(-1).any()  # red outline drawn


# ----------------------------------------------------------------------------- DICOM-SEG
@pytest.mark.skipif(not HAS_HIGHDICOM, reason="highdicom not installed (pip install 'medkt[dicom]')")
def test_dicom_seg_references_source_instances(tmp_path):
    gt = make_dicom_series(tmp_path / "in", 5, spacing=2.0)
    vol = mio.read_image(tmp_path / "in")
    mask = np.zeros(vol.array.shape, np.uint8)
    mask[3:9, 4:12, 1:4] = 1
    mask[20:24, 20:22, 2] = 2
    out = mio.write_mask(mask, vol, tmp_path / "out" / "seg.dcm", labels={1: "liver", 2: "lesion"})
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.FrameOfReferenceUID == pydicom.dcmread(gt["paths"][0]).FrameOfReferenceUID
    ref_series = ds.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == gt["series_uid"]
    assert {x.ReferencedSOPInstanceUID for x in ref_series.ReferencedInstanceSequence} == set(gt["sop_uids"])
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "lesion"]
    k_of = {uid: k for k, uid in enumerate(vol.meta["sop_instance_uids"])}
    frames = ds.pixel_array
    for f, grp in enumerate(ds.PerFrameFunctionalGroupsSequence):
        src_uid = grp.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        seg_no = grp.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        k = k_of[src_uid]
        np.testing.assert_array_equal(frames[f], (mask[:, :, k] == seg_no).T.astype(frames.dtype))
        np.testing.assert_allclose(grp.PlanePositionSequence[0].ImagePositionPatient, gt["positions"][k], atol=1e-4)


@pytest.mark.skipif(not HAS_HIGHDICOM, reason="highdicom not installed (pip install 'medkt[dicom]')")
def test_dicom_seg_for_ct_small(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src)
    vol = mio.read_image(src)
    mask = _blob(vol.array.shape).clip(0, 1)
    ds = pydicom.dcmread(mio.write_mask(mask, vol, tmp_path / "seg.dcm"))
    src_ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    grp = ds.PerFrameFunctionalGroupsSequence[0]
    assert grp.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == src_ds.SOPInstanceUID
    assert ds.StudyInstanceUID == src_ds.StudyInstanceUID
    np.testing.assert_array_equal(ds.pixel_array, mask[:, :, 0].T)


def test_dicom_seg_without_highdicom_names_the_extra(tmp_path, monkeypatch):
    import sys
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), src)
    vol = mio.read_image(src)
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom -> ImportError
    with pytest.raises(OptionalDependencyError, match="highdicom") as e:
        mio.write_mask(np.zeros(vol.array.shape, np.uint8), vol, tmp_path / "seg.dcm")
    assert "medkt[dicom]" in e.value.format()
    assert not (tmp_path / "seg.dcm").exists()
