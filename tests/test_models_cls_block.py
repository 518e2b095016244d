"""The class-token-only last block (``medkt/models/cls_block.py``) equals the full block.

M2IB's cached path runs ``encode_image_from`` hundreds of times per slice; for towers that
pool token 0 the last block is computed for that token only.  These tests hold the shortcut
to the full block's output and input gradients on an open_clip ViT (tiny-clip) and a timm
trunk built the way BiomedCLIP's ``open_clip_config.json`` builds it (``timm_pool: ""``).
"""
from __future__ import annotations

import pytest
import torch

from medkt.models.cls_block import class_token_block
from medkt.models.open_clip_adapter import OpenClipModel


def _tiny_clip():
    from medkt.models import create_model
    return create_model("tiny-clip")


def _tiny_timm_clip():
    import open_clip
    torch.manual_seed(0)
    net = open_clip.model.CustomTextCLIP(
        embed_dim=32,
        vision_cfg={"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                    "timm_pool": "", "timm_proj": "linear", "image_size": 224},
        text_cfg={"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1})
    return OpenClipModel(net.eval(), tokenizer=None, name="tiny-timm", image_size=224)


@pytest.fixture(params=["open_clip", "timm"])
def model(request):
    return _tiny_clip() if request.param == "open_clip" else _tiny_timm_clip()


def test_pools_class_token(model):
    assert model._pools_class_token()


def test_last_block_row_equals_full_block(model):
    blk = model.visual_blocks()[-1]
    x = model.visual_tokens(torch.randn(3, 3, model.image_size, model.image_size), model.num_visual_layers - 1)
    row = class_token_block(blk, x)
    assert row is not None and row.shape == (3, 1, x.shape[-1])
    torch.testing.assert_close(row, blk(x)[:, :1], rtol=1e-5, atol=1e-5)


def _full_encode(model, tokens, layer):
    """encode_image_from without the shortcut (every block in full)."""
    blocks = model.visual_blocks()
    for blk in blocks[layer:]:
        tokens = blk(tokens)
    v = model.model.visual
    if model._timm:
        return v.head(v.trunk.forward_head(v.trunk.norm(tokens)))
    pooled, _ = v._pool(tokens)
    return pooled @ v.proj


@pytest.mark.parametrize("layer_from_end", [1, 2])
def test_encode_from_values_and_input_gradients(model, layer_from_end):
    layer = model.num_visual_layers - layer_from_end
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        x0 = model.visual_tokens(pixels, layer)
    target = torch.randn(2, model.encode_image(pixels).shape[-1])
    outs, grads = [], []
    for fn in (lambda t: model.encode_image_from(t, layer), lambda t: _full_encode(model, t, layer)):
        x = x0.clone().requires_grad_(True)
        z = fn(x)
        (z * target).sum().backward()
        outs.append(z.detach())
        grads.append(x.grad)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert grads[0][:, 1:].abs().sum() > 0  # every token reaches the output through keys and values


def test_training_mode_or_other_blocks_fall_back():
    m = _tiny_clip()
    blk = m.visual_blocks()[-1]
    x = torch.randn(1, 5, blk.ln_1.normalized_shape[0])
    blk.train()
    assert class_token_block(blk, x) is None
    assert class_token_block(torch.nn.Linear(4, 4).eval(), x) is None


def test_mean_pooled_tower_keeps_the_full_block():
    m = _tiny_clip()
    m.model.visual.pool_type = "avg"
    assert not m._pools_class_token()
