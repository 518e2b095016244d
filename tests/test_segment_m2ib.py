"""M2IB saliency: batching, caching, prompts, seeds, σ normalisation, text map, geometry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medkt.errors import ConfigError
from medkt.segmentation.m2ib import M2IBConfig, bottleneck, m2ib_text, m2ib_visual, resolve_layer
from medkt.segmentation.saliency import SaliencyEngine, SquareGeometry, minmax


@pytest.fixture(scope="module")
def clip():
    from medkt.models import create_model
    return create_model("tiny-clip")


@pytest.fixture(scope="module")
def pixels(clip):
    g = torch.Generator().manual_seed(0)
    return clip.normalize(torch.rand(3, 3, 64, 64, generator=g))


CFG = dict(beta=1.0, steps=4, samples=3)


def test_batched_equals_per_image(clip, pixels):
    cfg = M2IBConfig(**CFG)
    text = clip.encode_texts(["a lung nodule"])
    seeds = [11, 12, 13]
    batched = m2ib_visual(clip, pixels, text, cfg, seeds)
    single = torch.cat([m2ib_visual(clip, pixels[i:i + 1], text, cfg, [s]) for i, s in enumerate(seeds)])
    assert batched.shape == (3, 4, 4)
    assert torch.allclose(batched, single, atol=1e-5, rtol=0)
    assert torch.allclose(minmax(batched), minmax(single), atol=1e-4)
    # the noise matters: another seed gives another map
    other = m2ib_visual(clip, pixels[:1], text, cfg, [99])
    assert (other - single[:1]).abs().max() > 1e-4


def test_cached_equals_recompute(clip, pixels):
    text = clip.encode_texts(["a lung nodule"])
    cached = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG, cache_prefix=True), [1, 2, 3])
    hooked = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG, cache_prefix=False), [1, 2, 3])
    assert torch.allclose(cached, hooked, atol=1e-5, rtol=1e-6)  # float rounding: the cached path runs the last block for the class token only


def test_map_changes_with_prompt_and_weights_stay_frozen(clip, pixels):
    flags = [p.requires_grad for p in clip.parameters()]
    cfg = M2IBConfig(beta=0.1, steps=4, samples=3)  # the M2IB default beta
    a = m2ib_visual(clip, pixels, clip.encode_texts(["a lung nodule"]), cfg, [5, 5, 5])
    b = m2ib_visual(clip, pixels, clip.encode_texts(["a wooden chair in a garden"]), cfg, [5, 5, 5])
    assert (minmax(a) - minmax(b)).abs().max() > 0.05
    assert [p.requires_grad for p in clip.parameters()] == flags
    assert all(p.grad is None for p in clip.parameters())


def test_feature_norm_is_real_and_deterministic(clip, pixels):
    text = clip.encode_texts(["a lung nodule"])
    plain = m2ib_visual(clip, pixels[:1], text, M2IBConfig(**CFG), [3])
    normed = m2ib_visual(clip, pixels[:1], text, M2IBConfig(**CFG, feature_norm="image"), [3])
    again = m2ib_visual(clip, pixels[:1], text, M2IBConfig(**CFG, feature_norm="image"), [3])
    assert torch.equal(normed, again)
    assert (minmax(plain) - minmax(normed)).abs().max() > 1e-3
    with pytest.raises(ConfigError):
        M2IBConfig(feature_norm="sigma").validate()


def test_bottleneck_kl_closed_form():
    x = torch.tensor([[[0.0, 2.0]]])
    alpha = torch.tensor([[[0.0, 40.0]]])  # λ = 0.5 and λ ≈ 1
    z, kl = bottleneck(x, alpha, torch.zeros(1, 2, 1, 2))
    # λ=0.5, x=0: KL(N(0, .25) || N(0, 1)) = 0.5 * (0.25 - 1) - log(0.5)
    assert kl[0, 0, 0].item() == pytest.approx(0.5 * (0.25 - 1) - np.log(0.5), rel=1e-5)
    assert kl[0, 0, 1].item() > 30  # almost no noise: lots of information kept
    assert z.shape == (2, 1, 2) and z[0, 0, 1].item() == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("depth,expected", [(12, 9), (24, 19), (4, 2), (2, 0)])
def test_resolve_layer_scaling(depth, expected):
    assert resolve_layer(None, depth) == expected


def test_resolve_layer_rejects_out_of_range():
    with pytest.raises(ConfigError, match="outside"):
        resolve_layer(12, 12)


def test_text_map(clip, pixels):
    maps = m2ib_text(clip, pixels[:2], "a lung nodule", M2IBConfig(**CFG), [0, 0])
    assert len(maps) == 2
    ids = clip.tokenize(["a lung nodule"])["input_ids"][0]
    n_words = int(ids.argmax()) - 1  # tokens between start and end
    assert len(maps[0].scores) == n_words == len(maps[0].token_ids)
    assert all(s >= 0 for s in maps[0].scores)
    assert maps[0].tokens is not None and maps[0].tokens[0] == "a"


def test_engine_batches_mixed_sizes_identically(clip):
    rng = np.random.default_rng(0)
    images = [rng.random((40, 90)).astype(np.float32), rng.random((64, 64, 3)).astype(np.float32),
              (rng.random((100, 30)) * 255).astype(np.uint8)]
    one = SaliencyEngine(clip, M2IBConfig(**CFG, batch_size=1))(images, "a lung nodule")
    three = SaliencyEngine(clip, M2IBConfig(**CFG, batch_size=3))(images, "a lung nodule")
    for a, b, im in zip(one, three, images):
        assert a.map.shape == im.shape[:2] and a.map.dtype == np.float32
        assert a.map.min() >= 0 and a.map.max() == pytest.approx(1.0)
        np.testing.assert_allclose(a.raw, b.raw, atol=1e-5)


# ---------------------------------------------------------------------- geometry
def _blob_image(h, w, cy, cx, r=6):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)


@pytest.mark.parametrize("h,w,cy,cx", [(60, 100, 45, 80), (120, 50, 20, 10), (90, 90, 70, 30)])
def test_letterbox_maps_blob_back_to_its_location(h, w, cy, cx):
    """A blob drawn on a non-square image, seen on the model's patch grid, comes back in place."""
    geo = SquareGeometry(h, w, size=64, mode="letterbox")
    img = torch.from_numpy(_blob_image(h, w, cy, cx))[None, None]
    model_in = geo.to_model(img)  # [1, 1, 64, 64]
    grid = torch.nn.functional.avg_pool2d(model_in, 4)[:, 0]  # a 16x16 "saliency" grid
    back = geo.grid_to_image(grid)[0].numpy()
    assert back.shape == (h, w)
    py, px = np.unravel_index(np.argmax(back), back.shape)
    cell = max(h, w) / 16  # one grid cell in original pixels
    assert abs(py - cy) <= cell and abs(px - cx) <= cell
    # the map's centre of mass lands on the blob
    wts = np.clip(back - back.max() * 0.5, 0, None)
    yy, xx = np.mgrid[:h, :w]
    assert abs((wts * yy).sum() / wts.sum() - cy) < 2 and abs((wts * xx).sum() / wts.sum() - cx) < 2


def test_squash_and_center_crop_geometry():
    h, w, cy, cx = 60, 100, 30, 70
    img = torch.from_numpy(_blob_image(h, w, cy, cx))[None, None]
    for mode in ("squash", "center_crop"):
        geo = SquareGeometry(h, w, size=64, mode=mode)
        grid = torch.nn.functional.avg_pool2d(geo.to_model(img), 4)[:, 0]
        back = geo.grid_to_image(grid)[0].numpy()
        py, px = np.unravel_index(np.argmax(back), back.shape)
        assert abs(py - cy) <= 8 and abs(px - cx) <= 8, mode
    top, left, side, _ = SquareGeometry(h, w, 64, "center_crop").crop_box()
    back = SquareGeometry(h, w, 64, "center_crop").grid_to_image(torch.ones(1, 4, 4))[0]
    assert back[:, :left].abs().max() == 0 and back[:, left:left + side].min() > 0
    with pytest.raises(ConfigError):
        SquareGeometry(10, 10, 64, "stretch")


def test_engine_maps_a_blob_back_through_the_whole_image_path(clip, brightness_m2ib):
    """SaliencyEngine wiring (letterbox in, grid map back) with M2IB replaced by 'where is it bright'."""
    h, w, cy, cx = 60, 100, 40, 85
    res = SaliencyEngine(clip, M2IBConfig(**CFG))([_blob_image(h, w, cy, cx, r=10)], "x")[0]
    assert res.map.shape == (h, w)
    py, px = np.unravel_index(np.argmax(res.map), res.map.shape)
    cell = max(h, w) / clip.visual_layout(1).grid_h  # 25 px grid cells on this image
    assert abs(py - cy) <= cell and abs(px - cx) <= cell
    assert res.map[:, :40].max() < 0.2  # the left of the image stays cold
