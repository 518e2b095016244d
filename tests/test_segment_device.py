"""GPU path pieces that are testable on the CPU (issue 15 item 5): M2IB noise from per-image
CPU generators (so CPU and GPU maps use the same noise), bf16 autocast for M2IB and the SAM
encoder, SAM encoding batched across slices equal to per-slice encoding, and ``--amp``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medkt.errors import MedktError
from medkt.segmentation import m2ib as M
from medkt.segmentation.m2ib import M2IBConfig, m2ib_visual
from medkt.segmentation.sam_segmenter import SamConfig, SamSegmenter

CFG = dict(beta=1.0, steps=4, samples=3)


@pytest.fixture(scope="module")
def clip():
    from medkt.models import create_model
    return create_model("tiny-clip")


@pytest.fixture(scope="module")
def pixels(clip):
    return clip.normalize(torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


def test_noise_is_drawn_per_image_on_cpu_generators_then_moved():
    gens = M.make_generators([5, 6])
    assert all(g.device.type == "cpu" for g in gens)
    out = M.draw_noise(gens, (2, 3, 4), "cpu", torch.float32)
    ref = torch.stack([torch.randn((2, 3, 4), generator=torch.Generator().manual_seed(s)) for s in (5, 6)])
    assert torch.equal(out, ref)
    # a second image in the batch never changes the first image's draws
    alone = M.draw_noise(M.make_generators([5]), (2, 3, 4), "cpu", torch.float32)
    assert torch.equal(alone[0], out[0])
    # the requested dtype is applied after drawing in float32 (same values, rounded)
    half = M.draw_noise(M.make_generators([5, 6]), (2, 3, 4), "cpu", torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, ref.to(torch.bfloat16))


def test_parallel_noise_draws_equal_sequential_draws():
    seq = M._draws(M.make_generators([1, 2, 3, 4]), (3, 5, 8), parallel=False)
    par = M._draws(M.make_generators([1, 2, 3, 4]), (3, 5, 8), parallel=True)
    assert torch.equal(seq, par)


def test_m2ib_draws_on_cpu_generators_whatever_the_model_device(clip, pixels, monkeypatch):
    seen = []
    real = M.make_generators
    monkeypatch.setattr(M, "make_generators", lambda seeds, device="cpu": seen.append(str(device)) or
                        real(seeds, device))
    text = clip.encode_texts(["a lung nodule"])
    a = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG), [1, 2, 3])
    b = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG, noise="device"), [1, 2, 3])
    assert seen == ["cpu", "cpu"]  # noise="cpu": CPU generators; noise="device": the model's (here CPU)
    assert torch.equal(a, b)  # on a CPU model both draw the same values


def test_m2ib_bf16_autocast_runs_and_stays_close(clip, pixels):
    text = clip.encode_texts(["a lung nodule"])
    ref = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG), [1, 2, 3])
    bf = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG, amp="bf16"), [1, 2, 3])
    assert bf.dtype == torch.float32 and bf.shape == ref.shape and torch.isfinite(bf).all()
    r = np.corrcoef(ref.flatten().numpy(), bf.flatten().numpy())[0, 1]
    assert r > 0.95, r
    hooked = m2ib_visual(clip, pixels, text, M2IBConfig(**CFG, amp="bf16", cache_prefix=False), [1, 2, 3])
    assert np.corrcoef(ref.flatten().numpy(), hooked.flatten().numpy())[0, 1] > 0.95


@pytest.mark.parametrize("field, value", [("noise", "gpu"), ("amp", "fp8")])
def test_unknown_noise_or_amp_is_a_typed_error(field, value):
    with pytest.raises(MedktError):
        M2IBConfig(**{field: value}).validate()
    if field == "amp":
        with pytest.raises(MedktError):
            SamConfig(amp=value).validate()


@pytest.fixture(scope="module")
def sam():
    from medkt.models import create_model
    return create_model("tiny-sam")


def _slices(n=5):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = rng.random((80, 100)).astype(np.float32) * 0.3
        a[20 + i:50, 30:70 - i] = 1.0
        out.append(a)
    return out


def test_sam_encoding_batched_across_slices_equals_per_slice(sam):
    from medkt.segmentation.prompts import Prompts
    imgs = _slices()
    one = SamSegmenter(sam, SamConfig(model="tiny-sam", embed_batch_size=1)).embed(imgs)
    many = SamSegmenter(sam, SamConfig(model="tiny-sam", embed_batch_size=4)).embed(imgs)
    for a, b in zip(one, many):
        assert torch.allclose(a.embedding, b.embedding, atol=1e-5, rtol=1e-5)
    seg = SamSegmenter(sam, SamConfig(model="tiny-sam", keep_components=False))
    p = Prompts(np.array([[25.0, 15.0, 75.0, 55.0]]), None, None, n_components=0)
    for a, b in zip(one, many):
        assert np.array_equal(seg.decode(a, p).mask, seg.decode(b, p).mask)


def test_sam_bf16_encoder_gives_float32_embeddings_close_to_fp32(sam):
    imgs = _slices(2)
    ref = SamSegmenter(sam, SamConfig(model="tiny-sam")).embed(imgs)
    bf = SamSegmenter(sam, SamConfig(model="tiny-sam", amp="bf16")).embed(imgs)
    for a, b in zip(ref, bf):
        assert b.embedding.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(a.embedding.flatten(), b.embedding.flatten(), dim=0)
        assert cos > 0.99, float(cos)


def test_cli_amp_flag_sets_both_stages(tmp_path, monkeypatch):
    import medkt.segmentation.api as api
    from medkt.cli.main import main
    seen = {}

    def fake_segment(inputs, **kw):
        seen.update(kw)
        raise SystemExit(0)
    monkeypatch.setattr(api, "segment", fake_segment)
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path), "-o", str(tmp_path / "o"), "--prompt", "x", "--amp", "bf16",
              "--device", "cuda", "--set", "m2ib.steps=2"])
    assert seen["overrides"] == ["m2ib.steps=2", "m2ib.amp=bf16", "sam.amp=bf16"]
    assert seen["device"] == "cuda"
