"""NSD / HD95 conventions: hand-computed values, and parity with the reference packages.

``nsd_mode="deepmind"`` / ``hd95_mode="deepmind"`` must equal DeepMind's ``surface_distance``
(``compute_surface_dice_at_tolerance``, ``compute_robust_hausdorff``) and ``hd95_mode="medpy"``
must equal ``medpy.metric.binary.hd95``, to 1e-6, on 2-D and anisotropic 3-D masks.  The packages
are test extras (``pip install -e .[test]``); the parity tests skip without them.

``surface-distance`` 0.1 (the only release on PyPI) uses ``np.Inf``, which NumPy 2 removed: it
fails on an empty mask.  The empty-mask parity test restores the alias for the package's sake only.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, gaussian_filter

from medkt.metrics import SegMetricConfig, compute_hd95, compute_nsd, segmentation_scores
from medkt.metrics.surface import hd_from_distances
from medkt.metrics.surfels import surfel_table

# surface-distance 0.1 imports scipy.ndimage.filters / .morphology, deprecated in SciPy 1.x
pytestmark = pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")

ANISO_3D = (0.8, 0.8, 3.0)
ANISO_2D = (0.8, 3.0)
TOL = 2.0


def pairs(rng, shape, n):
    """Smooth random masks and predictions that are near them (so NSD is neither 0 nor 1)."""
    out = []
    for i in range(n):
        g = gaussian_filter(rng.standard_normal(shape), 1.5) > 0.2
        if i % 3 == 0:
            p = gaussian_filter(rng.standard_normal(shape), 1.5) > 0.2  # unrelated
        else:
            p = binary_dilation(g, iterations=i % 2 + 1) ^ (rng.random(shape) > 0.95)
        if g.any() and p.any():
            out.append((p, g))
    return out


CASES = [(ANISO_2D, (40, 36)), (ANISO_3D, (24, 22, 10)), ((1.0, 1.0, 1.0), (14, 14, 14))]


# ----------------------------------------------------------------------------- by hand
def test_surface_element_sizes_by_hand():
    # One voxel: its surface is the octahedron through the face centres of the voxel, semi-axes
    # (a, b, c) = spacing / 2: area 4 * sqrt(a²b² + b²c² + a²c²) (8 triangles).
    s = np.array(ANISO_3D)
    a, b, c = s / 2
    table = surfel_table(tuple(s))
    assert table[1] * 8 == pytest.approx(4 * math.sqrt(a * a * b * b + b * b * c * c + a * a * c * c))
    # a configuration and its complement share one surface; empty and full cells have none
    assert all(table[k] == pytest.approx(table[255 - k]) for k in range(256))
    assert table[0] == table[255] == 0.0
    # 2-D: one pixel is a diamond through the edge midpoints; an edge cell is one pixel side
    t2 = surfel_table(ANISO_2D)
    assert 4 * t2[1] == pytest.approx(2 * math.hypot(*ANISO_2D))
    assert t2[0b0011] == pytest.approx(ANISO_2D[1])  # corners (0,0),(0,1) set: contour along axis 1


def test_single_voxels_one_slice_apart_separate_the_conventions():
    # G and P single voxels one 3 mm slice apart.  Boundary voxels: 3 mm > 2 mm -> NSD 0.
    # Surface elements: 4 of each voxel's 8 lie on the shared face (distance 0) -> NSD 0.5.
    g = np.zeros((5, 5, 5), bool)
    g[2, 2, 2] = True
    p = np.roll(g, 1, axis=2)
    assert compute_nsd(p, g, TOL, ANISO_3D, mode="surface") == 0.0
    assert compute_nsd(p, g, TOL, ANISO_3D, mode="deepmind") == pytest.approx(0.5)
    for mode in ("deepmind", "monai", "medpy"):
        assert compute_hd95(p, g, ANISO_3D, mode=mode) == pytest.approx(3.0)


def test_monai_and_medpy_hd95_by_hand():
    # pred boundary all on gt (20 zeros); gt boundary: 19 zeros and one voxel 10 mm away.
    d_pg, d_gp = np.zeros(20), np.r_[np.zeros(19), 10.0]
    # MONAI: max of directed P95; P95 of d_gp interpolates at rank 0.95 * 19 = 18.05 -> 0.5
    assert hd_from_distances(d_pg, d_gp, 95, mode="monai") == pytest.approx(0.5)
    # medpy: P95 of the 40 pooled distances, rank 37.05 among 39 zeros -> 0
    assert hd_from_distances(d_pg, d_gp, 95, mode="medpy") == 0.0


def test_modes_are_checked_and_declared():
    with pytest.raises(Exception, match="deepmind"):
        compute_nsd(np.ones((3, 3)), np.ones((3, 3)), 1.0, mode="area")
    with pytest.raises(Exception, match="medpy"):
        compute_hd95(np.ones((3, 3)), np.ones((3, 3)), mode="scipy")
    d = SegMetricConfig().describe()
    assert d["nsd_mode"] == "deepmind" and d["hd95_mode"] == "deepmind"
    # backward compatible constructor: the old positional/keyword fields still work
    old = SegMetricConfig(2.0, "px", "surface", "monai")
    assert (old.nsd_mode, old.empty_policy, old.hd95_mode) == ("surface", "monai", "deepmind")


def test_medclip_mode_is_in_pixels_whatever_the_units():
    # the "medclip-samv2 means px" rule lives once, in SegMetricConfig
    assert SegMetricConfig(nsd_mode="medclip-samv2", nsd_units="mm").distance_units == "px"
    g = np.zeros((20, 20), bool)
    g[5:12, 5:12] = True
    r = segmentation_scores(np.roll(g, 1, 0), g, nsd_mode="medclip-samv2")  # no spacing needed
    assert r["nsd"] >= r["dsc"]


# ----------------------------------------------------------------------------- DeepMind parity
@pytest.mark.parametrize("spacing,shape", CASES)
def test_parity_with_deepmind_surface_distance(spacing, shape):
    sd = pytest.importorskip("surface_distance")
    rng = np.random.default_rng(7)
    worst_nsd = worst_hd = 0.0
    for p, g in pairs(rng, shape, 9):
        ref = sd.compute_surface_distances(g, p, spacing)
        row = segmentation_scores(p, g, spacing=spacing, nsd_tolerance=TOL)  # defaults: deepmind
        for tol in (0.5, TOL, 3.0):
            worst_nsd = max(worst_nsd, abs(compute_nsd(p, g, tol, spacing, mode="deepmind")
                                           - sd.compute_surface_dice_at_tolerance(ref, tol)))
        for q in (50, 95, 100):
            worst_hd = max(worst_hd, abs(compute_hd95(p, g, spacing, percentile=q, mode="deepmind")
                                         - sd.compute_robust_hausdorff(ref, q)))
        assert row["nsd"] == pytest.approx(sd.compute_surface_dice_at_tolerance(ref, TOL), abs=1e-6)
        assert row["hd95"] == pytest.approx(sd.compute_robust_hausdorff(ref, 95), abs=1e-6)
    assert worst_nsd < 1e-6 and worst_hd < 1e-6, (worst_nsd, worst_hd)


@pytest.fixture
def numpy2_inf_alias(monkeypatch):
    """surface-distance 0.1 calls np.Inf (removed in NumPy 2) on empty masks: alias it for the test."""
    if not hasattr(np, "Inf"):
        monkeypatch.setattr(np, "Inf", np.inf, raising=False)


def test_parity_with_deepmind_on_empty_masks(numpy2_inf_alias):
    sd = pytest.importorskip("surface_distance")
    g = np.zeros((12, 12, 6), bool)
    g[3:8, 4:9, 2:4] = True
    empty = np.zeros_like(g)
    for p, gt in ((g, empty), (empty, g), (empty, empty)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package divides 0 by 0 when both are empty
            ref = sd.compute_surface_distances(gt, p, ANISO_3D)
            ref_nsd = sd.compute_surface_dice_at_tolerance(ref, TOL)
            ref_hd = sd.compute_robust_hausdorff(ref, 95)
        ours = compute_nsd(p, gt, TOL, ANISO_3D, mode="deepmind")
        assert (math.isnan(ours) and math.isnan(ref_nsd)) or ours == ref_nsd
        # raw HD95 is nan where the package says inf; segmentation_scores applies the empty policy
        assert math.isinf(ref_hd) and math.isnan(compute_hd95(p, gt, ANISO_3D, mode="deepmind"))


# ----------------------------------------------------------------------------- medpy parity
@pytest.mark.parametrize("spacing,shape", CASES)
def test_parity_with_medpy_hd95(spacing, shape):
    binary = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(8)
    worst = 0.0
    for p, g in pairs(rng, shape, 9):
        ref = binary.hd95(p, g, voxelspacing=spacing)
        worst = max(worst, abs(compute_hd95(p, g, spacing, mode="medpy") - ref))
        row = segmentation_scores(p, g, spacing=spacing, hd95_mode="medpy", metrics=["hd95"])
        assert row["hd95"] == pytest.approx(ref, abs=1e-6)
    assert worst < 1e-6, worst
    g = np.zeros((8, 8), bool)
    g[2:5, 2:5] = True
    with pytest.raises(RuntimeError):  # medpy refuses empty masks; medkt: raw nan, then the policy
        binary.hd95(np.zeros_like(g), g)
    assert math.isnan(compute_hd95(np.zeros_like(g), g, mode="medpy"))


# ----------------------------------------------------------------------------- CLI
def test_cli_modes_are_recorded_in_the_report(tmp_path):
    from medkt.cli.main import main
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir()
    gt.mkdir()
    rng = np.random.default_rng(9)
    (p, g), = pairs(rng, (30, 30), 2)[:1]
    np.save(pred / "c.npy", p)
    np.save(gt / "c.npy", g)
    out = tmp_path / "rep"
    assert main(["evaluate", str(pred), str(gt), "-o", str(out), "--nsd-units", "px", "--n-boot", "10",
                 "--nsd-mode", "surface", "--hd95-mode", "medpy"]) == 0
    conv = json.loads((out / "summary.json").read_text())["conventions"]
    assert (conv["nsd_mode"], conv["hd95_mode"]) == ("surface", "medpy")
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["nsd_mode"] == "surface" and run["config"]["hd95_mode"] == "medpy"
    out2 = tmp_path / "rep2"
    assert main(["evaluate", str(pred), str(gt), "-o", str(out2), "--nsd-units", "px", "--n-boot", "10"]) == 0
    conv2 = json.loads((out2 / "summary.json").read_text())["conventions"]
    assert (conv2["nsd_mode"], conv2["hd95_mode"]) == ("deepmind", "deepmind")
    per_case = (out / "per_case.csv").read_text(), (out2 / "per_case.csv").read_text()
    assert per_case[0] != per_case[1]  # the conventions change the numbers on this case
