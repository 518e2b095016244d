"""``medkt evaluate`` compares the prediction's voxel grid with the ground truth's: refuse, or resample.

A prediction on another spacing, or stored with a flipped axis (same anatomy, other voxel order),
must not be scored voxel by voxel: by default the case fails with one error naming both files and
the fix; with ``--resample-pred`` it is resampled onto the ground-truth grid (nearest neighbour)
and the report says so.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medkt.cli.main import main
from medkt.metrics.evaluate import evaluate
from medkt.metrics.grids import grid_mismatch, resample_nearest

nib = pytest.importorskip("nibabel")

GT_AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])
SHAPE = (20, 20, 8)


def gt_mask() -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    m[4:12, 6:14, 2:6] = 1
    return m


def coarse():
    """The same box on a 1.6 x 1.6 x 3 mm grid: coarse voxel i covers fine voxels 2i and 2i+1."""
    m = np.zeros((10, 10, 8), np.uint8)
    m[2:6, 3:7, 2:6] = 1
    aff = np.diag([1.6, 1.6, 3.0, 1.0])
    aff[:2, 3] = 0.4  # centre of coarse voxel 0 = midway between fine voxels 0 and 1
    return m, aff


def flipped():
    """The same box stored with axis 0 reversed, and an affine that says so (same world position)."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, SHAPE[0] - 1
    return gt_mask()[::-1].copy(), GT_AFFINE @ flip


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for name in ("spacing", "flip", "same"):
        nib.save(nib.Nifti1Image(gt_mask(), GT_AFFINE), str(gt / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(*coarse()), str(pred / "spacing.nii.gz"))
    nib.save(nib.Nifti1Image(*flipped()), str(pred / "flip.nii.gz"))
    rounded = GT_AFFINE.copy()
    rounded[:3, 3] += 2e-5  # float32 header rounding: still the same grid
    nib.save(nib.Nifti1Image(gt_mask(), rounded), str(pred / "same.nii.gz"))
    return pred, gt


def test_grid_mismatch_names_the_difference():
    m, aff = coarse()
    assert "spacing" in grid_mismatch(m.shape, aff, SHAPE, GT_AFFINE)
    f, faff = flipped()
    assert grid_mismatch(f.shape, faff, SHAPE, GT_AFFINE) == "axis 0 flipped"
    shifted = GT_AFFINE.copy()
    shifted[2, 3] = 3.0  # one slice along z
    assert "origin" in grid_mismatch(SHAPE, shifted, SHAPE, GT_AFFINE)
    assert grid_mismatch(SHAPE, GT_AFFINE, SHAPE, GT_AFFINE) is None
    # resampling recovers the ground truth exactly in both cases
    np.testing.assert_array_equal(resample_nearest(m, aff, SHAPE, GT_AFFINE), gt_mask())
    np.testing.assert_array_equal(resample_nearest(f, faff, SHAPE, GT_AFFINE), gt_mask())
    assert resample_nearest(gt_mask().astype(bool), GT_AFFINE, SHAPE, GT_AFFINE).dtype == bool


def test_mismatched_grids_are_refused_by_default(folders):
    pred, gt = folders
    rows = {r["case_id"]: r for r in evaluate(pred, gt, n_boot=10).rows}
    assert rows["same"]["status"] == "ok" and rows["same"]["geometry"] == "same grid"
    assert rows["same"]["dsc"] == 1.0
    for cid, what in (("spacing", "spacing"), ("flip", "axis 0 flipped")):
        r = rows[cid]
        assert r["status"] == "failed" and r["geometry"].startswith("refused")
        assert "dsc" not in r  # never scored voxel by voxel
        assert what in r["reason"] and "--resample-pred" in r["reason"]
        assert str(pred / f"{cid}.nii.gz") in r["reason"] and str(gt / f"{cid}.nii.gz") in r["reason"]


def test_resample_pred_scores_on_the_gt_grid(folders):
    pred, gt = folders
    rep = evaluate(pred, gt, n_boot=10, resample_pred=True)
    rows = {r["case_id"]: r for r in rep.rows}
    for cid in ("spacing", "flip"):
        assert rows[cid]["status"] == "ok" and rows[cid]["dsc"] == 1.0 and rows[cid]["nsd"] == 1.0
        assert rows[cid]["geometry"].startswith("resampled onto the GT grid (nearest neighbour)")
    assert rows["same"]["geometry"] == "same grid"
    assert rep.summary["geometry"]["resampled"] == ["flip", "spacing"]
    assert rep.summary["geometry"]["resample_pred"] is True


def test_cli_refuses_then_resamples_and_reports_which(folders, tmp_path, capsys):
    pred, gt = folders
    out = tmp_path / "r1"
    assert main(["evaluate", str(pred), str(gt), "-o", str(out), "--n-boot", "10"]) == 1
    text = capsys.readouterr().out
    assert "failed: flip" in text and "--resample-pred" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["geometry"]["refused"] == ["flip", "spacing"]
    out2 = tmp_path / "r2"
    assert main(["evaluate", str(pred), str(gt), "-o", str(out2), "--n-boot", "10", "--resample-pred"]) == 0
    assert "resampled onto the GT grid" in capsys.readouterr().out
    with open(out2 / "per_case.csv") as f:
        table = {r["case_id"]: r for r in csv.DictReader(f)}
    assert table["flip"]["geometry"].startswith("resampled") and float(table["flip"]["dsc"]) == 1.0
    run = json.loads((out2 / "run.json").read_text())
    assert run["geometry"]["resampled"] == ["flip", "spacing"] and run["geometry"]["resample_pred"] is True
    assert run["conventions"]["nsd_mode"] == "deepmind" and run["conventions"]["hd95_mode"] == "deepmind"
