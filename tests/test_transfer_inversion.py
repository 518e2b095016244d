"""Inversion on tiny models: objective, regularisers, determinism, batching, resume."""
from __future__ import annotations

import pytest
import torch

from medkt.errors import ConfigError
from medkt.models import create_model
from medkt.transfer import invert, load_concepts, state_of
from medkt.transfer import augment as A
from medkt.transfer import inversion as inv_mod

RARE = load_concepts("rare")
FAST = {"steps": 25, "images_per_concept": 2, "log_every": 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Crash(RuntimeError):
    """Stands in for a kill / Ctrl-C in the middle of a run."""


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return create_model("tiny-clip")


def test_counter_rng_and_per_sample_augment():
    seeds = torch.tensor([3, 5, 7])
    u = A.counter_uniform(seeds, 4, 6)
    assert u.shape == (3, 6) and float(u.min()) >= 0 and float(u.max()) < 1
    assert torch.equal(u, A.counter_uniform(seeds, 4, 6))
    assert torch.equal(u[1:2], A.counter_uniform(seeds[1:2], 4, 6))  # independent of batch mates
    assert not torch.equal(u, A.counter_uniform(seeds, 5, 6))
    from medkt.transfer.config import AffineConfig
    x = torch.rand(3, 3, 16, 16)
    aff = AffineConfig()
    full = A.augment(x, seeds, 2, out_size=16, copies=2, affine=aff, color_shift=(0.2, 0.2))
    one = A.augment(x[1:2], seeds[1:2], 2, out_size=16, copies=2, affine=aff, color_shift=(0.2, 0.2))
    assert full.shape == (6, 3, 16, 16) and torch.allclose(full[2:4], one, atol=1e-6)
    ident = A.augment(x, seeds, 2, out_size=16, affine=AffineConfig(p=0.0))
    assert torch.allclose(ident, x, atol=1e-5)
    assert A.augment(x, seeds, 0, out_size=32).shape == (3, 3, 32, 32)


def test_total_variation():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(A.total_variation(flat), torch.zeros(2))
    noise = torch.rand(1, 3, 8, 8)
    smooth = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 3, 8, 8)
    assert float(A.total_variation(noise)) > float(A.total_variation(smooth)) > 0


def test_inversion_raises_similarity_and_leaves_model_untouched(clip):
    before = state_of(clip)
    flags = [p.requires_grad for p in clip.parameters()]
    res = invert(clip, RARE, {**FAST, "steps": 40}, seed=0, progress=False)
    assert res.images.shape == (6, 3, 64, 64)
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    assert res.concept_names == ["Moongate"] * 2 + ["Tonometer"] * 2 + ["Gyroscope"] * 2
    assert res.captions[0] == RARE[0].descriptions[0]
    assert bool((res.score > res.initial_score + 0.2).all()), (res.initial_score, res.score)
    assert float(res.score.mean()) > 0.4 > float(res.initial_score.abs().max())
    assert len(res.history["Moongate"]) == 9 and res.history["Moongate"][-1]["step"] == 39
    after = state_of(clip)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in clip.parameters()] == flags


def test_tv_regularisation_lowers_tv(clip):
    base = {**FAST, "affine": None}
    plain = invert(clip, RARE.subset(["Moongate"]), {**base, "tv_weight": 0.0}, progress=False)
    reg = invert(clip, RARE.subset(["Moongate"]), {**base, "tv_weight": 0.05}, progress=False)
    assert float(A.total_variation(reg.images).mean()) < 0.9 * float(A.total_variation(plain.images).mean())


def test_same_seed_identical_and_batch_composition_independent(clip):
    one = RARE.subset(["Tonometer"])
    a = invert(clip, one, FAST, seed=3, progress=False)
    b = invert(clip, one, FAST, seed=3, progress=False)
    c = invert(clip, one, FAST, seed=4, progress=False)
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, c.images)
    together = invert(clip, RARE, FAST, seed=3, progress=False)
    assert torch.allclose(together.for_concept("Tonometer"), a.images, atol=1e-4)


@pytest.mark.parametrize("switch,check", [
    ({"objective": "l2_raw"}, "differs"),
    ({"objective": "l2_normalized"}, "differs"),
    ({"ensemble": 3}, "differs"),
    ({"color_shift": [0.3, 0.3]}, "differs"),
    ({"affine": None}, "differs"),
    ({"progressive": [0.5, 1.0], "progressive_at": [0.5]}, "differs"),
    ({"grad_clip": 1e-3, "schedule": "constant"}, "small_steps"),
    ({"init": "normal", "steps": 1, "lr": 1e-9}, "normal_init"),
])
def test_ablation_switches_change_what_they_say(clip, switch, check):
    one = RARE.subset(["Gyroscope"])
    ref = invert(clip, one, FAST, seed=1, progress=False)
    res = invert(clip, one, {**FAST, **switch}, seed=1, progress=False)
    assert res.images.shape == ref.images.shape == (2, 3, 64, 64)
    if check == "differs":
        assert not torch.allclose(res.images, ref.images, atol=1e-3)
    elif check == "small_steps":  # per-image grad norm clipped to 1e-3, Adam lr 0.1: bounded change
        start = A.noise_images(2, 3, 64, [A.image_seed(1, "Gyroscope", k) for k in range(2)])
        assert float((res.images - start).abs().max()) <= 0.1 * FAST["steps"] + 1e-5
    else:  # N(0,1) in normalised space: std in [0,1] space ~ the model's std, not uniform's 0.29
        assert abs(float(res.images.mean()) - 0.45) < 0.1 and float(res.images.std()) < 0.28


def test_relaxed_inversion_of_top_layers(clip):
    res = invert(clip, RARE.subset(["Moongate"]), {**FAST, "parametrization": "tokens", "relaxed_layers": 2,
                                                    "lr": 0.05}, progress=False)
    assert res.layer == clip.num_visual_layers - 2
    assert res.images.shape[0] == 2 and res.images.dim() == 3  # tokens [N, T, D]
    assert bool((res.score > res.initial_score).all())
    with pytest.raises(ConfigError, match="relaxed_layers"):
        invert(clip, RARE, {**FAST, "parametrization": "tokens", "relaxed_layers": 9}, progress=False)


def test_resume_after_injected_interruption(clip, tmp_path, monkeypatch):
    cfg = {**FAST, "batch_images": 2}  # one concept per optimisation batch
    full = invert(clip, RARE, cfg, seed=0, out_dir=tmp_path / "full", progress=False)
    real = inv_mod.optimise
    calls, crash = [], [True]

    def flaky(problem, *a, **k):
        calls.append([c.name for c in problem.owners][::2])
        if crash[0] and len(calls) == 2:
            raise Crash("injected")
        return real(problem, *a, **k)

    monkeypatch.setattr(inv_mod, "optimise", flaky)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        invert(clip, RARE, cfg, seed=0, out_dir=out, progress=False)
    assert (out / "images" / "moongate" / "001.png").exists()
    assert not (out / ".medkt" / "done" / "invert-tonometer.json").exists()
    calls.clear()
    crash[0] = False
    res = invert(clip, RARE, cfg, seed=0, out_dir=out, resume=True, progress=False)
    assert calls == [["Tonometer"], ["Gyroscope"]] and res.resumed == ["Moongate"]
    assert torch.equal(res.images, full.images)
    with pytest.raises(ConfigError, match="different settings"):
        invert(clip, RARE, {**cfg, "tv_weight": 0.1}, seed=0, out_dir=out, resume=True, progress=False)


def test_patchify_fast_path_is_the_same_math(clip):
    from medkt.transfer.fastpath import patchify_convs
    x = clip.normalize(torch.rand(3, 3, 64, 64))
    with torch.no_grad():
        ref = clip.encode_image(x)
        with patchify_convs(clip) as n:
            fast = clip.encode_image(x)
        after = clip.encode_image(x)
    assert n == 1 and torch.allclose(fast, ref, atol=1e-5) and torch.equal(after, ref)
    assert "forward" not in clip.model.visual.conv1.__dict__
