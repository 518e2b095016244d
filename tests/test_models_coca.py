"""tiny-coca: contrastive encoders, own greedy/beam captioning, caption loss, round trip."""
import pytest
import torch

from medkt.errors import CapabilityError, ConfigError
from medkt.models import create_model
from medkt.models.base import CAPTION
from medkt.models.open_clip_loader import save_local_dir


@pytest.fixture(scope="module")
def coca():
    return create_model("tiny-coca")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_encoders_shapes_and_norms(coca, pixels):
    assert coca.family == "coca" and coca.supports(CAPTION) and coca.image_size == 64
    zi = coca.encode_image(pixels)
    zt = coca.encode_texts(["a chest x-ray", "a brain mri"])
    assert zi.shape == (2, 64) and zt.shape == (2, 64)
    assert torch.allclose(zi.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(zt.norm(dim=-1), torch.ones(2), atol=1e-5)
    raw = coca.encode_texts(["a chest x-ray"], normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1))  # raw really is un-normalised
    assert torch.allclose(coca.encode_image(pixels, normalize=False).norm(dim=-1) > 0, torch.ones(2, dtype=bool))


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_generate_returns_caption_strings(coca, pixels, method):
    caps = coca.generate(pixels, method=method, max_len=6)
    assert isinstance(caps, list) and len(caps) == 2
    assert all(isinstance(c, str) and c for c in caps)
    assert all("<start_of_text>" not in c and "<end_of_text>" not in c for c in caps)


def test_beam_of_one_equals_greedy(coca, pixels):
    lat, embs = coca.model._encode_image(pixels[:1])
    greedy = coca._greedy(lat, embs, 6, 1)[0]
    beam = coca._beam(lat, embs, 6, 1, 1, 1.0)
    assert greedy[:len(beam)] == beam


def test_unknown_method(coca, pixels):
    with pytest.raises(ConfigError, match="greedy"):
        coca.generate(pixels, method="nucleus")


def test_caption_loss_and_decoder_group(coca, pixels):
    loss = coca.caption_loss(pixels, ["a chest x-ray", "an mri"])
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    dec = coca.parameters_of("decoder")
    assert dec and {id(p) for p in dec} == {id(p) for p in coca.model.text_decoder.parameters()}
    coca.zero_grad()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec)
    groups = coca.parameter_groups()
    assert sum(len(v) for v in groups.values()) == len(list(coca.parameters()))
    coca.zero_grad()


def test_local_dir_round_trip(coca, pixels, tmp_path):
    save_local_dir(coca, tmp_path, "tiny-coca")
    again = create_model("tiny-coca", weights=str(tmp_path))
    assert type(again).__name__ == "CocaModel" and again.weights.startswith("local-dir:")
    with torch.no_grad():
        assert torch.equal(coca.encode_image(pixels), again.encode_image(pixels))
    assert again.generate(pixels, max_len=4) == coca.generate(pixels, max_len=4)


def test_clip_has_no_caption():
    clip = create_model("tiny-clip")
    with pytest.raises(CapabilityError, match="caption"):
        clip.generate(torch.zeros(1, 3, 64, 64))
