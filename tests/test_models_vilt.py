"""ViLT: ITM score (single logit), MLM logits, explicit pixel_mask, save/load."""
import pytest
import torch

from medkt.errors import CapabilityError
from medkt.models import create_model
from medkt.models.base import ITM, MLM
from medkt.models.vilt import save_vilt


@pytest.fixture(scope="module")
def vilt():
    return create_model("tiny-vilt")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))


def test_itm_and_mlm(vilt, pixels):
    assert vilt.supports(ITM) and vilt.supports(MLM) and vilt.mean == (0.5, 0.5, 0.5)
    tok = vilt.tokenize(["a chest x-ray", "a [MASK] of the brain"])
    assert tok["input_ids"].shape == (2, 32) and "token_type_ids" in tok
    with torch.no_grad():
        s = vilt.match_score(pixels, tok)
        logits = vilt.mlm_logits(pixels, tok)
        assert s.shape == (2,) and torch.isfinite(s).all()
        assert logits.shape == (2, 32, vilt.tokenizer.vocab_size)
        # explicit all-ones mask equals the default; a non-square image works with its own mask
        ones = torch.ones(2, 64, 64, dtype=torch.long)
        assert torch.allclose(vilt.match_score(pixels, tok, ones), s, atol=1e-5)
        wide = torch.randn(2, 3, 64, 96)
        assert vilt.match_score(wide, tok).shape == (2,)
    with pytest.raises(CapabilityError):
        vilt.encode_image(pixels)


def test_gradients_reach_pixels(vilt, pixels):
    x = pixels.clone().requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        vilt.match_score(x, vilt.tokenize(["lung", "heart"])), torch.ones(2))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    groups = vilt.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(vilt.parameters()))
    vilt.zero_grad()


def test_save_load_round_trip(vilt, pixels, tmp_path):
    save_vilt(vilt, tmp_path)
    again = create_model("tiny-vilt", weights=str(tmp_path))
    assert again.supports(ITM) and again.supports(MLM)
    tok = vilt.tokenize(["pleural effusion"] * 2)
    with torch.no_grad():
        assert torch.allclose(again.match_score(pixels, tok), vilt.match_score(pixels, tok), atol=1e-5)
        assert torch.allclose(again.mlm_logits(pixels, tok), vilt.mlm_logits(pixels, tok), atol=1e-4)
