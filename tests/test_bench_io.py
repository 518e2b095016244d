"""One I/O stack: a file read through a bench dataset adapter gives exactly the pixels medkt.io gives.

The NIfTI is stored in LPS+ voxel order with anisotropic voxels and a lesion on the patient's right,
so a left-right mirror (the old bench reader's axial slices) or another CT window would show.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medkt import io as mio
from medkt.bench.datasets import load_dataset


def _lps_ct(root, shape=(24, 20, 5)):
    """imagesTs/labelsTs with one CT volume (HU) in LPS voxel order; lesion on the patient's right."""
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 400, size=shape).astype(np.int16)
    lab = np.zeros(shape, np.uint8)
    lab[2:7, 8:12, 1:4] = 1                       # i small = patient right in LPS storage
    hu[lab > 0] = 60
    affine = np.diag([-0.8, -0.7, 3.0, 1.0])       # i -> L (flipped to R), j -> P, k -> S
    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir()
    nib.save(nib.Nifti1Image(hu, affine), str(root / "imagesTs" / "ct_000_0000.nii.gz"))
    nib.save(nib.Nifti1Image(lab, affine), str(root / "labelsTs" / "ct_000.nii.gz"))
    return root / "imagesTs" / "ct_000_0000.nii.gz", root / "labelsTs" / "ct_000.nii.gz"


def _io_slices(path, modality, window):
    vol = mio.read_image(path)
    img01, _ = mio.prepare_intensity(vol, modality=modality, window=window)
    return dict(mio.iter_slices(vol, "axial", array=img01)[0])


@pytest.mark.parametrize("window", [None, "abdomen", [40, 400]])
def test_nifti_slices_through_bench_equal_medkt_io(tmp_path, window):
    img_path, lab_path = _lps_ct(tmp_path / "unito")
    opts = {"slices": "all"} if window is None else {"slices": "all", "window": window}
    ds = load_dataset("unitochest", tmp_path / "unito", options=opts)
    expect = _io_slices(img_path, "ct", "lung" if window is None else window)
    labels = dict(mio.iter_slices(mio.read_image(lab_path), "axial")[0])
    assert [c.meta["slice"] for c in ds.cases] == sorted(expect) == list(range(5))
    for c in ds.cases:
        k = c.meta["slice"]
        img, gt = ds.image(c), ds.mask(c)
        assert img.dtype == np.float32 and np.array_equal(img, expect[k]), k
        assert np.array_equal(gt, labels[k] > 0), k
        assert ds.spacing(c) == pytest.approx((0.7, 0.8))  # (row, col) mm of the display slice
    lesion = ds.mask(ds.cases[2])
    cols = np.nonzero(lesion.any(axis=0))[0]
    assert cols.max() < lesion.shape[1] / 2  # patient right is on the image left (radiological)


def test_default_slices_are_the_foreground_ones(tmp_path):
    _lps_ct(tmp_path / "unito")
    ds = load_dataset("unitochest", tmp_path / "unito")
    assert [c.meta["slice"] for c in ds.cases] == [1, 2, 3]


def test_2d_images_through_bench_equal_medkt_io(tmp_path):
    from PIL import Image
    root = tmp_path / "udiat"
    (root / "original").mkdir(parents=True)
    (root / "GT").mkdir()
    img16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 40 + 1000)
    Image.fromarray(img16).save(root / "original" / "000001.png")
    img8 = np.tile(np.arange(20, 220, 5, dtype=np.uint8), (30, 1))
    Image.fromarray(img8).save(root / "original" / "000002.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[5:10, 5:10] = 255
    for name in ("000001.png", "000002.png"):
        Image.fromarray(mask).save(root / "GT" / name)
    ds = load_dataset("udiat", root)
    for c in ds.cases:
        expect, _ = mio.prepare_intensity(mio.read_image(c.image))  # what medkt segment sees
        assert np.array_equal(ds.image(c), expect)
        assert np.array_equal(ds.mask(c), mask > 0)


def test_cached_volume_slices_are_not_shared_with_callers(tmp_path):
    _lps_ct(tmp_path / "unito")
    ds = load_dataset("unitochest", tmp_path / "unito")
    c = ds.cases[0]
    first = ds.image(c)
    first[:] = 0  # a caller normalising in place must not change what the next reader gets
    assert ds.image(c).any() and ds.mask(c).any()
