"""Memory a segmentation run frees: the text encoder after the prompt is encoded, and the heap
that model loading leaves behind (medkt.models.memory, Segmenter.release_text_encoder)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medkt.errors import CapabilityError

PROMPT = "a bright square"


def _image():
    a = np.random.default_rng(0).random((40, 48)).astype(np.float32) * 0.3
    a[10:25, 12:30] = 0.9
    return a


def _segmenter(**over):
    from medkt.segmentation.pipeline import Segmenter, load_segment_config
    return Segmenter(load_segment_config("tiny", [f"{k}={v}" for k, v in over.items()]))


def test_release_frees_text_weights_only_and_keeps_the_prompt():
    seg = _segmenter()
    model = seg.model
    text_ids = {id(p) for p in model.parameters_of("text")}
    visual = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in text_ids}
    n_text = sum(p.numel() for p in model.parameters_of("text"))
    before = seg.segment_slices([_image()], PROMPT)[0]
    n_params = model.describe()["parameters"]

    freed = seg.release_text_encoder([PROMPT])

    assert freed == 4 * n_text  # float32 text tower
    assert all(p.numel() == 0 for p in model.parameters_of("text"))
    for n, p in model.named_parameters():  # the vision tower and the rest are untouched
        if n in visual:
            assert torch.equal(p, visual[n]), n
    after = seg.segment_slices([_image()], PROMPT)[0]
    np.testing.assert_array_equal(after.saliency, before.saliency)
    np.testing.assert_array_equal(after.mask, before.mask)
    d = model.describe()
    assert d["parameters"] == n_params and "released" in d["text_encoder"]
    with pytest.raises(CapabilityError, match="released"):
        seg.segment_slices([_image()], "another prompt")
    assert seg.release_text_encoder([PROMPT]) == 0  # already released


def test_release_is_skipped_with_the_text_side_map():
    seg = _segmenter(**{"m2ib.text_map": "true"})
    assert seg.release_text_encoder([PROMPT]) == 0
    assert all(p.numel() > 0 for p in seg.model.parameters_of("text"))


def test_diagnostics_prompts_are_encoded_before_release():
    from medkt.segmentation.diagnostics import alternative_prompts
    seg = _segmenter(**{"diagnostics.enabled": "true", "diagnostics.random_prompts": 2})
    seg.release_text_encoder([PROMPT])
    d = seg.cfg.diagnostics
    alts = [t for _, t in alternative_prompts(d.neutral_prompt, d.random_prompts, d.random_length,
                                              seg.cfg.m2ib.seed)]
    assert len(alts) == 3
    for t in [PROMPT, *alts]:
        assert t in seg.saliency._text_cache


def test_segment_releases_its_own_model_and_matches_a_kept_one(tmp_path):
    """segment() frees the text encoder of models it loaded (run.json says so); masks equal a run
    whose text encoder stays (a segmenter passed in is never changed)."""
    from PIL import Image

    import medkt
    from medkt.segmentation.pipeline import load_segment_config
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((_image() * 255).astype(np.uint8)).save(src / "a.png")
    cfg = load_segment_config("tiny", prompt=PROMPT)
    medkt.segment(str(src), output=str(tmp_path / "own"), config=cfg)
    kept = _segmenter()
    medkt.segment(str(src), output=str(tmp_path / "kept"), config=cfg, segmenter=kept)
    assert all(p.numel() > 0 for p in kept.model.parameters_of("text"))
    own = json.loads((tmp_path / "own" / "run.json").read_text())
    assert own["memory"]["text_encoder_released_mb"] > 0
    assert "memory" not in json.loads((tmp_path / "kept" / "run.json").read_text())
    a, b = (np.asarray(Image.open(tmp_path / d / "a" / "mask.png")) for d in ("own", "kept"))
    np.testing.assert_array_equal(a, b)


def test_trim_heap_is_safe_to_call():
    from medkt.models.memory import trim_heap
    assert trim_heap() in (True, False)
    assert torch.ones(3).sum().item() == 3.0
