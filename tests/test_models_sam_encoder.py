"""Query-chunked SAM attention equals segment_anything's own forward (medkt/models/sam_encoder.py)."""
import numpy as np
import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from medkt.errors import ConfigError
from medkt.models import create_model
from medkt.models.sam import build_sam_module
from medkt.models.sam_encoder import chunked_attention, encode, supports_chunked


def _randomise_rel_pos(encoder, seed=0):
    """SAM initialises the relative-position tables to zero; real checkpoints are not zero."""
    g = torch.Generator().manual_seed(seed)
    for blk in encoder.blocks:
        for p in (blk.attn.rel_pos_h, blk.attn.rel_pos_w):
            p.data = torch.randn(p.shape, generator=g) * 0.5


def _rel_close(a, b, tol=1e-5):
    return float((a - b).abs().max() / b.abs().max()) < tol


CASES = [  # (channels, heads, grid H×W, batch, rel-pos std, budget)
    *[(48, 3, (9, 11), 2, 0.5, b) for b in (1, 7 * 99, 99 * 99, 3 * 99 * 99, 10 ** 7)],  # one row, 7-row chunks,
    # one head per pass, 3 heads per pass, everything at once
    (768, 12, (24, 24), 1, 0.02, None),  # ViT-B-sized global attention, default budget
]


@pytest.mark.parametrize("dim,heads,hw,batch,std,budget", CASES)
def test_attention_equals_stock(dim, heads, hw, batch, std, budget):
    torch.manual_seed(0)
    att = Attention(dim, num_heads=heads, use_rel_pos=True, input_size=hw).eval()
    torch.nn.init.normal_(att.rel_pos_h, std=std)
    torch.nn.init.normal_(att.rel_pos_w, std=std)
    x = torch.randn(batch, *hw, dim)
    with torch.no_grad():
        got = chunked_attention(att, x) if budget is None else chunked_attention(att, x, budget)
        assert _rel_close(got, att(x))


def test_attention_without_rel_pos():
    torch.manual_seed(0)
    att = Attention(32, num_heads=4, use_rel_pos=False).eval()
    x = torch.randn(1, 6, 6, 32)
    with torch.no_grad():
        assert _rel_close(chunked_attention(att, x, 5), att(x))


def _padded_encoder():
    # 224 px / patch 16 = 14 tokens a side, window 4 → padded to 16: exercises partition + unpartition
    sam = build_sam_module(image_size=224, encoder_embed_dim=64, encoder_depth=3, encoder_num_heads=2,
                           window_size=4, global_attn_indexes=(1,), prompt_embed_dim=32, mask_in_chans=8,
                           decoder_mlp_dim=64, decoder_heads=2, iou_head_hidden_dim=64)
    _randomise_rel_pos(sam.image_encoder)
    return sam.image_encoder


def test_tiny_sam_encoder_equals_stock_with_window_padding():
    enc = _padded_encoder()
    assert supports_chunked(enc)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = enc(x)
        got = encode(enc, x, budget=5 * 196)  # global block: 5 of 196 query rows per pass; windows: 3 per pass
    assert got.shape == ref.shape == (2, 32, 14, 14)
    assert _rel_close(got, ref)


def test_mlp_in_token_chunks_equals_the_block_mlp():
    """The MLP residual computed a few tokens at a time (rows not dividing the token count),
    also on the permuted, non-contiguous tokens the patch embedding hands the first block."""
    from medkt.models.sam_encoder import _add_mlp
    blk = _padded_encoder().blocks[0]
    x = torch.randn(2, 64, 14, 14, generator=torch.Generator().manual_seed(2)).permute(0, 2, 3, 1)
    with torch.no_grad():
        ref = x + blk.mlp(blk.norm2(x))
        got = _add_mlp(blk, x.clone(), rows=37)
    assert _rel_close(got, ref)


def test_bf16_autocast_runs_chunked_with_float32_attention(monkeypatch):
    """Under CPU bf16 autocast the projections and MLPs run in bf16 and the attention (scores,
    soft-max, values) in float32; the embedding stays close to the float32 one."""
    from medkt.models import sam_encoder
    enc = _padded_encoder()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    seen = []
    real = sam_encoder._attend
    monkeypatch.setattr(sam_encoder, "_attend", lambda a, qkv, b: seen.append(qkv.dtype) or real(a, qkv, b))
    with torch.no_grad():
        ref = enc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = encode(enc, x)
    assert len(seen) == len(enc.blocks) and set(seen) == {torch.float32}
    assert torch.nn.functional.cosine_similarity(got.float().flatten(), ref.flatten(), dim=0) > 0.999


def test_falls_back_where_not_exact_or_safe():
    m = create_model("tiny-sam")
    enc = m.sam.image_encoder
    x = torch.randn(1, 3, m.image_size, m.image_size)
    # autograd on: the stock forward runs, so gradients reach the input
    x.requires_grad_(True)
    encode(enc, x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # an encoder that is not segment_anything's own class is run as is
    wrapped = torch.nn.Sequential(torch.nn.Identity())
    assert not supports_chunked(wrapped)
    with torch.no_grad():
        assert torch.equal(encode(wrapped, x.detach()), x.detach())


def test_segmenter_masks_equal_between_attention_modes():
    from medkt.segmentation.prompts import Prompts
    from medkt.segmentation.sam_segmenter import SamConfig, SamSegmenter
    m = create_model("tiny-sam")
    _randomise_rel_pos(m.sam.image_encoder)
    rng = np.random.default_rng(0)
    images = [rng.random((96, 120)).astype(np.float32) for _ in range(2)]
    prompts = [Prompts(np.array([[10, 12, 70, 80]], np.float32), None, None, "ok", n_components=0)] * 2
    out = {}
    for mode in ("chunked", "stock"):
        seg = SamSegmenter(m, SamConfig(model="tiny-sam", attention=mode, keep_components=False))
        emb = seg.embed(images)
        out[mode] = ([e.embedding for e in emb], [o.mask for o in seg.segment(images, prompts)])
    for a, b in zip(out["chunked"][0], out["stock"][0]):
        assert _rel_close(a, b)
    for a, b in zip(out["chunked"][1], out["stock"][1]):
        assert (a == b).mean() > 0.999


def test_config_rejects_unknown_attention():
    from medkt.segmentation.sam_segmenter import SamConfig
    with pytest.raises(ConfigError, match="sam.attention"):
        SamConfig(attention="flash").validate()
