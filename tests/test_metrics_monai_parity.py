"""Parity with MONAI where both define the same thing (``nsd_mode="surface"``,
``hd95_mode="monai"``: MONAI's conventions); the empty policy is the only difference;
the MedCLIP-SAMv2 compatibility NSD equals a direct computation of the slab formula."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, gaussian_filter

from medkt.metrics import compute_slab_nsd, segmentation_scores

monai_metrics = pytest.importorskip("monai.metrics")

MONAI = {"nsd_mode": "surface", "hd95_mode": "monai"}  # medkt's names for MONAI's conventions


def blobs(rng, shape, n, level=0.2):
    """Random smooth boolean masks (non-empty at these sizes and levels)."""
    out = []
    for i in range(n):
        m = gaussian_filter(rng.standard_normal(shape), 1.5) > level
        out.append(m)
    return out


def onehot(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))


CASES = [((48, 40), (0.7, 1.3), 1.5), ((14, 18, 20), (3.0, 0.8, 0.8), 2.0)]


@pytest.mark.parametrize("shape,spacing,tol", CASES)
def test_parity_on_non_empty_masks(shape, spacing, tol):
    rng = np.random.default_rng(1)
    preds, gts = blobs(rng, shape, 8), blobs(rng, shape, 8)
    for p, g in zip(preds, gts):
        assert p.any() and g.any()
        r = segmentation_scores(p, g, spacing=spacing, nsd_tolerance=tol, **MONAI)
        P, G = onehot(p), onehot(g)
        dice = monai_metrics.DiceMetric(include_background=False)
        dice(P, G)
        iou = monai_metrics.MeanIoU(include_background=False)
        iou(P, G)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nsd = monai_metrics.compute_surface_dice(P, G, [tol], include_background=False, spacing=spacing)
            hd = monai_metrics.compute_hausdorff_distance(P, G, include_background=False, percentile=95,
                                                          spacing=spacing)
        assert r["dsc"] == pytest.approx(dice.get_buffer().item(), abs=1e-6)
        assert r["iou"] == pytest.approx(iou.get_buffer().item(), abs=1e-6)
        assert r["nsd"] == pytest.approx(nsd.item(), abs=1e-6)
        # MONAI keeps distances in float32 and uses torch.quantile: agree to float32 precision
        assert r["hd95"] == pytest.approx(hd.item(), rel=1e-5, abs=1e-5)


def test_multiclass_parity_per_class():
    rng = np.random.default_rng(2)
    shape = (40, 44)
    p = rng.integers(0, 4, size=shape)
    g = rng.integers(0, 4, size=shape)
    # smooth label maps so boundaries are meaningful
    p = np.argmax(np.stack([gaussian_filter((p == k).astype(float), 2) for k in range(4)]), 0)
    g = np.argmax(np.stack([gaussian_filter((g == k).astype(float), 2) for k in range(4)]), 0)
    r = segmentation_scores(p, g, spacing=(1.2, 0.9), classes=[1, 2, 3], nsd_tolerance=1.0, **MONAI)
    P = torch.nn.functional.one_hot(torch.from_numpy(p), 4).permute(2, 0, 1)[None].float()
    G = torch.nn.functional.one_hot(torch.from_numpy(g), 4).permute(2, 0, 1)[None].float()
    dice = monai_metrics.compute_dice(P, G, include_background=False)[0]
    nsd = monai_metrics.compute_surface_dice(P, G, [1.0] * 3, include_background=False, spacing=(1.2, 0.9))[0]
    for i, c in enumerate((1, 2, 3)):
        assert r[f"dsc/{c}"] == pytest.approx(dice[i].item(), abs=1e-6)
        assert r[f"nsd/{c}"] == pytest.approx(nsd[i].item(), abs=1e-6)


def test_difference_from_monai_is_exactly_the_empty_policy():
    """MONAI's defaults (DiceMetric/MeanIoU ignore_empty=True, compute_surface_dice) give nan
    where the ground truth is empty; medkt gives the declared policy values there and
    agrees with MONAI everywhere else."""
    rng = np.random.default_rng(3)
    shape = (32, 32)
    masks = blobs(rng, shape, 6)
    empty = np.zeros(shape, bool)
    pairs = [(p, g) for p in masks[:3] + [empty] for g in masks[3:] + [empty]]
    seen = set()
    for p, g in pairs:
        r = segmentation_scores(p, g, nsd_units="px", nsd_tolerance=1.0, **MONAI)
        seen.add(r["case_type"])
        P, G = onehot(p), onehot(g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dice = monai_metrics.DiceMetric(include_background=False)
            dice(P, G)
            iou = monai_metrics.MeanIoU(include_background=False)
            iou(P, G)
            nsd = monai_metrics.compute_surface_dice(P, G, [1.0], include_background=False)
        ours = {"dsc": r["dsc"], "iou": r["iou"], "nsd": r["nsd"]}
        theirs = {"dsc": dice.get_buffer().item(), "iou": iou.get_buffer().item(), "nsd": nsd.item()}
        policy = {"both_empty": 1.0, "gt_empty": 0.0, "pred_empty": 0.0}
        for m in ours:
            if math.isnan(theirs[m]):
                assert r["case_type"] in ("both_empty", "gt_empty")
                assert ours[m] == policy[r["case_type"]], (m, r["case_type"])
            else:
                assert ours[m] == pytest.approx(theirs[m], abs=1e-6), (m, r["case_type"])
        # with ignore_empty=False MONAI's Dice/IoU use the same convention as medkt's default
        dice_all = monai_metrics.DiceMetric(include_background=False, ignore_empty=False)
        dice_all(P, G)
        assert ours["dsc"] == pytest.approx(dice_all.get_buffer().item(), abs=1e-6)
    assert seen == {"both_nonempty", "both_empty", "gt_empty", "pred_empty"}


# ----------------------------------------------------------------------------- compat mode
def slab_formula_direct(p: np.ndarray, g: np.ndarray, r: float = 2.0) -> float:
    """(|G ∩ dilate(P)| + |P ∩ dilate(G)|) / (|G| + |P|) with a Euclidean disk of radius r."""
    k = int(np.floor(r))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    disk = (yy ** 2 + xx ** 2) <= r * r
    dp = binary_dilation(p, structure=disk)
    dg = binary_dilation(g, structure=disk)
    return (np.sum(g & dp) + np.sum(p & dg)) / (g.sum() + p.sum())


def test_compat_mode_equals_direct_slab_formula_and_is_at_least_dsc():
    rng = np.random.default_rng(4)
    preds, gts = blobs(rng, (64, 64), 20, 0.1), blobs(rng, (64, 64), 20, 0.1)
    for p, g in zip(preds, gts):
        r = segmentation_scores(p, g, nsd_mode="medclip-samv2")  # px, tolerance 2, spacing ignored
        assert r["nsd"] == pytest.approx(slab_formula_direct(p, g), abs=1e-12)
        assert compute_slab_nsd(p, g, 2.0) == r["nsd"]
        assert r["nsd"] >= r["dsc"] - 1e-12


def test_compat_mode_is_an_area_overlap_not_a_boundary_metric():
    # A 30x30 square shifted 3 px: boundaries are mostly > 2 px apart, areas mostly overlap.
    g = np.zeros((64, 64), bool)
    g[10:40, 10:40] = True
    p = np.roll(g, 3, axis=1)
    slab = segmentation_scores(p, g, nsd_mode="medclip-samv2")["nsd"]
    boundary = segmentation_scores(p, g, nsd_units="px", nsd_tolerance=2.0, **MONAI)["nsd"]
    area_weighted = segmentation_scores(p, g, nsd_units="px", nsd_tolerance=2.0)["nsd"]  # deepmind
    assert slab == pytest.approx(slab_formula_direct(p, g))
    assert slab > 0.95 and boundary < 0.6 and area_weighted < 0.6


@pytest.mark.parametrize("shape,spacing,tol", CASES)
def test_scipy_and_monai_surface_backends_agree(shape, spacing, tol):
    from medkt.metrics.surface import surface_distances
    rng = np.random.default_rng(5)
    for p, g in zip(blobs(rng, shape, 3), blobs(rng, shape, 3)):
        ours = surface_distances(p, g, spacing)
        theirs = surface_distances(p, g, spacing, backend="monai")
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            np.testing.assert_allclose(np.sort(a), np.sort(b), rtol=1e-6, atol=1e-6)
