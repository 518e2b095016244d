"""Inversion options for short runs (issue 18): lr warm-up and schedules, per-image early
stopping, the Fourier parametrisation with colour decorrelation, the progressive encoder,
work accounting and the ``fast`` preset.  Correctness only; the time-to-quality numbers
come from ``benchmarks/bench_inversion_quality.py``."""
from __future__ import annotations

import math

import pytest
import torch

from medkt.errors import ConfigError
from medkt.models import create_model
from medkt.transfer import invert, load_concepts, load_transfer_config, state_of
from medkt.transfer import parametrize as PZ
from medkt.transfer.config import EarlyStopConfig, InversionConfig
from medkt.transfer.fingerprint import config_fingerprint
from medkt.transfer.resolution import encoder_at, encoder_size, resized_positions
from medkt.transfer.schedules import PlateauStopper, lr_at

RARE = load_concepts("rare")
FAST = {"steps": 25, "images_per_concept": 2, "log_every": 5}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return create_model("tiny-clip")


# ---------------------------------------------------------------------- schedules
def test_lr_schedules_and_warmup():
    cos = InversionConfig(steps=100, lr=0.1)
    assert lr_at(cos, 0) == pytest.approx(0.1)
    assert lr_at(cos, 50) == pytest.approx(0.05)
    assert lr_at(cos, 99) < 1e-3
    # warmup 0 is exactly the former cosine formula
    assert all(lr_at(cos, s) == pytest.approx(0.5 * 0.1 * (1 + math.cos(math.pi * s / 100))) for s in range(100))
    warm = InversionConfig(steps=100, lr=0.2, warmup=0.1)
    ramp = [lr_at(warm, s) for s in range(10)]
    assert ramp == pytest.approx([0.2 * (s + 1) / 10 for s in range(10)])
    assert lr_at(warm, 10) == pytest.approx(0.2) and lr_at(warm, 99) < 1e-3
    lin = InversionConfig(steps=100, lr=0.1, schedule="linear")
    assert lr_at(lin, 0) == pytest.approx(0.1) and lr_at(lin, 50) == pytest.approx(0.05)
    assert lr_at(InversionConfig(steps=100, schedule="constant", warmup=0.5), 80) == pytest.approx(0.1)


def test_plateau_stopper_stops_flat_images_only():
    cfg = EarlyStopConfig(patience=20, min_delta=0.01, ema=0.0, check_every=10, min_steps=0.0)
    st = PlateauStopper(cfg, 3, steps=100)
    idx = torch.arange(3)
    stopped = {}
    for step in range(100):
        vals = torch.tensor([1.0, 1.0 - 0.01 * step, 0.5 + 0.001 * step])  # flat, improving, worsening
        active = torch.tensor([i for i in range(3) if i not in stopped])
        stop = st.update(step, vals[active], active)
        for s in stop.tolist():
            stopped[int(active[s])] = step + 1
    assert stopped == {0: 30, 2: 30}  # first check with a value 20 steps back: step 29
    assert st.stopped_at.tolist() == [30, 100, 30]
    # decisions depend only on the image's own values
    alone = PlateauStopper(cfg, 1, steps=100)
    got = [alone.update(s, torch.tensor([1.0]), torch.tensor([0])) for s in range(100)]
    assert [s for s, g in enumerate(got) if len(g)][0] + 1 == 30
    assert idx.tolist() == [0, 1, 2]


def test_plateau_stopper_respects_min_steps():
    cfg = EarlyStopConfig(patience=10, min_delta=1.0, ema=0.5, check_every=5, min_steps=0.5)
    st = PlateauStopper(cfg, 1, steps=40)
    first = next(s for s in range(40) if len(st.update(s, torch.tensor([0.3]), torch.tensor([0]))))
    assert first + 1 == 20


def test_early_stop_in_inversion(clip):
    one = RARE.subset(["Tonometer"])
    off = invert(clip, one, FAST, seed=2, progress=False)
    assert off.steps_run.tolist() == [25, 25] and off.work == {64: 50}
    never = invert(clip, one, {**FAST, "early_stop": {"patience": 5, "check_every": 5, "min_delta": -1e9}},
                   seed=2, progress=False)
    assert torch.equal(never.images, off.images) and never.work == off.work
    cfg = {**FAST, "early_stop": {"patience": 5, "check_every": 5, "min_delta": 1e9, "min_steps": 0.4}}
    early = invert(clip, RARE, cfg, seed=2, progress=False)
    assert early.steps_run.tolist() == [10] * 6  # first check at or after 40 % of 25 steps with history
    assert early.work == {64: 60}  # 6 images x 10 steps, nothing after they stopped
    assert not torch.allclose(early.for_concept("Tonometer"), off.images, atol=1e-3)
    alone = invert(clip, one, cfg, seed=2, progress=False)
    assert torch.allclose(early.for_concept("Tonometer"), alone.images, atol=1e-4)
    assert float(early.images.min()) >= 0 and float(early.images.max()) <= 1


def test_early_stop_keeps_stopped_images_fixed(clip):
    # an image stopped at step k keeps its pixels although Adam's momentum would still move them:
    # compare with a run whose other images keep going longer (batch independence)
    one = RARE.subset(["Gyroscope"])
    cfg = {**FAST, "steps": 30, "early_stop": {"patience": 10, "check_every": 5, "min_delta": 0.0}}
    res = invert(clip, one, cfg, seed=0, progress=False)
    both = invert(clip, RARE.subset(["Gyroscope", "Moongate"]), cfg, seed=0, progress=False)
    assert torch.allclose(both.for_concept("Gyroscope"), res.images, atol=1e-4)
    assert int(res.steps_run.max()) <= 30


# ---------------------------------------------------------------------- Fourier
def test_fourier_rendering():
    s = PZ.spectrum_scale(16, 1.0)
    assert s.shape == (16, 9) and float(s.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-5)
    assert float(s[0, 0]) > float(s[0, 4]) > float(s[8, 8])  # amplitude falls with frequency
    m = PZ.color_matrix(3, True)
    gram = m.t() @ m  # orthonormal basis scaled per axis
    assert torch.allclose(gram, torch.diag(PZ.OPPONENT_SCALE ** 2), atol=1e-6)
    assert PZ.color_matrix(1, True) is None and PZ.color_matrix(3, False) is None
    p = PZ.init_fourier(2, 3, 16, [1, 2])
    assert p.shape == (2, 3, 16, 9, 2)
    img = PZ.render_fourier(p)
    assert img.shape == (2, 3, 16, 16) and float((img - 0.5).abs().max()) < 0.05  # nearly grey at start
    assert torch.equal(PZ.init_fourier(1, 3, 16, [2]), p[1:])  # per-image generator
    big = PZ.render_fourier(torch.randn(1, 3, 16, 9, 2) * 50)
    assert float(big.min()) >= 0 and float(big.max()) <= 1
    # luminance-only coefficients give a grey image (R = G = B)
    lum = torch.zeros(1, 3, 16, 9, 2)
    lum[:, 0] = torch.randn(16, 9, 2)
    g = PZ.render_fourier(lum)
    assert torch.allclose(g[:, 0], g[:, 1], atol=1e-6) and torch.allclose(g[:, 1], g[:, 2], atol=1e-6)


@pytest.mark.slow
def test_fourier_inversion(clip):
    one = RARE.subset(["Moongate"])
    res = invert(clip, one, {**FAST, "steps": 40, "parametrization": "fourier"}, seed=0, progress=False)
    assert res.images.shape == (2, 3, 64, 64) and res.layer is None
    assert float(res.images.min()) > 0 and float(res.images.max()) < 1
    assert bool((res.score > res.initial_score + 0.1).all()), (res.initial_score, res.score)
    plain = invert(clip, one, {**FAST, "steps": 40}, seed=0, progress=False)
    # the 1/f basis gives smoother images than pixel steps do
    from medkt.transfer import augment as A
    assert float(A.total_variation(res.images).mean()) < float(A.total_variation(plain.images).mean())
    together = invert(clip, RARE.subset(["Moongate", "Tonometer"]), {**FAST, "steps": 40, "parametrization": "fourier"},
                      seed=0, progress=False)
    assert torch.allclose(together.for_concept("Moongate"), res.images, atol=1e-4)
    with pytest.raises(ConfigError, match="fourier cannot be combined"):
        invert(clip, one, {**FAST, "parametrization": "fourier", "progressive": [0.5, 1.0]}, progress=False)


# ---------------------------------------------------------------------- progressive encoder
def test_encoder_at_swaps_positions_and_restores(clip):
    v = clip.model.visual
    original = v.positional_embedding
    before = state_of(clip)
    assert encoder_size(clip, 40) == 32 and encoder_size(clip, 8) == 16 and encoder_size(clip, 64) == 64
    with encoder_at(clip, 32):
        assert v.positional_embedding.shape == (1 + 2 * 2, original.shape[1])
        z = clip.encode_image(torch.rand(2, 3, 32, 32))
        assert z.shape == (2, clip.embed_dim) if hasattr(clip, "embed_dim") else z.shape[0] == 2
    assert v.positional_embedding is original
    after = state_of(clip)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(resized_positions(original.detach(), 4), original.detach())  # native grid: unchanged
    with pytest.raises(ConfigError, match="multiple of the patch"):
        with encoder_at(clip, 40):
            pass


def test_progressive_encoder_inversion_counts_work(clip):
    cfg = {**FAST, "steps": 20, "progressive": [0.5, 0.75, 1.0], "progressive_at": [0.25, 0.5],
           "progressive_encoder": True}
    res = invert(clip, RARE.subset(["Gyroscope"]), cfg, seed=0, progress=False)
    assert res.work == {32: 10, 48: 10, 64: 20}  # 2 images x (5, 5, 10) steps at 32, 48, 64 px
    assert res.images.shape == (2, 3, 64, 64)
    assert bool((res.score > res.initial_score).all())
    with pytest.raises(ConfigError, match="progressive schedule"):
        invert(clip, RARE, {**FAST, "progressive_encoder": True}, progress=False)


def test_progressive_encoder_refuses_other_towers():
    hf = create_model("tiny-hf-clip")
    with pytest.raises(ConfigError, match="open_clip ViT"):
        invert(hf, RARE.subset(["Moongate"]), {**FAST, "progressive": [0.5, 1.0], "progressive_encoder": True},
               progress=False)


# ---------------------------------------------------------------------- config, preset, fingerprint
def test_fast_preset_and_option_validation(clip):
    cfg = load_transfer_config(preset="fast")
    inv = cfg.inversion
    assert inv.steps == 300 and inv.progressive_encoder and inv.early_stop.patience == 100
    assert inv.objective == "cosine" and inv.tv_weight == 0.005  # the paper recipe otherwise
    cfg = load_transfer_config(preset="fast", overrides=["inversion.early_stop.patience=50"])
    assert cfg.inversion.early_stop.patience == 50
    bad = [({"warmup": 1.5}, "warmup"), ({"schedule": "step"}, "schedule"),
           ({"early_stop": {"patience": 30, "check_every": 25}}, "multiple"),
           ({"early_stop": {"patience": 25, "ema": 1.0}}, "ema"), ({"parametrization": "wavelet"}, "parametrization")]
    for change, match in bad:
        with pytest.raises(ConfigError, match=match):
            invert(clip, RARE, {**FAST, **change}, progress=False)


def test_fingerprint_ignores_new_options_at_their_defaults():
    d = config_fingerprint(InversionConfig())
    assert not {"warmup", "early_stop", "progressive_encoder", "fourier_decay", "color_decorrelation"} & set(d)
    assert d["steps"] == 5000
    d2 = config_fingerprint(InversionConfig(warmup=0.1, early_stop=EarlyStopConfig(patience=100)))
    assert d2["warmup"] == 0.1 and d2["early_stop"]["patience"] == 100


# ---------------------------------------------------------------------- default for small models
def test_small_model_rule(clip, monkeypatch):
    from medkt.transfer import budget
    got = budget.small_model_default(clip)
    assert got["preset"] == "fast" and 0 < got["visual_params"] <= budget.SMALL_VISUAL_PARAMS
    assert budget.small_model_default(create_model("tiny-hf-clip")) is None  # not an open_clip ViT
    monkeypatch.setattr(budget, "SMALL_VISUAL_PARAMS", got["visual_params"] - 1)
    assert budget.small_model_default(clip) is None  # above the bound: the paper recipe stays
    assert budget.applies(None, None, None, ["finetune.lr=1e-4"])
    assert not budget.applies("paper", None, None)
    assert not budget.applies(None, None, 200)
    assert not budget.applies(None, None, None, ["inversion.tv_weight=0"])


@pytest.mark.slow
def test_invert_api_uses_fast_for_small_models_without_a_recipe(clip, tmp_path):
    import json
    from medkt.transfer.protocol import invert as api_invert
    res = api_invert(clip, RARE, only=["Moongate"], images_per_concept=1, out_dir=tmp_path / "inv", progress=False)
    assert {32, 48} <= set(res.work) <= {32, 48, 64}  # the fast preset's progressive encoder ran
    assert int(res.steps_run.max()) <= 300  # (early stopping may end it before the 64 px stage)
    rec = json.loads((tmp_path / "inv" / "run.json").read_text())
    assert rec["small_model_default"]["preset"] == "fast"
    assert rec["config"]["inversion"]["progressive_encoder"] and rec["config"]["inversion"]["steps"] == 300
    paper = api_invert(clip, RARE, only=["Moongate"], images_per_concept=1, steps=3, progress=False)
    assert paper.work == {64: 3}  # --steps given: the paper recipe at that budget
