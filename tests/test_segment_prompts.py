"""Prompt modes (box, boxes, points, box+points) and the empty-coarse-mask policies."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from medkt.errors import ConfigError, UnknownNameError
from medkt.segmentation.prompts import PromptConfig, component_boxes, make_prompts, mask_box


def _mask():
    m = np.zeros((50, 80), bool)
    m[5:15, 10:30] = True   # component A: x 10..29, y 5..14
    m[30:41, 60:71] = True  # component B: x 60..70, y 30..40
    return m


def test_union_box_in_original_pixels():
    p = make_prompts(_mask(), PromptConfig(mode="box"))
    assert p.status == "ok" and p.count == 1 and p.n_components == 2
    np.testing.assert_array_equal(p.boxes, [[10, 5, 71, 41]])
    assert p.points is None


def test_box_per_component_and_margin():
    p = make_prompts(_mask(), PromptConfig(mode="boxes"))
    np.testing.assert_array_equal(p.boxes, [[10, 5, 30, 15], [60, 30, 71, 41]])
    q = make_prompts(_mask(), PromptConfig(mode="boxes", box_margin=3))
    np.testing.assert_array_equal(q.boxes, [[7, 2, 33, 18], [57, 27, 74, 44]])
    np.testing.assert_array_equal(mask_box(np.ones((4, 6), bool), margin=10), [0, 0, 6, 4])
    assert component_boxes(np.zeros((4, 4), bool)).shape == (0, 4)


def test_points_are_seeded_and_inside_or_outside():
    m = _mask()
    cfg = PromptConfig(mode="points", num_points=7, negative=True, num_negative=5, seed=3)
    a, b = make_prompts(m, cfg), make_prompts(m, cfg)
    np.testing.assert_array_equal(a.points, b.points)
    assert a.boxes is None and a.points.shape == (1, 12, 2) and a.labels.tolist() == [[1] * 7 + [0] * 5]
    xy = np.floor(a.points[0]).astype(int)
    assert m[xy[:7, 1], xy[:7, 0]].all() and not m[xy[7:, 1], xy[7:, 0]].any()
    c = make_prompts(m, PromptConfig(mode="points", num_points=7, seed=4))
    assert not np.array_equal(a.points[0, :7], c.points[0])
    d = make_prompts(m, cfg, seed=4)  # explicit seed overrides cfg.seed
    np.testing.assert_array_equal(d.points[0, :7], c.points[0])


def test_box_plus_points_union_and_per_component():
    m = _mask()
    one = make_prompts(m, PromptConfig(mode="box+points", num_points=4))
    assert one.boxes.shape == (1, 4) and one.points.shape == (1, 4, 2)
    per = make_prompts(m, PromptConfig(mode="box+points", per_component=True, num_points=4))
    assert per.boxes.shape == (2, 4) and per.points.shape == (2, 4, 2)
    np.testing.assert_array_equal(per.points[0], per.points[1])  # same points with every box


def test_few_pixels_sample_with_replacement():
    m = np.zeros((10, 10), bool)
    m[2, 3] = True
    p = make_prompts(m, PromptConfig(mode="points", num_points=5))
    np.testing.assert_array_equal(p.points[0], [[3.5, 2.5]] * 5)


@pytest.mark.parametrize("policy,status,boxes", [("skip", "skip", None), ("empty", "empty", None),
                                                 ("full_image", "full_image", [[0, 0, 80, 50]])])
@pytest.mark.parametrize("mode", ["box", "boxes", "points", "box+points"])
def test_empty_mask_policies_never_crash_and_log(policy, status, boxes, mode, caplog):
    with caplog.at_level(logging.WARNING, logger="medkt.segmentation"):
        p = make_prompts(np.zeros((50, 80), bool), PromptConfig(mode=mode, empty=policy), name="case7")
    assert p.status == status and p.points is None
    if boxes is None:
        assert p.boxes is None and p.count == 0
    else:
        np.testing.assert_array_equal(p.boxes, boxes)
    assert "empty coarse mask (case7)" in caplog.text and policy in caplog.text


def test_bad_prompt_config():
    with pytest.raises(UnknownNameError):
        make_prompts(_mask(), PromptConfig(mode="polygon"))
    with pytest.raises(UnknownNameError):
        make_prompts(_mask(), PromptConfig(empty="crash"))
    with pytest.raises(ConfigError):
        make_prompts(_mask(), PromptConfig(mode="points", num_points=0))
