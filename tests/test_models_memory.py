"""One copy of the weights at load (medkt.models.memory): the random init is released before a
checkpoint's tensors become the parameters, for medkt's own loads (SAM) and open_clip's."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medkt.errors import CheckpointMismatchError
from medkt.models import create_model
from medkt.models.checkpoints import load_strict
from medkt.models.memory import adopt_state_dict, open_clip_one_copy_loads, release_parameters


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    net.register_buffer("scale", torch.tensor([2.0]), persistent=False)  # not in any checkpoint
    net[2].weight.requires_grad_(False)
    return net


def test_release_then_adopt_makes_the_checkpoint_tensors_the_parameters():
    net, sd = _net(0), _net(1).state_dict()
    dtypes = release_parameters(net)
    assert dtypes is not None and all(p.is_meta for p in net.parameters())
    assert net.scale.device.type == "cpu" and net.scale.item() == 2.0  # buffers are kept
    adopt_state_dict(net, sd, dtypes)
    for name, p in net.named_parameters():
        assert p.data_ptr() == sd[name].data_ptr(), name  # adopted, not copied: one copy in memory
        assert isinstance(p, nn.Parameter) and not p.is_meta
    assert not net[2].weight.requires_grad and net[0].weight.requires_grad
    x = torch.randn(3, 4)
    assert torch.equal(net(x), _net(1)(x))


def test_adopt_casts_a_half_precision_checkpoint_to_the_model_dtype():
    net = _net(0)
    sd = {k: v.half() for k, v in _net(1).state_dict().items()}
    adopt_state_dict(net, sd, release_parameters(net))
    for name, p in net.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, sd[name].float()), name


def test_release_declines_tied_parameters():
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    before = {n: p.clone() for n, p in tied.named_parameters()}
    assert release_parameters(tied) is None
    assert all(torch.equal(p, before[n]) for n, p in tied.named_parameters())
    assert tied[1].weight is tied[0].weight


def test_a_mismatch_after_release_still_names_the_file(tmp_path):
    net = _net(0)
    sd = _net(1).state_dict()
    sd.pop("0.bias")
    with pytest.raises(CheckpointMismatchError, match="ckpt.pt.*0.bias"):
        load_strict(net, sd, tmp_path / "ckpt.pt", released=release_parameters(net))


def test_sam_builder_loads_its_checkpoint_in_place(tmp_path, monkeypatch):
    import medkt.models.memory as memory
    ref = create_model("tiny-sam")
    path = tmp_path / "sam.pth"
    torch.save(ref.sam.state_dict(), path)
    released = []
    real = memory.release_parameters
    monkeypatch.setattr(memory, "release_parameters", lambda m: released.append(m) or real(m))
    loaded = create_model("tiny-sam", weights=str(path))
    assert released == [loaded.sam]
    ref_sd = ref.sam.state_dict()
    for name, v in loaded.sam.state_dict().items():
        assert torch.equal(v, ref_sd[name]), name
    pixels = ref.prepare_image(torch.rand(40, 48).numpy()).pixels
    with torch.no_grad():
        assert torch.equal(loaded.embed(pixels), ref.embed(pixels))


def test_open_clip_checkpoint_loads_with_one_copy_and_the_wrapper_is_removed(tmp_path, monkeypatch):
    import open_clip.factory as factory
    import medkt.models.memory as memory
    ref = create_model("tiny-clip")
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    original = factory.load_checkpoint
    released = []
    real = memory.release_parameters
    monkeypatch.setattr(memory, "release_parameters", lambda m: released.append(type(m).__name__) or real(m))
    loaded = create_model("tiny-clip", weights=str(path))
    assert released == ["CLIP"] and factory.load_checkpoint is original
    assert not any(p.is_meta for p in loaded.model.parameters())
    ref_sd = ref.model.state_dict()
    for name, v in loaded.model.state_dict().items():
        assert torch.equal(v, ref_sd[name]), name
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), ref.encode_image(pixels))
        assert torch.equal(loaded.encode_texts(["x-ray"]), ref.encode_texts(["x-ray"]))


def test_open_clip_wrapper_is_removed_after_an_error():
    import open_clip.factory as factory
    original = factory.load_checkpoint
    with pytest.raises(ValueError), open_clip_one_copy_loads():
        assert factory.load_checkpoint is not original
        raise ValueError("boom")
    assert factory.load_checkpoint is original


@pytest.mark.parametrize("name, released", [("w.pt", True), ("w.safetensors", True), ("w.npz", False)])
def test_open_clip_wrapper_releases_only_for_state_dict_files(monkeypatch, name, released):
    """big_vision ``.npz`` weights are copied into the parameters by open_clip: never released."""
    import open_clip.factory as factory
    seen = []

    def spy(model, path, strict=True, *args, **kwargs):
        seen.append(all(p.is_meta for p in model.parameters()))

    monkeypatch.setattr(factory, "load_checkpoint", spy)
    net = _net(0)
    with open_clip_one_copy_loads():
        factory.load_checkpoint(net, name, strict=True)
        factory.load_checkpoint(_net(0), name, strict=False)
    assert seen == [released, False]
