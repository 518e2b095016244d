"""Aggregation: statistics by hand, seeded bootstrap, per-class summaries."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medkt.metrics import SegMetricConfig, bootstrap_ci, segmentation_scores, summarize, summarize_segmentation
from medkt.metrics.aggregate import describe


def test_describe_by_hand():
    d = describe([1.0, 2.0, 3.0, 4.0, float("nan")], n_boot=500)
    assert d["n"] == 4 and d["n_nan"] == 1
    assert d["mean"] == 2.5 and d["median"] == 2.5
    assert d["sd"] == pytest.approx(math.sqrt(5 / 3))  # sample SD, ddof=1
    assert (d["min"], d["max"], d["q1"], d["q3"]) == (1.0, 4.0, 1.75, 3.25)
    assert 1.0 <= d["ci_low"] <= 2.5 <= d["ci_high"] <= 4.0
    empty = describe([float("nan")])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["ci_low"])
    one = describe([0.7])
    assert math.isnan(one["sd"]) and (one["ci_low"], one["ci_high"]) == (0.7, 0.7)


def test_bootstrap_is_deterministic_under_a_seed():
    vals = np.random.default_rng(0).uniform(size=57)
    a = bootstrap_ci(vals, seed=123, n_boot=1000)
    b = bootstrap_ci(list(vals), seed=123, n_boot=1000)
    c = bootstrap_ci(vals, seed=124, n_boot=1000)
    assert a == b
    assert a != c
    assert a[0] < vals.mean() < a[1]
    # the percentile CI of the mean is close to the normal approximation for n = 57
    se = vals.std(ddof=1) / math.sqrt(vals.size)
    assert a[0] == pytest.approx(vals.mean() - 1.96 * se, abs=0.3 * se * 1.96)
    # summaries do not depend on the order of metric columns
    rows = [{"x": float(v), "y": float(1 - v)} for v in vals]
    s1 = summarize(rows, ["x", "y"], seed=5, n_boot=300)
    s2 = summarize(rows, ["y", "x"], seed=5, n_boot=300)
    assert s1["x"] == s2["x"] and s1["y"] == s2["y"]


def test_summarize_picks_numeric_columns():
    rows = [{"case_id": "a", "dsc": 1.0, "ok": True}, {"case_id": "b", "dsc": 0.5}]
    s = summarize(rows, n_boot=10)
    assert list(s) == ["dsc"] and s["dsc"]["mean"] == 0.75


def test_summarize_segmentation_per_class_macro_and_policy():
    g = np.zeros((10, 10), np.int16)
    g[0:4, 0:4] = 1
    g[6:10, 6:10] = 2
    p1 = g.copy()
    p2 = g.copy()
    p2[p2 == 2] = 0  # misses class 2
    cfg = SegMetricConfig(nsd_units="px", classes={"a": 1, "b": 2})
    rows = [{"case_id": "c1", "status": "ok", **segmentation_scores(p1, g, config=cfg)},
            {"case_id": "c2", "status": "ok", **segmentation_scores(p2, g, config=cfg)},
            {"case_id": "c3", "status": "missing_gt"}]
    s = summarize_segmentation(rows, cfg, seed=0, n_boot=200)
    assert s["n_cases"] == 3 and s["n_scored"] == 2
    assert s["cases"] == {"missing_gt": 1, "ok": 2}
    assert s["per_class"]["a"]["dsc"]["mean"] == 1.0
    assert s["per_class"]["b"]["dsc"]["mean"] == 0.5
    assert s["macro"]["dsc"] == 0.75
    assert s["case_types"]["b"] == {"both_nonempty": 1, "pred_empty": 1}
    assert s["conventions"]["empty_policy"]["dsc"]["both_empty"] == 1.0
    assert s["conventions"]["classes"] == {"a": 1, "b": 2}
    assert s["bootstrap"]["seed"] == 0
