"""Fine-tuning: the degenerate-loss trap, frozen groups, ablations, LoRA, weights files."""
from __future__ import annotations

import pytest
import torch

from medkt.errors import ConfigError
from medkt.models import create_model
from medkt.transfer import (apply_delta, finetune, invert, load_concepts, load_finetuned, restore,
                            state_of)
from medkt.transfer.losses import clip_loss, supcon_loss

RARE = load_concepts("rare")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images():
    """Inverted images of the three rare concepts (3 each) from a tiny CLIP."""
    m = create_model("tiny-clip")
    return invert(m, RARE, {"steps": 15, "images_per_concept": 3}, seed=0, progress=False)


@pytest.fixture
def clip():
    return create_model("tiny-clip")


def _groups(model, *groups):
    ids = {id(p) for p in model.parameters_of(*groups)}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def _changed(before, model):
    now = dict(model.named_parameters())
    return {n for n in before if not torch.equal(before[n], now[n])}


def test_clip_infonce_is_degenerate_with_one_caption_supcon_is_not():
    torch.manual_seed(0)
    img = torch.randn(4, 16, requires_grad=True)
    txt = torch.randn(1, 16).expand(4, 16)  # one concept: every caption equal
    scale = torch.tensor(100.0)
    n_img, n_txt = torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)
    logits = scale * n_img @ n_txt.t()
    i2t = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    g_i2t, = torch.autograd.grad(i2t, img)
    assert float(g_i2t.abs().max()) < 1e-5  # every row holds 4 equal logits: no gradient at all
    # the symmetric loss as a function of the image-caption similarities s_i: its gradient
    # is not zero but sums to zero, so the mean similarity cannot rise (it only reshuffles)
    sims = (n_img @ n_txt[0]).detach().requires_grad_(True)
    logits = scale * sims[:, None].expand(4, 4)
    sym = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(4))
                 + torch.nn.functional.cross_entropy(logits.t(), torch.arange(4)))
    g_s, = torch.autograd.grad(sym, sims)
    assert float(g_s.abs().max()) > 1e-3 and abs(float(g_s.sum())) < 1e-5

    def mean_sim_after_step(loss_fn, lr=1e-4):
        f = n_img.detach().requires_grad_(True)
        g, = torch.autograd.grad(loss_fn(f), f)
        f2 = torch.nn.functional.normalize(f.detach() - lr * g, dim=-1)
        return float((f2 @ n_txt[0]).mean() - (n_img.detach() @ n_txt[0]).mean())

    d_clip = mean_sim_after_step(lambda f: clip_loss(f, txt, scale))
    d_sup = mean_sim_after_step(lambda f: supcon_loss(f, txt, 0.07))
    # one step of each on unit features: supcon raises the mean similarity; the symmetric
    # loss leaves only a small residue (from projecting onto the sphere), of either sign
    assert d_sup > 1e-4 and abs(d_clip) < 0.1 * d_sup, (d_clip, d_sup)


def test_single_concept_batch_moves_visual_weights_and_raises_similarity(clip, images):
    one = images.for_concept("Moongate")
    cap = ["A moongate is a perfectly circular archway"] * one.shape[0]
    before = state_of(clip)
    with torch.no_grad():
        t = clip.encode_texts(cap[:1])
        s0 = float((clip.encode_image(clip.normalize(one)) @ t.t()).mean())
    res = finetune(clip, one, cap, {"lr": 1e-3, "batch_size": 3, "epochs": 3}, progress=False)
    changed = _changed(before, clip)
    assert changed and changed <= _groups(clip, "visual")
    with torch.no_grad():
        s1 = float((clip.encode_image(clip.normalize(one)) @ t.t()).mean())
    assert s1 > s0 + 0.05, (s0, s1)
    assert res.steps == 3 and res.losses[-1] < res.losses[0]


def test_visual_only_leaves_text_and_logit_scale_bitwise_unchanged(clip, images):
    before = state_of(clip)
    res = finetune(clip, images, config={"lr": 1e-4}, progress=False)
    changed = _changed(before, clip)
    assert changed == _groups(clip, "visual") - {n for n in changed if False}
    frozen = _groups(clip, "text", "logit_scale")
    assert frozen and not (changed & frozen)
    assert set(res.delta) == _groups(clip, "visual")
    assert res.captions[0].startswith("A moongate is a perfectly circular")
    # delta reproduces the fine-tuned model from the original weights
    fresh = create_model("tiny-clip")
    apply_delta(fresh, res.delta)
    now = dict(clip.named_parameters())
    assert all(torch.allclose(p, now[n], atol=1e-6) for n, p in fresh.named_parameters())
    restore(clip, before)
    assert not _changed(before, clip)


@pytest.mark.parametrize("switch,expect", [
    ({"train": ["text"]}, "text"),
    ({"train": ["visual", "text"]}, "both"),
    ({"train": ["visual_tower"]}, "tower"),
    ({"caption": "description"}, "no_name"),
    ({"loss": "clip_bank"}, "visual"),
])
def test_ablation_switches_change_exactly_what_they_say(clip, images, switch, expect):
    before = state_of(clip)
    res = finetune(clip, images, config={"lr": 1e-4, **switch}, progress=False)
    changed = _changed(before, clip)
    vis, txt = _groups(clip, "visual"), _groups(clip, "text")
    if expect == "text":
        assert changed and changed <= txt
    elif expect == "both":
        assert changed & vis and changed & txt and changed <= vis | txt
    elif expect == "tower":
        assert changed <= _groups(clip, "visual_tower") and not changed & _groups(clip, "visual_proj")
    elif expect == "no_name":
        assert changed <= vis and res.captions[0] == RARE[0].descriptions[0]
        assert not any("moongate" in c.lower() for c in res.captions)
    else:
        assert changed <= vis and changed
    assert "logit_scale" not in " ".join(changed)


def test_clip_bank_needs_negatives(clip, images):
    one = images.for_concept("Tonometer")
    with pytest.raises(ConfigError, match="negative"):
        finetune(clip, one, ["A tonometer is x"] * 3, {"loss": "clip_bank"}, progress=False)
    res = finetune(clip, one, ["A tonometer is x"] * 3, {"loss": "clip_bank", "lr": 1e-4,
                                                          "negative_captions": ["a photo of a dog"]},
                   progress=False)
    assert res.steps == 1


def test_same_seed_same_finetune(images):
    a, b = create_model("tiny-clip"), create_model("tiny-clip")
    ra = finetune(a, images, config={"lr": 1e-4}, seed=5, progress=False)
    rb = finetune(b, images, config={"lr": 1e-4}, seed=5, progress=False)
    assert ra.losses == rb.losses and all(torch.equal(ra.delta[k], rb.delta[k]) for k in ra.delta)


def test_lora_trains_adapters_only_and_saves_the_adapter(clip, images, tmp_path):
    before = state_of(clip)
    names_before = [n for n, _ in clip.named_parameters()]
    res = finetune(clip, images, config={"lr": 1e-3, "lora": {"enabled": True, "rank": 2}}, progress=False)
    assert sorted(n for n, _ in clip.named_parameters()) == sorted(names_before)  # merged: plain model again
    changed = _changed(before, clip)
    targets = {k[: -len(".lora_A")] for k in res.adapter if k.endswith(".lora_A")}
    assert changed == targets and all(("attn" in n or "mlp" in n) for n in targets)
    assert not changed & _groups(clip, "text", "logit_scale")
    assert res.adapter[next(iter(res.adapter))].shape[0] in (2, 64, 192, 256)
    path = res.save(tmp_path / "lora.safetensors", "lora")
    fresh = create_model("tiny-clip")
    meta = load_finetuned(fresh, path)
    assert meta["format"] == "lora"
    now = dict(clip.named_parameters())
    assert all(torch.allclose(p, now[n], atol=1e-5) for n, p in fresh.named_parameters())
    d = res.save(tmp_path / "delta.safetensors", "delta")
    fresh2 = create_model("tiny-clip")
    load_finetuned(fresh2, d)
    assert all(torch.allclose(p, now[n], atol=1e-5) for n, p in fresh2.named_parameters())


def test_finetune_input_errors(clip, images):
    with pytest.raises(ConfigError, match="one caption per image"):
        finetune(clip, images.images, ["x"], progress=False)
    with pytest.raises(ConfigError, match="unknown fine-tuning loss"):
        finetune(clip, images, config={"loss": "nope"}, progress=False)


def test_joined_caption_styles_train_on_both_captions(clip, images):
    res = finetune(clip, images, config={"caption": "definition+name", "lr": 1e-4}, progress=False)
    assert "a photo of a gyroscope" in res.captions
    assert any(c.startswith("A gyroscope is ") for c in res.captions)
    assert len(res.captions) == 6 and res.steps >= 1  # 3 concepts x 2 styles
