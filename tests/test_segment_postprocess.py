"""Post-processing modes: kmeans, otsu, percentile, threshold, top-K ties, holes, min area, CRF."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from medkt.errors import OptionalDependencyError, UnknownNameError
from medkt.segmentation.postprocess import (BINARISERS, PostprocessConfig, components_by_size, keep_top_k,
                                       kmeans_1d, postprocess, remove_small)


def _two_blobs(h=80, w=120):
    m = np.full((h, w), 0.1, np.float32)
    m[10:30, 10:40] = 0.9  # 600 px
    m[50:60, 80:90] = 0.7  # 100 px
    return m


@pytest.mark.parametrize("mode", sorted(BINARISERS))
def test_every_mode_finds_the_bright_region(mode):
    cfg = PostprocessConfig(mode=mode, top_k=0, threshold=0.5, percentile=80)
    mask = postprocess(_two_blobs(), cfg)
    assert mask.dtype == bool and mask.shape == (80, 120)
    assert mask[10:30, 10:40].all()
    assert not mask[0:5, 50:70].any()


def test_modes_differ_where_they_should():
    m = _two_blobs()
    thr = postprocess(m, PostprocessConfig(mode="threshold", threshold=0.8, top_k=0))
    assert thr.sum() == 600  # only the 0.9 blob is above 0.8
    pct = postprocess(m, PostprocessConfig(mode="percentile", percentile=95, top_k=0))
    assert pct.sum() == 600  # top 5 % of 9600 px = 480 px → the 0.9 plateau (600 px)
    km = postprocess(m, PostprocessConfig(mode="kmeans", top_k=0))
    assert km.sum() == 700  # two clusters: {0.1} vs {0.7, 0.9}


def test_kmeans_matches_exhaustive_two_means():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.2, 0.05, 500), rng.normal(0.7, 0.1, 200)])
    thr = kmeans_1d(v)
    best = min(np.unique(v)[:-1], key=lambda t: ((v[v <= t] - v[v <= t].mean()) ** 2).sum()
               + ((v[v > t] - v[v > t].mean()) ** 2).sum())
    assert ((v > thr) == (v > best)).all()


def test_top_k_with_deterministic_ties():
    m = np.zeros((20, 20), bool)
    m[1:4, 1:4] = True     # 9 px, first in raster order
    m[10:13, 1:4] = True   # 9 px
    m[1:4, 10:13] = True   # 9 px (first pixel row 1 → before the row-10 blob)
    m[15:19, 15:19] = True  # 16 px
    one = keep_top_k(m, 1)
    assert one.sum() == 16
    two = keep_top_k(m, 2)
    assert two.sum() == 25 and two[1:4, 1:4].all() and not two[1:4, 10:13].any()
    assert keep_top_k(m, 2, ties="keep").sum() == 16 + 27  # MedCLIP-SAMv2: all tied sizes survive
    assert keep_top_k(m, 0).sum() == m.sum()
    from scipy import ndimage
    labels, n = ndimage.label(m, structure=np.ones((3, 3)))
    assert [a for _, a in components_by_size(labels, n)] == [16, 9, 9, 9]


def test_min_area_and_hole_filling():
    m = np.zeros((30, 30), np.float32)
    m[5:20, 5:20] = 1.0
    m[10:13, 10:13] = 0.0  # a hole
    m[25:27, 25:27] = 1.0  # 4 px speck
    cfg = PostprocessConfig(mode="threshold", threshold=0.5, top_k=0, min_area=5, fill_holes=True)
    mask = postprocess(m, cfg)
    assert mask[10:13, 10:13].all() and not mask[25:27, 25:27].any()
    assert mask.sum() == 15 * 15
    no_fill = postprocess(m, PostprocessConfig(mode="threshold", threshold=0.5, top_k=0))
    assert not no_fill[11, 11] and no_fill[25, 25]
    assert remove_small(no_fill, 5).sum() == 15 * 15 - 9


def test_constant_map_gives_empty_mask_in_every_mode():
    for mode in BINARISERS:
        assert not postprocess(np.zeros((16, 16)), PostprocessConfig(mode=mode)).any()


def test_unknown_mode_suggests():
    with pytest.raises(UnknownNameError, match="otsu"):
        postprocess(np.zeros((4, 4)), PostprocessConfig(mode="otsuu"))


def test_crf_without_pydensecrf_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(OptionalDependencyError, match="pydensecrf"):
        postprocess(_two_blobs(), PostprocessConfig(crf=True))


def test_crf_with_a_stand_in_module(monkeypatch):
    """The CRF stage calls pydensecrf as MedCLIP-SAMv2 does; a stand-in checks the plumbing."""
    calls = {}

    class DenseCRF2D:
        def __init__(self, w, h, n):
            calls["shape"] = (w, h, n)

        def setUnaryEnergy(self, u):
            self.u = u

        def addPairwiseGaussian(self, **kw):
            calls["gauss"] = kw

        def addPairwiseBilateral(self, **kw):
            calls["bilateral"] = {k: v for k, v in kw.items() if k != "rgbim"}

        def inference(self, n):
            return np.exp(-self.u)  # lower energy → higher probability

    pkg = types.ModuleType("pydensecrf")
    mod = types.ModuleType("pydensecrf.densecrf")
    mod.DenseCRF2D = DenseCRF2D
    pkg.densecrf = mod
    monkeypatch.setitem(sys.modules, "pydensecrf", pkg)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", mod)
    mask = postprocess(_two_blobs(), PostprocessConfig(crf=True, top_k=1))
    assert calls["shape"] == (120, 80, 2)
    assert calls["gauss"] == {"sxy": 5.0, "compat": 3.0}
    assert calls["bilateral"] == {"sxy": 5.0, "srgb": 3.0, "compat": 5.0}
    assert mask[10:30, 10:40].all() and mask.sum() == 600
