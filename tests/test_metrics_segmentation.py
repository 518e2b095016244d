"""Hand-computed segmentation scores: shifted squares, anisotropic 3-D, empty cases, multi-class."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medkt.errors import ConfigError, InputError, UnknownNameError
from medkt.metrics import SegMetricConfig, resolve_empty_policy, segmentation_scores


VOXEL = {"nsd_mode": "surface", "hd95_mode": "monai"}  # boundary-voxel conventions (hand counts below)


def square(shift: int = 0, shape=(32, 32)) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[10:22, 10 + shift:22 + shift] = 1
    return m


# ----------------------------------------------------------------------------- shifted squares
def test_shifted_square_by_hand():
    # 12x12 squares, one shifted 1 px: |G| = |P| = 144, |G∩P| = 132, |G∪P| = 156.
    # Boundaries (44 px each): 22 boundary pixels at distance 0, 22 at distance 1 each way.
    g, p = square(), square(1)
    r = segmentation_scores(p, g, nsd_units="px", nsd_tolerance=1.0, **VOXEL)
    assert r["dsc"] == pytest.approx(264 / 288, abs=1e-12)
    assert r["iou"] == pytest.approx(132 / 156, abs=1e-12)
    assert r["nsd"] == pytest.approx(1.0, abs=1e-12)
    assert r["hd95"] == pytest.approx(1.0, abs=1e-12)
    assert r["case_type"] == "both_nonempty"
    assert (r["gt_voxels"], r["pred_voxels"]) == (144, 144)
    half = segmentation_scores(p, g, nsd_units="px", nsd_tolerance=0.5, **VOXEL)
    assert half["nsd"] == pytest.approx(44 / 88, abs=1e-12)


def test_shifted_square_spacing_scales_distances():
    g, p = square(), square(1)  # shift along axis 1
    # 2.5 mm per column: the 1-px offsets become 2.5 mm.  Within 2 mm per direction: the 22
    # coinciding pixels, plus 4 side pixels 1 or 2 rows (1 mm per row) from the other mask's
    # top/bottom edge; the other 18 are 2.5 mm away.
    r = segmentation_scores(p, g, spacing=(1.0, 2.5), nsd_tolerance=2.0, **VOXEL)
    assert r["nsd"] == pytest.approx(52 / 88, abs=1e-12)
    assert r["hd95"] == pytest.approx(2.5, abs=1e-6)
    for modes in (VOXEL, {}):  # {} = the defaults (deepmind)
        assert segmentation_scores(p, g, spacing=(1.0, 2.5), nsd_tolerance=2.5, **modes)["nsd"] == pytest.approx(1.0)
        # spacing along the other axis does not matter for this shift
        assert segmentation_scores(p, g, spacing=(7.0, 1.0), nsd_tolerance=1.0, **modes)["nsd"] == pytest.approx(1.0)


def test_identical_masks_score_perfectly_and_torch_input_works():
    g = torch.from_numpy(square())
    r = segmentation_scores(g, g.clone(), spacing=(1, 1))
    assert (r["dsc"], r["iou"], r["nsd"], r["hd95"]) == (1.0, 1.0, 1.0, 0.0)


# ----------------------------------------------------------------------------- anisotropic 3-D
def box3d(z0: int) -> np.ndarray:
    m = np.zeros((10, 10, 10), dtype=bool)
    m[z0:z0 + 4, 2:8, 2:8] = True
    return m


def test_anisotropic_3d_nsd_mm_differs_from_px():
    # 4x6x6 boxes shifted one slice along axis 0, spacing (3, 1, 1) mm.  Each boundary has
    # 112 voxels; per direction 76 lie within 2 mm (0, 1 or 2 mm) and 36 are 3 mm away
    # (one whole face), while in pixels every distance is <= 1.
    g, p = box3d(2), box3d(3)
    mm = segmentation_scores(p, g, spacing=(3.0, 1.0, 1.0), nsd_tolerance=2.0, nsd_units="mm", **VOXEL)
    px = segmentation_scores(p, g, spacing=(3.0, 1.0, 1.0), nsd_tolerance=2.0, nsd_units="px", **VOXEL)
    assert mm["nsd"] == pytest.approx(152 / 224, abs=1e-12)
    assert px["nsd"] == pytest.approx(1.0, abs=1e-12)
    assert mm["hd95"] == pytest.approx(3.0, abs=1e-6)
    assert px["hd95"] == pytest.approx(1.0, abs=1e-6)
    for r in (mm, px):  # overlap metrics do not depend on spacing
        assert r["dsc"] == pytest.approx(216 / 288)
        assert r["iou"] == pytest.approx(108 / 180)


def test_mm_without_spacing_is_a_clear_error():
    with pytest.raises(InputError, match="nsd_units='px'"):
        segmentation_scores(square(1), square(), nsd_units="mm")
    with pytest.raises(InputError, match="entries"):
        segmentation_scores(square(1), square(), spacing=(1.0, 1.0, 1.0))


# ----------------------------------------------------------------------------- empty masks
EMPTY = np.zeros((32, 32), dtype=np.uint8)


@pytest.mark.parametrize("pred,gt,case,expected", [
    (EMPTY, EMPTY, "both_empty", {"dsc": 1.0, "iou": 1.0, "nsd": 1.0, "hd95": 0.0}),
    (square(), EMPTY, "gt_empty", {"dsc": 0.0, "iou": 0.0, "nsd": 0.0, "hd95": math.nan}),
    (EMPTY, square(), "pred_empty", {"dsc": 0.0, "iou": 0.0, "nsd": 0.0, "hd95": math.nan}),
    (square(5), square(), "both_nonempty", None),
])
@pytest.mark.parametrize("mode,hd95_mode", [("deepmind", "deepmind"), ("surface", "monai"),
                                            ("surface", "medpy"), ("medclip-samv2", "deepmind")])
def test_every_empty_combination_default_policy(pred, gt, case, expected, mode, hd95_mode):
    r = segmentation_scores(pred, gt, spacing=(1.0, 1.0), nsd_mode=mode, hd95_mode=hd95_mode)
    assert r["case_type"] == case
    if expected is None:
        assert all(math.isfinite(r[m]) for m in ("dsc", "iou", "nsd", "hd95"))
        return
    for m, v in expected.items():
        assert (math.isnan(r[m]) and math.isnan(v)) or r[m] == v, (m, r[m], v)


def test_monai_preset_and_overrides():
    r = segmentation_scores(EMPTY, EMPTY, nsd_units="px", empty_policy="monai")
    assert all(math.isnan(r[m]) for m in ("dsc", "iou", "nsd", "hd95"))
    r = segmentation_scores(square(), EMPTY, nsd_units="px", empty_policy="monai")
    assert math.isnan(r["dsc"]) and math.isnan(r["nsd"])
    r = segmentation_scores(EMPTY, square(), nsd_units="px", empty_policy="monai")
    assert r["dsc"] == 0.0
    pol = {"both_empty": "nan", "hd95": {"gt_empty": 100.0}}
    r = segmentation_scores(EMPTY, EMPTY, nsd_units="px", empty_policy=pol)
    assert math.isnan(r["dsc"]) and r["hd95"] == 0.0
    assert segmentation_scores(square(), EMPTY, nsd_units="px", empty_policy=pol)["hd95"] == 100.0
    table = resolve_empty_policy("default")
    assert table["dsc"] == {"both_empty": 1.0, "gt_empty": 0.0, "pred_empty": 0.0}
    with pytest.raises(UnknownNameError):
        resolve_empty_policy("strict")
    with pytest.raises(UnknownNameError):
        resolve_empty_policy({"bothempty": 1})
    with pytest.raises(ConfigError):
        resolve_empty_policy({"both_empty": "one"})


def test_policy_is_stated_in_describe():
    d = SegMetricConfig(nsd_units="px").describe()
    assert d["empty_policy"]["dsc"]["both_empty"] == 1.0
    assert "nan" in d["empty_policy"]["hd95"]["gt_empty"]
    assert d["nsd_units"] == "px" and d["binarisation"] == "foreground = value > 0.0"
    assert SegMetricConfig(nsd_mode="medclip-samv2").describe()["nsd_units"] == "px"
    # the default conventions are DeepMind's (challenges, MedSAM), and every report names them
    assert (d["nsd_mode"], d["hd95_mode"]) == ("deepmind", "deepmind")
    assert "surface-distance" in d["nsd_convention"] and "compute_robust_hausdorff" in d["hd95_convention"]
    d = SegMetricConfig(nsd_mode="surface", hd95_mode="medpy").describe()
    assert "MONAI" in d["nsd_convention"] and "medpy" in d["hd95_convention"]


# ----------------------------------------------------------------------------- binarisation
def test_binarisation_threshold():
    g = square() * 255
    p = square(1).astype(float) * 0.4  # probability map
    assert segmentation_scores(p, g, nsd_units="px")["dsc"] == pytest.approx(264 / 288)
    # thresholding at 0.5 empties the prediction; at 200 (MedCLIP-SAMv2) a 0/1 GT reads as empty
    assert segmentation_scores(p, g, nsd_units="px", threshold=0.5)["case_type"] == "pred_empty"
    assert segmentation_scores(square(1), square(), nsd_units="px", threshold=200)["case_type"] == "both_empty"


# ----------------------------------------------------------------------------- multi-class
def test_multiclass_by_hand():
    g = np.zeros((10, 10), dtype=np.int16)
    p = np.zeros_like(g)
    g[0:4, 0:4] = 1
    p[0:4, 0:2] = 1           # class 1: |G| 16, |P| 8, overlap 8
    g[6:10, 6:10] = 2
    p[6:10, 6:10] = 2         # class 2: perfect
    cls = {"liver": 1, "spleen": 2, "tumour": 3}  # class 3 absent from both
    r = segmentation_scores(p, g, nsd_units="px", classes=cls)
    assert r["dsc/liver"] == pytest.approx(16 / 24)
    assert r["iou/liver"] == pytest.approx(0.5)
    assert r["dsc/spleen"] == 1.0 and r["nsd/spleen"] == 1.0
    assert r["case_type/tumour"] == "both_empty" and r["dsc/tumour"] == 1.0
    assert r["dsc"] == pytest.approx((16 / 24 + 1 + 1) / 3)
    r = segmentation_scores(p, g, nsd_units="px", classes=[1, 2, 3], empty_policy="monai")
    assert math.isnan(r["dsc/3"])
    assert r["dsc"] == pytest.approx((16 / 24 + 1) / 2)


def test_shape_and_config_errors():
    with pytest.raises(InputError, match="differs"):
        segmentation_scores(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="2-D"):
        segmentation_scores(np.zeros((4,)), np.zeros((4,)))
    with pytest.raises(UnknownNameError):
        SegMetricConfig(nsd_mode="slab")
    with pytest.raises(UnknownNameError, match="medpy"):
        SegMetricConfig(hd95_mode="scipy")
    with pytest.raises(UnknownNameError):
        SegMetricConfig(metrics=["dice"])
    with pytest.raises(ConfigError):
        SegMetricConfig(classes={"a": "x"})
