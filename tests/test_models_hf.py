"""Hugging Face CLIPModel adapter: tiny model, from_hf wrapping, vision tokens, save/load."""
import pytest
import torch

from medkt.errors import ConfigError
from medkt.models import create_model, from_hf
from medkt.models.base import VISUAL_TOKENS
from medkt.models.hf_adapter import build_tiny_hf_clip, save_hf_clip


@pytest.fixture(scope="module")
def hf():
    return create_model("tiny-hf-clip")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def test_encoders_shapes_and_norms(hf, pixels):
    zi, zt = hf.encode_image(pixels), hf.encode_texts(["a chest x-ray", "brain mri"])
    assert zi.shape == (2, 64) and zt.shape == (2, 64)
    assert torch.allclose(zi.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(zt.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert hf.image_size == 64 and hf.mean[0] == pytest.approx(0.48145466)


def test_from_hf_matches_direct_call(pixels):
    model, proc = build_tiny_hf_clip(seed=5)
    wrapped = from_hf(model, proc)
    enc = proc.tokenizer(["lung nodule"], padding="max_length", max_length=32, return_tensors="pt")
    with torch.no_grad():
        out_i = model.get_image_features(pixel_values=pixels)
        direct_i = out_i if torch.is_tensor(out_i) else out_i.pooler_output
        out_t = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        direct_t = out_t if torch.is_tensor(out_t) else out_t.pooler_output
        assert torch.allclose(wrapped.encode_image(pixels, normalize=False), direct_i, atol=1e-6)
        assert torch.allclose(wrapped.encode_texts(["lung nodule"], normalize=False), direct_t, atol=1e-6)
    with pytest.raises(ConfigError):
        from_hf(torch.nn.Linear(2, 2), proc)


def test_visual_tokens_consistent(hf, pixels):
    assert hf.supports(VISUAL_TOKENS) and hf.num_visual_layers == 2
    lay = hf.visual_layout(1)
    tok = hf.visual_tokens(pixels, 1)
    assert tok.shape == (2, lay.n_prefix + lay.grid_h * lay.grid_w, 64)
    with torch.no_grad():
        assert torch.allclose(hf.encode_image_from(tok, 1), hf.encode_image(pixels, normalize=False), atol=1e-5)
        states = hf.visual_hidden_states(pixels)
        assert len(states) == 3 and torch.allclose(states[1], tok, atol=1e-6)
        handle = hf.hook_after_layer(2, lambda t: t * 0)
        hooked = hf.encode_image(pixels, normalize=False)
        handle.remove()
        assert not torch.allclose(hooked, hf.encode_image(pixels, normalize=False))


def test_parameter_groups_partition(hf):
    groups = hf.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(hf.parameters()))
    assert groups["visual_proj"] and groups["text_proj"] and groups["logit_scale"]


def test_save_pretrained_round_trip(hf, pixels, tmp_path):
    save_hf_clip(hf, tmp_path)
    again = create_model("tiny-hf-clip", weights=str(tmp_path))
    ref = hf.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.model.state_dict().items())
    with torch.no_grad():  # attention kernels may differ after from_pretrained (eager vs sdpa)
        assert torch.allclose(again.encode_image(pixels), hf.encode_image(pixels), atol=1e-5)
        assert torch.allclose(again.encode_texts(["pleural effusion"]), hf.encode_texts(["pleural effusion"]),
                              atol=1e-5)
