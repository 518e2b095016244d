"""M2IB shift averaging (``m2ib.shifts``): identity, shift-back geometry, batching, config, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medkt.errors import ConfigError
from medkt.segmentation.m2ib import M2IBConfig
from medkt.segmentation.saliency import SaliencyEngine, SquareGeometry, shift_content

CFG = dict(beta=1.0, steps=3, samples=2)


@pytest.fixture(scope="module")
def clip():
    from medkt.models import create_model
    return create_model("tiny-clip")


def _images():
    rng = np.random.default_rng(1)
    return [rng.random((40, 90)).astype(np.float32), (rng.random((64, 64)) * 255).astype(np.uint8)]


def test_a_lone_zero_shift_is_the_plain_map_exactly(clip):
    plain = SaliencyEngine(clip, M2IBConfig(**CFG))(_images(), "a lung nodule", seeds=[3, 4])
    zero = SaliencyEngine(clip, M2IBConfig(**CFG, shifts=[[0, 0]]))(_images(), "a lung nodule", seeds=[3, 4])
    for a, b in zip(plain, zero):
        assert np.array_equal(a.map, b.map) and np.array_equal(a.raw, b.raw)
        assert b.grid.shape == (1, *a.grid.shape) and np.array_equal(a.grid, b.grid[0])


def test_shifted_copies_batch_like_other_images(clip):
    cfg = dict(CFG, shifts=[[0, 0], [0, 8], [8, 0], [8, 8]])
    one = SaliencyEngine(clip, M2IBConfig(**cfg, batch_size=1))(_images(), "a lung nodule")
    many = SaliencyEngine(clip, M2IBConfig(**cfg, batch_size=16))(_images(), "a lung nodule")
    plain = SaliencyEngine(clip, M2IBConfig(**CFG))(_images(), "a lung nodule")
    for a, b, p, im in zip(one, many, plain, _images()):
        assert a.map.shape == im.shape[:2] and a.grid.shape[0] == 4
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5)
        np.testing.assert_allclose(a.grid[0], p.grid, rtol=1e-5)  # the (0, 0) copy is the plain run
        assert not np.allclose(a.raw, p.raw)  # the other copies change the average


def test_shift_content_moves_down_right_and_replicates_edges():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    s = shift_content(x, 2, -1)
    assert s.shape == x.shape and s[0, 0, 4, 2] == x[0, 0, 2, 3]  # content moved 2 down, 1 left
    assert torch.equal(s[0, 0, 0], s[0, 0, 2]) and torch.equal(s[0, 0, :, 5], s[0, 0, :, 4])  # edges repeated
    with pytest.raises(ConfigError, match="out of view"):
        shift_content(x, 6, 0)


@pytest.mark.parametrize("mode,h,w", [("letterbox", 40, 90), ("squash", 50, 70), ("center_crop", 80, 60),
                                      ("letterbox", 64, 64)])
@pytest.mark.parametrize("dy,dx", [(4, 4), (-4, 8), (3, 0)])
def test_shift_back_puts_the_map_on_the_original_pixels(mode, h, w, dy, dx):
    """A ramp seen through a shifted copy and shifted back equals the plain map (bilinear is
    exact on a ramp) wherever the clamped edge cells play no part; the wrong sign would be off
    by 2·d·slope."""
    size, g = 64, 8
    geo = SquareGeometry(h, w, size, mode)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    ramp = (0.7 * yy - 0.3 * xx)[None, None]  # model-input "saliency evidence"
    pool = lambda im: torch.nn.functional.avg_pool2d(im, size // g)[:, 0]  # noqa: E731
    plain = geo.grid_to_image(pool(ramp))[0]
    back = geo.grid_to_image(pool(shift_content(ramp, dy, dx)), (dy, dx))[0]
    assert back.shape == (h, w)
    # interior in model pixels: one cell plus the shift away from every edge, mapped to the image
    mask = torch.zeros(size, size, dtype=torch.bool)
    m = size // g + max(abs(dy), abs(dx)) + 1
    mask[m:size - m, m:size - m] = True
    inside = geo.grid_to_image(mask[None].double(), (0, 0))[0]  # not a real map: where the interior lands
    sel = inside > 0.999
    assert sel.sum() > 0.1 * h * w
    np.testing.assert_allclose(back[sel].numpy(), plain[sel].numpy(), atol=1e-4)
    if (dy, dx) != (0, 0):
        wrong = geo.grid_to_image(pool(shift_content(ramp, dy, dx)), (-dy, -dx))[0]
        assert (wrong[sel] - plain[sel]).abs().max() > 1.0


def test_engine_shift_average_keeps_a_blob_in_place(clip, brightness_m2ib):
    """Whole image path (letterbox, copies, shift back, average) with M2IB replaced by 'where is it bright'."""
    h, w, cy, cx = 60, 100, 40, 85
    yy, xx = np.mgrid[:h, :w]
    blob = (((yy - cy) ** 2 + (xx - cx) ** 2) <= 100).astype(np.float32)
    half = 64 // clip.visual_layout(1).grid_h // 2
    cfg = M2IBConfig(**CFG, shifts=[[0, 0], [0, half], [half, 0], [half, half]])
    res = SaliencyEngine(clip, cfg)([blob], "x")[0]
    py, px = np.unravel_index(np.argmax(res.map), res.map.shape)
    assert abs(py - cy) <= 100 / 8 and abs(px - cx) <= 100 / 8  # within half a grid cell (12.5 px here)
    assert res.map[:, :40].max() < 0.2


# ---------------------------------------------------------------------- config and CLI
def test_shifts_config_round_trips(tmp_path):
    import yaml

    from medkt.config import to_dict
    from medkt.segmentation import load_segment_config
    cfg = load_segment_config("tiny", ["m2ib.shifts=[[0,0],[0,4],[4,0],[-4,4]]"])
    assert cfg.m2ib.shifts == [[0, 0], [0, 4], [4, 0], [-4, 4]]
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    again = load_segment_config(str(path))
    assert again.m2ib.shifts == cfg.m2ib.shifts and to_dict(again) == to_dict(cfg)
    for name in ("tiny", "breast-us", "brain-mri", "ct-lung-nodule", "cxr-pneumothorax"):
        assert load_segment_config(name).m2ib.shifts == [], name  # default: off


@pytest.mark.parametrize("bad,words", [("[[0]]", "pair"), ("[[0,0],[0,0]]", "twice"), ("[[0.5,0]]", "integer"),
                                       ("4", "list"), ("[[0,a]]", "integer"), ("[[true,0]]", "pair")])
def test_bad_shifts_are_config_errors(bad, words):
    from medkt.segmentation import load_segment_config
    with pytest.raises(ConfigError, match=words):
        load_segment_config("tiny", [f"m2ib.shifts={bad}"])


def test_shift_as_large_as_the_model_input_is_refused(clip):
    with pytest.raises(ConfigError, match="64"):
        SaliencyEngine(clip, M2IBConfig(shifts=[[0, 64]]))


def test_cli_set_shifts(tmp_path, capsys):
    from PIL import Image

    from medkt.cli.main import main
    img = tmp_path / "images"
    img.mkdir()
    a = (np.random.default_rng(0).random((48, 80)) * 60).astype(np.uint8)
    a[10:30, 20:40] = 220
    Image.fromarray(a).save(img / "a.png")
    out = tmp_path / "out"
    assert main(["segment", str(img), "-o", str(out), "--prompt", "a bright square", "--config", "tiny",
                 "--set", "m2ib.shifts=[[0,0],[8,8]]"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["m2ib"]["shifts"] == [[0, 0], [8, 8]]
    assert np.load(out / "a" / "saliency.npy").shape == (48, 80)
    capsys.readouterr()
    assert main(["segment", str(img), "-o", str(tmp_path / "bad"), "--prompt", "x", "--config", "tiny",
                 "--set", "m2ib.shifts=[[0,0],[0,0]]"]) == 2
    assert "m2ib.shifts" in capsys.readouterr().err
