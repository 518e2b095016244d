"""medkt.monai (issue 17.1): a MONAI Compose of medkt's dictionary transforms gives medkt.segment's masks.

Tiny random models (config ``tiny``): the maps mean nothing, but both paths must agree exactly.
The NIfTI case (nibabel's ``anatomical.nii``, stored LAS) goes through ``Orientationd("RAS")``, so
the Compose works on a flipped grid; medkt.segment's mask, reoriented the same way, must match
it voxel for voxel, with the same affine.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PROMPT = "a bright square"


@pytest.fixture(scope="module")
def segmenter():
    from medkt.segmentation.pipeline import Segmenter, load_segment_config
    return Segmenter(load_segment_config("tiny"))


@pytest.fixture(scope="module")
def nifti_file(tmp_path_factory):
    from nibabel.testing import data_path
    d = tmp_path_factory.mktemp("nifti")
    shutil.copy(Path(data_path) / "anatomical.nii", d / "anatomical.nii")
    return d / "anatomical.nii"


@pytest.fixture(scope="module")
def png_files(tmp_path_factory):
    from PIL import Image
    d = tmp_path_factory.mktemp("png")
    rng = np.random.default_rng(3)
    a = (rng.random((40, 56)) * 60).astype(np.uint8)
    a[8:24, 20:40] = 230
    Image.fromarray(a).save(d / "grey.png")
    Image.fromarray((rng.random((36, 44, 3)) * 255).astype(np.uint8)).save(d / "rgb.png")
    return d / "grey.png", d / "rgb.png"


def _pipeline(segmenter, orient: bool):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd

    from medkt.io.monai_reader import MedktReader
    from medkt.monai import segment_transforms
    head = [LoadImaged("image", reader=MedktReader(), image_only=True), EnsureChannelFirstd("image")]
    if orient:
        head.append(Orientationd("image", axcodes="RAS", labels=None))
    return Compose(head + segment_transforms("tiny", prompt=PROMPT, segmenter=segmenter))


@pytest.mark.slow
def test_compose_equals_segment_nifti_after_orientation(segmenter, nifti_file):
    import nibabel as nib
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    import medkt
    assert nib.aff2axcodes(nib.load(nifti_file).affine) != ("R", "A", "S")  # Orientationd really flips
    ref = medkt.segment(str(nifti_file), prompt=PROMPT, config="tiny", segmenter=segmenter).cases[0]
    d = _pipeline(segmenter, orient=True)({"image": str(nifti_file)})
    reorient = Orientation(axcodes="RAS", labels=None)
    for key, arr in (("mask", ref.mask), ("coarse", ref.coarse), ("saliency", ref.saliency)):
        want = reorient(MetaTensor(torch.as_tensor(arr[None]), affine=torch.as_tensor(ref.volume.affine)))
        got = d[key]
        assert got.shape == want.shape, key
        np.testing.assert_allclose(np.asarray(got.affine), np.asarray(want.affine), atol=1e-6)
        if key == "saliency":
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
        else:
            assert np.array_equal(np.asarray(got), np.asarray(want)), key
    assert ref.mask.any() and int(d["mask"].sum()) == int(ref.mask.sum())
    assert d["image"].meta["medkt_intensity"]["method"] == "minmax"
    assert len(d["prompts"].prompts) == len(d["prompts"].indices) == ref.mask.shape[2]


def test_compose_equals_segment_2d_grey_and_rgb(segmenter, png_files):
    import medkt
    pipe = _pipeline(segmenter, orient=False)
    for path in png_files:
        ref = medkt.segment(str(path), prompt=PROMPT, config="tiny", segmenter=segmenter).cases[0]
        d = pipe({"image": str(path)})
        assert d["mask"].shape == (1, *ref.mask.shape)
        assert np.array_equal(np.asarray(d["mask"][0]), ref.mask), path.name
        np.testing.assert_allclose(np.asarray(d["saliency"][0]), ref.saliency, atol=1e-6)


@pytest.mark.parametrize("modality,window,values", [
    ("CT", "lung", np.linspace(-1400, 600, 60).reshape(3, 4, 5)),
    ("MR", None, np.concatenate([np.zeros(20), np.linspace(5, 900, 40)]).reshape(3, 4, 5)),
    ("US", None, np.linspace(3, 77, 60).reshape(3, 4, 5)),
    ("CT", "40,400", np.full((3, 4, 5), 7.0)),
])
def test_medkt_prepared_is_prepare_intensity_via_scale_intensity_range(modality, window, values):
    from monai.data import MetaTensor

    from medkt.io import prepare_intensity, volume_from_array
    from medkt.monai import MedktPrepared
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    want, params = prepare_intensity(volume_from_array(values, aff, modality=modality), window=window)
    x = MetaTensor(torch.as_tensor(values[None], dtype=torch.float64), affine=torch.as_tensor(aff))
    out = MedktPrepared("image", modality=modality, window=window)({"image": x})["image"]
    assert out.dtype == torch.float32 and np.array_equal(np.asarray(out[0]), want)
    assert out.meta["medkt_intensity"] == params
    np.testing.assert_allclose(np.asarray(out.affine), aff)


def test_stage_errors_are_typed():
    from monai.data import MetaTensor

    from medkt.errors import ConfigError, InputError
    from medkt.monai import CoarseMaskd, M2IBSaliencyd, MedktPrepared
    with pytest.raises(ConfigError, match="prompt"):
        M2IBSaliencyd("image", model="tiny-clip", prompt="  ")
    with pytest.raises(InputError, match="'saliency' is missing"):
        CoarseMaskd("saliency")({"image": MetaTensor(torch.zeros(1, 8, 8))})
    with pytest.raises(InputError, match="2 channels"):
        MedktPrepared("image")({"image": MetaTensor(torch.zeros(2, 4, 4, 4))})
    with pytest.raises(InputError, match="EnsureChannelFirstd"):
        MedktPrepared("image")({"image": MetaTensor(torch.zeros(4, 4, 4, 4, 1))})


def test_import_medkt_stays_light():
    """``import medkt``, ``medkt.monai`` and ``medkt.refinement`` load neither MONAI nor torch."""
    code = ("import sys, json, medkt, medkt.monai, medkt.refinement; "
            "print(json.dumps({m: m in sys.modules for m in ('monai', 'torch', 'medkt.monai.transforms')}))")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"monai": False, "torch": False,
                                                               "medkt.monai.transforms": False}
