"""pipelines/worlds/phantom_pointing.py: the per-miss location report and the diagnostic map
variants' plumbing (hand-made maps; no model)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def pp(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "pipelines" / "worlds"))
    import phantom_pointing
    return phantom_pointing


def test_miss_info_locates_the_maximum(pp):
    gt = np.zeros((32, 32), bool)
    gt[10:20, 10:20] = True
    sal = np.zeros((32, 32), np.float32)
    sal[15, 15] = 0.8  # best value inside the GT
    sal[22, 15] = 1.0  # the maximum: 3 px under the mask, same column
    info = pp.miss_info(sal, gt, {"shadow": sal >= 1.0, "other": sal < 0})
    assert (info["max_row"], info["max_col"]) == (22, 15)
    assert info["dist_px"] == 3.0
    assert info["where"] == "shadow+below the finding"
    assert info["in_gt_max_pct"] == 80.0
    sal[22, 15], sal[1, 30] = 0.0, 1.0  # now above-right, off the mask's columns, at the border
    info = pp.miss_info(sal, gt, {})
    assert info["where"] == "border" and info["dist_px"] == pytest.approx(np.hypot(10 - 1, 30 - 19), abs=0.05)  # to (10, 19)


def test_shifts_flag_becomes_the_m2ib_option(pp):
    from medkt.worlds.phantom_experiments import PhantomSettings, segment_config
    shifts = pp.parse_shifts("0:0,0:4,-4:2")
    assert shifts == ((0, 0), (0, 4), (-4, 2))
    assert segment_config(PhantomSettings(m2ib_shifts=shifts)).m2ib.shifts == [[0, 0], [0, 4], [-4, 2]]


def test_map_variant_restores_the_engine(pp):
    from medkt.segmentation.saliency import SaliencyEngine
    orig = SaliencyEngine.__call__
    with pp.map_variant(blur=0.5):
        assert SaliencyEngine.__call__ is not orig
    assert SaliencyEngine.__call__ is orig
    with pp.map_variant():  # no variant: nothing patched
        assert SaliencyEngine.__call__ is orig
