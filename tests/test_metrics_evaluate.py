"""``medkt evaluate`` and ``medkt.evaluate``: matching by case id, missing cases, reports."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import medkt
from medkt.cli.main import main
from medkt.errors import ConfigError, OutputError
from medkt.metrics.evaluate import evaluate


def square(shift=0, where=10, shape=(32, 32)):
    m = np.zeros(shape, np.uint8)
    m[where:where + 12, where + shift:where + 12 + shift] = 1
    return m


def box3d(z0):
    m = np.zeros((10, 10, 10), np.uint8)
    m[z0:z0 + 4, 2:8, 2:8] = 1
    return m


@pytest.fixture
def folders(tmp_path):
    """GT a, b, c, e; predictions a, c, d, e (b missing, d without GT).

    b and c sit at different places, so pairing by listing order (pred c with GT b)
    would score 0; pairing by id scores 1."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    np.save(gt / "a.npy", square())
    np.save(gt / "b.npy", square(where=2))
    np.save(gt / "c.npy", square(where=18))
    np.save(gt / "e.npy", np.zeros((32, 32), np.uint8))
    np.save(pred / "a.npy", square(1) * 255)
    np.save(pred / "c.npy", square(where=18))
    np.save(pred / "d.npy", square())
    np.save(pred / "e.npy", np.zeros((32, 32), np.uint8))
    return pred, gt


def test_python_api_matches_by_case_id_and_reports_missing(folders, tmp_path):
    pred, gt = folders
    rep = medkt.evaluate(pred, gt, tmp_path / "report", nsd_units="px", nsd_tolerance=1.0, n_boot=200)
    rows = {r["case_id"]: r for r in rep.rows}
    assert set(rows) == {"a", "b", "c", "d", "e"}
    assert rows["a"]["dsc"] == pytest.approx(264 / 288) and rows["a"]["nsd"] == 1.0
    assert rows["c"]["dsc"] == 1.0
    assert rows["b"]["status"] == "missing_prediction" and rows["b"]["dsc"] == 0.0
    assert rows["d"]["status"] == "missing_gt" and "dsc" not in rows["d"]
    assert rows["e"]["case_type"] == "both_empty" and rows["e"]["dsc"] == 1.0
    s = rep.summary
    assert s["missing"] == {"prediction": ["b"], "ground_truth": ["d"], "missing_prediction_scored_as": "empty"}
    assert s["metrics"]["dsc"]["n"] == 4
    assert s["metrics"]["dsc"]["mean"] == pytest.approx((264 / 288 + 0 + 1 + 1) / 4)
    assert s["case_types"] == {"both_empty": 1, "both_nonempty": 2, "pred_empty": 1}
    # files
    with open(rep.files["per_case"]) as f:
        table = list(csv.DictReader(f))
    assert [r["case_id"] for r in table] == ["a", "b", "c", "d", "e"]
    summary = json.loads(rep.files["summary"].read_text())
    assert summary["conventions"]["empty_policy"]["dsc"]["both_empty"] == 1.0
    assert summary["conventions"]["nsd_units"] == "px"
    assert (tmp_path / "report" / "run.json").exists()
    # same seed -> same summary; skip mode leaves b unscored but listed
    again = evaluate(pred, gt, nsd_units="px", nsd_tolerance=1.0, n_boot=200)
    assert again.summary["metrics"] == rep.summary["metrics"]
    skip = evaluate(pred, gt, nsd_units="px", missing_prediction="skip", n_boot=50)
    assert skip.summary["metrics"]["dsc"]["n"] == 3 and skip.summary["cases"]["missing_prediction"] == 1


def test_cli_writes_reports_and_rejects_mm_without_spacing(folders, tmp_path, capsys):
    pred, gt = folders
    out = tmp_path / "cli-report"
    rc = main(["evaluate", str(pred), str(gt), "-o", str(out), "--nsd-units", "px", "--n-boot", "100",
               "--both-empty", "nan"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "no prediction: b" in text and "no ground truth: d" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conventions"]["empty_policy"]["dsc"]["both_empty"].startswith("nan")
    assert summary["metrics"]["dsc"]["n_nan"] == 1  # case e (both empty) excluded under this policy
    rc = main(["evaluate", str(pred), str(gt), "-o", str(tmp_path / "r2")])
    assert rc == ConfigError.exit_code
    assert "--nsd-units px" in capsys.readouterr().err
    with pytest.raises(OutputError):
        evaluate(pred, gt, gt / "inside", nsd_units="px")
    with pytest.raises(OutputError):  # existing report without --overwrite
        evaluate(pred, gt, out, nsd_units="px")


def test_nifti_spacing_and_compat_mode(tmp_path):
    nib = pytest.importorskip("nibabel")
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir()
    gt.mkdir()
    aff = np.diag([3.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(box3d(2), aff), str(gt / "vol.nii.gz"))
    nib.save(nib.Nifti1Image(box3d(3), aff), str(pred / "vol.nii.gz"))
    voxel = {"nsd_mode": "surface", "hd95_mode": "monai"}  # boundary-voxel counts below
    mm = evaluate(pred, gt, nsd_tolerance=2.0, n_boot=10, **voxel).rows[0]
    px = evaluate(pred, gt, nsd_tolerance=2.0, nsd_units="px", n_boot=10, **voxel).rows[0]
    assert mm["nsd"] == pytest.approx(152 / 224) and px["nsd"] == pytest.approx(1.0)
    assert mm["spacing"] == "3x1x1" and mm["geometry"] == "same grid"
    # the default (DeepMind, area-weighted) convention counts the shared faces by area
    assert 152 / 224 < evaluate(pred, gt, nsd_tolerance=2.0, n_boot=10).rows[0]["nsd"] < 1.0
    # a 2-D slice stored as (H, W, 1) is scored in 2-D (its faces are not boundary)
    nib.save(nib.Nifti1Image(square()[..., None], np.eye(4)), str(gt / "slice.nii.gz"))
    nib.save(nib.Nifti1Image(square(1)[..., None], np.eye(4)), str(pred / "slice.nii.gz"))
    rows = {r["case_id"]: r for r in evaluate(pred, gt, nsd_tolerance=1.0, n_boot=10).rows}
    assert rows["slice"]["shape"] == "32x32" and rows["slice"]["nsd"] == 1.0
    compat = {r["case_id"]: r for r in evaluate(pred, gt, nsd_mode="medclip-samv2", n_boot=10).rows}
    assert compat["slice"]["nsd"] >= compat["slice"]["dsc"]


def test_png_multiclass_and_in_memory(tmp_path):
    from PIL import Image
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir()
    gt.mkdir()
    g = np.zeros((20, 20), np.uint8)
    g[0:4, 0:4] = 1
    g[10:16, 10:16] = 2
    p = g.copy()
    p[0:4, 2:4] = 0
    Image.fromarray(g).save(gt / "x.png")
    Image.fromarray(p).save(pred / "x.png")
    rep = evaluate(pred, gt, nsd_units="px", classes={"one": 1, "two": 2}, n_boot=10)
    row = rep.rows[0]
    assert row["dsc/one"] == pytest.approx(16 / 24) and row["dsc/two"] == 1.0
    assert rep.summary["macro"]["dsc"] == pytest.approx((16 / 24 + 1) / 2)
    # in-memory mapping with spacing
    mem = evaluate({"k": square(1)}, {"k": (square(), (1.0, 2.5))}, nsd_tolerance=2.5, n_boot=10)
    assert mem.rows[0]["nsd"] == 1.0 and mem.rows[0]["hd95"] == pytest.approx(2.5)
    bad = evaluate({"k": np.zeros((4, 4))}, {"k": np.zeros((5, 5))}, nsd_units="px", n_boot=10)
    assert bad.rows[0]["status"] == "failed" and "differs" in bad.rows[0]["reason"]
    assert math.isnan(bad.summary["metrics"]["dsc"]["mean"])


def test_case_ids_come_from_medkt_io(tmp_path):
    """Ids (pairing keys) are medkt.io.discover_cases' ids on both sides, whatever the file type;
    2-D images have no physical spacing and RGB masks are reduced to one channel."""
    from PIL import Image

    from medkt.io import discover_cases
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir()
    gt.mkdir()
    Image.fromarray(np.repeat(square(1)[..., None] * 255, 3, axis=2).astype(np.uint8)).save(pred / "k 1.png")
    Image.fromarray((square() * 255).astype(np.uint8)).save(gt / "k 1.png")
    Image.fromarray(square().astype(np.uint8)).save(pred / "k2.png")
    Image.fromarray(square().astype(np.uint8)).save(gt / "k2.tif")  # other type, same id
    np.save(gt / "k3.npy", square())  # NumPy masks (not read by medkt.io) are keyed by file name
    rep = evaluate(pred, gt, nsd_units="px", nsd_tolerance=1.0, n_boot=10)
    rows = {r["case_id"]: r for r in rep.rows}
    io_ids = {c.case_id for c in discover_cases(gt)}
    assert set(rows) == io_ids | {"k3"}
    k1 = next(i for i in io_ids if i.startswith("k") and i != "k2")
    assert rows[k1]["dsc"] == pytest.approx(264 / 288) and rows["k2"]["dsc"] == 1.0
    assert rows["k3"]["status"] == "missing_prediction"
    assert rows["k2"]["geometry"].startswith("not compared")
    assert rep.summary["reader"].startswith("medkt.io")
    with pytest.raises(ConfigError, match="no voxel spacing"):
        evaluate(pred, gt, n_boot=10)  # mm requested, PNG has none


def test_dead_fallback_reader_is_gone():
    import medkt.metrics.evaluate as ev
    assert not hasattr(ev, "_read_fallback") and not hasattr(ev, "_io_layer") and not hasattr(ev, "_case_id")
