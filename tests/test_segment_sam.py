"""SAM segmenter: embedding reuse, multimask selection / voting, prompt kinds, MedSAM path."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medkt.errors import UnknownNameError
from medkt.segmentation.prompts import PromptConfig, Prompts, make_prompts
from medkt.segmentation.sam_segmenter import SELECTORS, SamConfig, SamSegmenter, staple


@pytest.fixture(scope="module")
def tiny_sam():
    from medkt.models import create_model
    return create_model("tiny-sam")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    a = rng.random((70, 110)).astype(np.float32)
    a[20:40, 30:60] += 1.0
    b = (rng.random((90, 90, 3)) * 255).astype(np.uint8)
    return [np.clip(a / a.max(), 0, 1), b]


def _coarse(shape, boxes):
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


def test_embedding_computed_once_per_image(tiny_sam, images):
    seg = SamSegmenter(tiny_sam, SamConfig(model="tiny-sam", keep_components=False))
    prompts = [make_prompts(_coarse((70, 110), [(5, 5, 20, 20), (40, 30, 80, 60)]), PromptConfig(mode="boxes")),
               make_prompts(_coarse((90, 90), [(10, 10, 50, 50)]), PromptConfig(mode="box+points", num_points=3))]
    outs = seg.segment(images, prompts)
    assert seg.encoder_calls == 2  # 3 prompts, 2 images, 2 encodings
    assert all(e.prep.pixels is None for e in seg.embed(images))  # only the embeddings are kept
    assert outs[0].mask.shape == (70, 110) and outs[1].mask.shape == (90, 90)
    assert len(outs[0].scores) == 2 and len(outs[1].scores) == 1
    # same masks as re-encoding the image for every prompt
    per = None
    for b in prompts[0].boxes:
        item = seg.embed([images[0]])[0]
        m = seg.decode(item, Prompts(b[None], None, None, n_components=0)).mask
        per = m if per is None else per | m
    assert np.array_equal(per, outs[0].mask)


@pytest.mark.parametrize("select", sorted(SELECTORS))
def test_multimask_selection_modes(tiny_sam, images, select):
    seg = SamSegmenter(tiny_sam, SamConfig(model="tiny-sam", multimask=True, select=select,
                                           keep_components=False))
    p = make_prompts(_coarse((70, 110), [(30, 20, 60, 40)]), PromptConfig(mode="points", num_points=4))
    out = seg.segment([images[0]], [p])[0]
    assert out.mask.shape == (70, 110) and out.mask.dtype == bool and len(out.scores) == 1
    item = seg.embed([images[0]])[0]
    import torch
    with torch.no_grad():
        low, iou = tiny_sam.decode(item.embedding, points=tiny_sam.transform_points(p.points, item.prep),
                                   point_labels=torch.as_tensor(p.labels), multimask=True)
        cands = (tiny_sam.upscale(low, item.prep) > 0)[0].numpy()
    iou = iou[0].numpy()
    if select == "iou":
        assert np.array_equal(out.mask, cands[int(np.argmax(iou))])
    elif select == "average":
        assert np.array_equal(out.mask, cands.mean(0) > 0.5)


def test_selector_maths():
    c = np.zeros((3, 4, 4), bool)
    c[0, :2] = True
    c[1, :3] = True
    c[2, :2] = True
    scores = np.array([0.1, 0.9, 0.2])
    assert np.array_equal(SELECTORS["iou"](c, scores) > 0.5, c[1])
    assert np.array_equal(SELECTORS["average"](c, scores) > 0.5, c[0])  # majority
    mrm = SELECTORS["mrm"](c, scores)
    assert mrm.max() == 1.0 and mrm.min() == 0.0
    assert np.array_equal(mrm > 0.5, c[1])  # row 2: only the 0.9-score candidate → 0.9/1.2 = 0.75
    post = staple(c)
    assert np.array_equal(post > 0.5, c[0]) and post[3].max() < 0.5


def test_empty_policies_at_sam_level(tiny_sam, images):
    seg = SamSegmenter(tiny_sam, SamConfig(model="tiny-sam"))
    empty = np.zeros((70, 110), bool)
    outs = seg.segment([images[0]] * 3, [make_prompts(empty, PromptConfig(empty=p))
                                         for p in ("skip", "empty", "full_image")])
    assert seg.encoder_calls == 1  # only the full-image box needs the encoder
    assert outs[0].mask is None and outs[0].status == "skip"
    assert outs[1].mask.shape == (70, 110) and not outs[1].mask.any() and outs[1].status == "empty"
    assert outs[2].mask.shape == (70, 110) and outs[2].status == "full_image"


def test_keep_components_limits_to_coarse_count(tiny_sam, images):
    seg = SamSegmenter(tiny_sam, SamConfig(model="tiny-sam", keep_components=True))
    p = make_prompts(_coarse((70, 110), [(30, 20, 60, 40)]), PromptConfig(mode="box"))
    m = seg.segment([images[0]], [p])[0].mask
    _, n = ndimage.label(m, structure=np.ones((3, 3)))
    assert n <= 1


def test_medsam_path_uses_its_own_preprocessing(images):
    from medkt.models import create_model
    med = create_model("tiny-medsam")
    assert med.variant == "medsam"
    prep = med.prepare_image(images[0])
    assert float(prep.pixels.min()) == pytest.approx(0.0, abs=1e-6)
    assert float(prep.pixels.max()) == pytest.approx(1.0, abs=1e-6)
    seg = SamSegmenter(med, SamConfig(model="tiny-medsam"))
    out = seg.segment([images[0]], [make_prompts(_coarse((70, 110), [(30, 20, 60, 40)]))])[0]
    assert out.mask.shape == (70, 110)


def test_unknown_selector():
    with pytest.raises(UnknownNameError):
        SamConfig(select="majority").validate()
