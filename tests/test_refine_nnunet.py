"""`medkt refine --export-nnunet` (issue 17.4): nnU-Net v2's documented raw-dataset layout.

Checked against nnU-Net v2 ``documentation/dataset_format.md``: ``DatasetXXX_Name/`` holding
``dataset.json`` (``channel_names`` with string channel indices, ``labels`` with ``background: 0``
and consecutive integers, ``numTraining`` = number of training cases, ``file_ending``),
``imagesTr/{CASE}_{XXXX}{file_ending}`` (4-digit channel index, one file per channel) and
``labelsTr/{CASE}{file_ending}`` on the image grid.  When ``nnunetv2`` is installed its own
``verify_dataset_integrity`` must pass too (skipped otherwise: nnunetv2 is not a medkt dependency).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest


def _check_layout(ds: Path, cases: list[str], n_channels: int = 1) -> dict:
    """The documented format, checked by hand."""
    assert re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_\-]+", ds.name)
    meta = json.loads((ds / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        assert key in meta, key
    assert list(meta["channel_names"]) == [str(i) for i in range(len(meta["channel_names"]))]
    assert meta["labels"]["background"] == 0
    assert sorted(meta["labels"].values()) == list(range(len(meta["labels"])))
    assert meta["numTraining"] == len(cases)
    end = meta["file_ending"]
    channels = 1 if end == ".png" else len(meta["channel_names"])
    images = sorted(p.name for p in (ds / "imagesTr").iterdir())
    labels = sorted(p.name for p in (ds / "labelsTr").iterdir())
    assert images == sorted(f"{c}_{k:04d}{end}" for c in cases for k in range(channels))
    assert labels == sorted(f"{c}{end}" for c in cases)
    assert channels == n_channels or end == ".png"
    return meta


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        from PIL import Image
        return np.asarray(Image.open(path))
    import nibabel as nib
    return np.asarray(nib.load(path).dataobj)


NNUNET_CHECKED: list[Path] = []


def _nnunet_verify(ds: Path) -> None:
    """Queue ``ds`` for nnU-Net's own checker (test_nnunet_integrity_checker, run last)."""
    NNUNET_CHECKED.append(ds)


@pytest.fixture(scope="module")
def png_data(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp("nn2d")
    img, seg = root / "images", root / "seg"
    rng = np.random.default_rng(1)
    for i in range(3):
        (seg / f"p{i}").mkdir(parents=True)
        img.mkdir(exist_ok=True)
        Image.fromarray((rng.random((30, 40)) * 255).astype(np.uint8)).save(img / f"p{i}.png")
        m = np.zeros((30, 40), np.uint8)
        m[5:15, 10:20 + i] = 255
        Image.fromarray(m).save(seg / f"p{i}" / "mask.png")  # the `medkt segment` output layout
    return root


def test_export_2d_png_layout(png_data, tmp_path):
    from medkt.refinement import export_nnunet
    ds = tmp_path / "raw" / "Dataset501_Phantom"
    info = export_nnunet(png_data / "images", png_data / "seg", ds, label_name="mass")
    meta = _check_layout(ds, ["p0", "p1", "p2"])
    assert meta["file_ending"] == ".png" and meta["labels"] == {"background": 0, "mass": 1}
    assert info["numTraining"] == 3 and not info["failures"]
    for c in ("p0", "p1", "p2"):
        im, lab = _read(ds / "imagesTr" / f"{c}_0000.png"), _read(ds / "labelsTr" / f"{c}.png")
        assert im.shape == lab.shape == (30, 40) and set(np.unique(lab)) <= {0, 1}
        assert np.array_equal(im, _read(png_data / "images" / f"{c}.png"))  # pixels unchanged
    assert (ds / "run.json").is_file()
    _nnunet_verify(ds)


def test_export_3d_nifti_layout(tmp_path):
    import nibabel as nib

    from medkt.refinement import export_nnunet
    img, lab = tmp_path / "vols", tmp_path / "labels"
    img.mkdir()
    lab.mkdir()
    rng = np.random.default_rng(2)
    aff = np.array([[-0.7, 0, 0, 10], [0, 0.7, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    for c in ("v0", "v1"):
        vol = (rng.normal(0, 300, (20, 18, 6))).astype(np.int16)
        m = np.zeros(vol.shape, np.uint8)
        m[4:9, 5:10, 2:4] = 1
        h = nib.Nifti1Header()
        h["descrip"] = b""
        nib.save(nib.Nifti1Image(vol, aff), img / f"{c}.nii.gz")
        nib.save(nib.Nifti1Image(m, aff), lab / f"{c}.nii.gz")  # flat folder of masks named by case id
    ds = tmp_path / "Dataset502_Vol"
    export_nnunet(img, lab, ds)
    meta = _check_layout(ds, ["v0", "v1"])
    assert meta["file_ending"] == ".nii.gz" and meta["channel_names"] == {"0": "image"}
    for c in ("v0", "v1"):
        i, l_ = nib.load(ds / "imagesTr" / f"{c}_0000.nii.gz"), nib.load(ds / "labelsTr" / f"{c}.nii.gz")
        np.testing.assert_allclose(i.affine, aff, atol=1e-5)
        np.testing.assert_allclose(l_.affine, aff, atol=1e-5)
        assert i.shape == l_.shape == (20, 18, 6)
        assert np.array_equal(np.asarray(i.dataobj), np.asarray(nib.load(img / f"{c}.nii.gz").dataobj))
        assert set(np.unique(np.asarray(l_.dataobj))) == {0, 1}
    _nnunet_verify(ds)


def test_export_errors(png_data, tmp_path):
    from medkt.errors import ConfigError, OutputError
    from medkt.refinement import export_nnunet
    with pytest.raises(ConfigError, match="DatasetXXX_Name"):
        export_nnunet(png_data / "images", png_data / "seg", tmp_path / "my_dataset")
    ds = tmp_path / "Dataset503_X"
    export_nnunet(png_data / "images", png_data / "seg", ds)
    with pytest.raises(OutputError, match="already holds results"):
        export_nnunet(png_data / "images", png_data / "seg", ds)
    export_nnunet(png_data / "images", png_data / "seg", ds, overwrite=True)


def test_cli_export_only(png_data, tmp_path, capsys):
    from medkt.cli.main import main
    ds = tmp_path / "Dataset504_Cli"
    assert main(["refine", str(png_data / "images"), str(png_data / "seg"), "--export-nnunet", str(ds)]) == 0
    assert "exported 3 case(s)" in capsys.readouterr().out
    _check_layout(ds, ["p0", "p1", "p2"])


def test_nnunet_integrity_checker_accepts_the_exports():
    """nnU-Net v2's ``verify_dataset_integrity`` on the 2-D and 3-D exports above (when installed)."""
    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    assert len(NNUNET_CHECKED) == 2, "run the whole module"
    for ds in NNUNET_CHECKED:
        verify.verify_dataset_integrity(str(ds), num_processes=1)
