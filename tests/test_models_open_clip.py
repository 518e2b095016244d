"""open_clip family: tiny-clip encoders, in-memory wrapping, local-dir/file round trips, bad input."""
import pytest
import torch

from medkt.errors import CheckpointMismatchError, UnknownNameError
from medkt.models import create_model, from_open_clip, get_spec
from medkt.models.open_clip_loader import save_local_dir


@pytest.fixture(scope="module")
def clip():
    return create_model("tiny-clip")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_tiny_clip_encoders(clip, pixels):
    zi, zt = clip.encode_image(pixels), clip.encode_texts(["a", "chest x-ray", "brain"])
    assert zi.shape == (3, 64) and zt.shape == (3, 64)
    assert torch.allclose(zi.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(zt.norm(dim=-1), torch.ones(3), atol=1e-5)
    raw = clip.encode_image(pixels, normalize=False)
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=-1), zi, atol=1e-6)
    assert clip.logit_scale.ndim == 0 and clip.logit_scale.item() > 1


def test_wrapped_in_memory_model_matches_direct_call(pixels):
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    torch.manual_seed(3)
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer("tiny-clip")
    wrapped = from_open_clip(model, tokenizer, preprocess)
    assert wrapped.image_size == 64 and wrapped.weights == "in-memory"
    texts = ["pleural effusion", "no finding"]
    with torch.no_grad():
        direct_i = model.encode_image(pixels, normalize=True)
        direct_t = model.encode_text(tokenizer(texts), normalize=True)
        assert torch.allclose(wrapped.encode_image(pixels), direct_i, atol=1e-6)
        assert torch.allclose(wrapped.encode_texts(texts), direct_t, atol=1e-6)
        assert torch.allclose(wrapped.logit_scale, model.logit_scale.exp())


def test_local_dir_and_file_round_trip(clip, pixels, tmp_path):
    save_local_dir(clip, tmp_path, "tiny-clip")
    from_dir = create_model("tiny-clip", weights=str(tmp_path))
    from_file = create_model("tiny-clip", weights=str(tmp_path / "open_clip_model.safetensors"))
    with torch.no_grad():
        ref = clip.encode_image(pixels)
        assert torch.equal(from_dir.encode_image(pixels), ref)
        assert torch.equal(from_file.encode_image(pixels), ref)
        assert torch.equal(from_dir.encode_texts(["x-ray"]), clip.encode_texts(["x-ray"]))


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownNameError) as e:
        get_spec("tiny-clp")
    assert "tiny-clip" in str(e.value)
    with pytest.raises(UnknownNameError, match="medclip-vit"):
        create_model("medclip_vit")


def test_mismatched_open_clip_checkpoint(clip, tmp_path):
    sd = {k: v for k, v in clip.model.state_dict().items() if not k.startswith("visual.transformer")}
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError) as e:
        create_model("tiny-clip", weights=str(path))
    assert "partial.pt" in str(e.value) and "visual.transformer" in str(e.value)
