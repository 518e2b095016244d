"""End-to-end: `medkt segment` on DICOM (pydicom CT_small), NIfTI (nibabel anatomical.nii) and a
folder of 2-D images with tiny models; in-memory API; `medkt.segment` is the function; diagnostics."""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from medkt.cli.main import main

TINY = ["--config", "tiny"]


@pytest.fixture(scope="module")
def segmenter():
    from medkt.segmentation.pipeline import Segmenter, load_segment_config
    return Segmenter(load_segment_config("tiny"))


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory):
    from pydicom.data import get_testdata_file
    src = get_testdata_file("CT_small.dcm", download=False)
    d = tmp_path_factory.mktemp("dicom") / "ct"
    d.mkdir()
    shutil.copy(src, d / "CT_small.dcm")
    return d


@pytest.fixture(scope="module")
def nifti_file(tmp_path_factory):
    from nibabel.testing import data_path
    d = tmp_path_factory.mktemp("nifti")
    shutil.copy(Path(data_path) / "anatomical.nii", d / "anatomical.nii")
    return d / "anatomical.nii"


@pytest.fixture(scope="module")
def png_dir(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp("png")
    img, gt = root / "images", root / "masks"
    img.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (48, 80), "b": (64, 64)}.items():
        a = (rng.random((h, w)) * 60).astype(np.uint8)
        a[10:30, 20:40] = 220
        Image.fromarray(a).save(img / f"{name}.png")
        m = np.zeros((h, w), np.uint8)
        m[10:30, 20:40] = 255
        Image.fromarray(m).save(gt / f"{name}.png")
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(img / "c.png")
    return img, gt


def _rows(out: Path) -> list[dict]:
    with open(out / "cases.csv") as f:
        return list(csv.DictReader(f))


def test_cli_dicom_ct_small(dicom_dir, tmp_path):
    import nibabel as nib

    from medkt import io as mio
    out = tmp_path / "out"
    rc = main(["segment", str(dicom_dir), "-o", str(out), "--prompt", "a lung nodule", "--mask-format", "nifti",
               "--window", "lung", *TINY])
    assert rc == 0
    (case,) = mio.discover_cases(dicom_dir)
    vol = mio.read_case(case)
    mask = nib.load(out / case.case_id / "mask.nii.gz")
    assert mask.shape == vol.spatial_shape
    np.testing.assert_allclose(mask.affine, vol.affine, atol=1e-4)
    sal = nib.load(out / case.case_id / "saliency.nii.gz")
    assert sal.shape == vol.spatial_shape and sal.get_fdata().max() <= 1.0
    assert (out / case.case_id / "overlay.png").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["window"] == "lung" and run["prompt"] == "a lung nodule"
    stages = {"read_s", "prepare_s", "m2ib_s", "postprocess_s", "sam_encode_s", "sam_decode_s", "write_s"}
    assert stages <= set(run["timings"])
    import resource
    now_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    assert 100 < run["resources"]["peak_rss_mib"] <= now_mib + 0.1  # torch alone is > 100 MiB
    assert 0 < run["resources"]["cpu_s"]
    row = _rows(out)[0]
    assert row["status"] == "ok" and stages <= set(row) and all(float(row[s]) >= 0 for s in stages)
    assert stages <= set(run["cases"][0])


def test_cli_dicom_seg_output(dicom_dir, tmp_path):
    pytest.importorskip("highdicom")
    import pydicom
    out = tmp_path / "seg"
    assert main(["segment", str(dicom_dir), "-o", str(out), "--prompt", "a lung nodule",
                 "--set", "prompts.empty=full_image", *TINY]) == 0
    (seg_file,) = list(out.glob("*/mask.seg.dcm"))
    ds = pydicom.dcmread(seg_file)
    src = pydicom.dcmread(next(dicom_dir.iterdir()))
    assert ds.Modality == "SEG" and (ds.Rows, ds.Columns) == (src.Rows, src.Columns)
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID


def test_cli_nifti_volume_geometry(nifti_file, tmp_path):
    import nibabel as nib
    out = tmp_path / "out"
    assert main(["segment", str(nifti_file), "-o", str(out), "--prompt", "a brain", "--modality", "mr",
                 *TINY]) == 0
    src = nib.load(nifti_file)
    (mask_file,) = list(out.glob("*/mask.nii.gz"))
    mask = nib.load(mask_file)
    assert mask.shape == src.shape
    np.testing.assert_allclose(mask.affine, src.affine, atol=1e-5)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    row = _rows(out)[0]
    assert int(row["slices"]) == src.shape[2]  # axial slices of this RAS-ish volume
    # --resume finishes nothing new and keeps the table complete
    assert main(["segment", str(nifti_file), "-o", str(out), "--prompt", "a brain", "--resume", *TINY]) == 0
    assert "resumed" in _rows(out)[0]["reason"]


def test_cli_png_folder_with_gt_and_diagnostics(png_dir, tmp_path):
    from PIL import Image
    img, gt = png_dir
    out = tmp_path / "out"
    assert main(["segment", str(img), "-o", str(out), "--prompt", "a bright square", "--gt", str(gt),
                 "--diagnostics", *TINY]) == 0
    rows = {r["case_id"]: r for r in _rows(out)}
    assert set(rows) == {"a", "b", "c"}
    assert rows["c"]["gt"] == "missing" and rows["c"]["status"] == "ok"  # no mask for c.png: noted
    for cid in ("a", "b"):
        m = np.asarray(Image.open(out / cid / "mask.png"))
        assert m.shape == np.asarray(Image.open(img / f"{cid}.png")).shape[:2]
        assert rows[cid]["status"] == "ok" and 0.0 <= float(rows[cid]["dsc"]) <= 1.0
        assert float(rows[cid]["sens_neutral_pearson"]) <= 1.0 + 1e-9
        assert np.load(out / cid / "saliency.npy").shape == m.shape
    assert (out / "summary.json").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["sensitivity"]["a"][0]["neutral_prompt"] == "a medical image"


def test_cli_dry_run_and_errors(png_dir, tmp_path, capsys):
    img, _ = png_dir
    assert main(["segment", str(img), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 case(s) would be processed" in out and "a\timage2d" in out
    assert main(["segment", str(img), "-o", str(tmp_path / "x"), *TINY]) == 2  # no prompt
    assert "prompt" in capsys.readouterr().err
    assert main(["segment", str(img), "-o", str(img / "inside"), "--prompt", "x", *TINY]) == 2
    assert "inside" in capsys.readouterr().err
    assert main(["segment", str(img), "-o", str(tmp_path / "y"), "--prompt", "x", "--set", "m2ib.betta=1",
                 *TINY]) == 2
    assert "beta" in capsys.readouterr().err  # did-you-mean


def test_api_in_memory_arrays_and_nifti(segmenter):
    import nibabel as nib

    import medkt
    rng = np.random.default_rng(1)
    img2d = rng.random((50, 70)).astype(np.float32)
    res = medkt.segment(img2d, prompt="a lung", config="tiny", segmenter=segmenter,
                        overrides=["m2ib.text_map=true"])
    assert res.mask.shape == (50, 70) and res.saliency.shape == (50, 70)
    tm = res.cases[0].slices[0]["text_map"]  # optional text-side map, per token
    assert tm["tokens"] == ["a", "lung"] and len(tm["scores"]) == 2
    assert res.saliency.dtype == np.float32 and 0 <= res.saliency.min() and res.saliency.max() <= 1
    vol = rng.random((20, 24, 5)).astype(np.float32)
    nii = nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.5, 1.0]))
    res2 = medkt.segment([nii, vol], prompt="a lesion", config="tiny", segmenter=segmenter)
    assert len(res2) == 2 and res2[0].mask.shape == vol.shape and res2[1].mask.shape == vol.shape
    np.testing.assert_allclose(res2[0].to_nifti().affine, nii.affine)
    assert len(res2[0].slices) == 5 and res2.table[0]["status"] == "ok"


def test_api_modes_and_empty_policies(segmenter):
    """Every prompt mode and empty policy runs through the whole pipeline."""
    from medkt.segmentation import segment
    img = np.random.default_rng(3).random((40, 60)).astype(np.float32)
    for policy in ("skip", "empty", "full_image"):  # a threshold above 1 empties the coarse mask
        r = segment(img, prompt="x", config="tiny", segmenter=segmenter,
                    overrides=[f"prompts.empty={policy}", "postprocess.mode=threshold",
                               "postprocess.threshold=1.5"])
        assert r.mask.shape == (40, 60)
        assert r.cases[0].slices[0]["status"] == policy
        if policy != "full_image":
            assert not r.mask.any()
    rng = np.random.default_rng(2)
    img = rng.random((40, 60)).astype(np.float32)
    for mode in ("box", "boxes", "points", "box+points"):
        r = segment(img, prompt="x", config="tiny", segmenter=segmenter,
                    overrides=[f"prompts.mode={mode}", "postprocess.mode=otsu", "sam.multimask=true"])
        assert r.mask.shape == (40, 60) and r.cases[0].slices[0]["prompts"] >= 1


def test_medkt_segment_is_the_function_and_segmentation_the_package():
    import types

    import medkt
    import medkt.segmentation
    from medkt.segmentation.api import segment as api_segment
    assert medkt.segment is api_segment and medkt.segmentation.segment is api_segment
    assert isinstance(medkt.segmentation, types.ModuleType) and not callable(medkt.segmentation)
    assert "Segmenter" in dir(medkt.segmentation) and "segment" in medkt.__all__


def test_compare_maps_and_prompt_sensitivity(segmenter):
    from medkt.segmentation.diagnostics import compare_maps, prompt_sensitivity, random_prompt
    a = np.random.default_rng(0).random((10, 12))
    same = compare_maps(a, a)
    assert same["pearson"] == pytest.approx(1.0) and same["mad"] == 0.0 and same["top_iou"] == 1.0
    assert compare_maps(a, -a)["pearson"] == pytest.approx(-1.0)
    assert random_prompt(3) == random_prompt(3) != random_prompt(4)
    rows = prompt_sensitivity(segmenter.saliency, [a.astype(np.float32)], "a lung nodule", n_random=2)
    assert {"neutral_pearson", "random1_mad", "random2_top_iou"} <= set(rows[0])
