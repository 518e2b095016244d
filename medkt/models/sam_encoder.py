"""SAM's image encoder with query-chunked attention (same result, far less memory traffic).

segment_anything's ``Attention`` materialises the whole score tensor: in a global block of
SAM ViT-B at 1024 px that is 12 heads × 4096 × 4096 float32 (805 MB), written by the matmul,
read and rewritten by the decomposed relative-position add, then by the softmax, then read
by the value matmul.  On a CPU those passes through main memory, not the matmuls, dominate
the block (measured, 1 thread: 2.29 s per global block, of which the matmuls are ≈0.6 s).

:func:`encode` runs the same network (the encoder's own patch embedding, blocks, norms, MLPs,
window partition and neck) but computes each attention a few score rows at a time: for
every pass (a chunk of one head's queries, or several whole windows' heads) it writes the
relative-position bias ``rel_h[q, kh] + rel_w[q, kw]`` into a reused buffer, adds ``q·kᵀ``
into it (one ``baddbmm``), applies the softmax in place and multiplies by the values.  The
buffer (``budget`` scores, 4 MB by default) is reused for every pass, and the maths is the
reference's term by term, so outputs agree up to float rounding
(``tests/test_models_sam_encoder.py``: ≤ 1e-5 relative against ``encoder(x)``).
Measured on one core: a ViT-B global block's attention 2.29 → 0.81 s (batched over heads
with 512-query chunks: 0.87 s), a windowed block's 0.35 → 0.27 s.

Used only where it is exact and safe: inference (no autograd), CPU tensors, and an encoder
built from segment_anything's ``ImageEncoderViT`` / ``Block`` / ``Attention`` (SAM, MedSAM,
tiny-SAM).  Under CPU bf16 autocast (``sam.amp: bf16``) the projections and MLPs run in bf16
and the attention itself (scores, soft-max, values) in float32, where the stock forward would
do it in bf16 (ViT-B at 1024 px, one thread: 5.51 s against stock bf16's 6.80, embeddings as
close to float32's).  Other autocast dtypes, everything else, and ``attention="stock"`` call
``encoder(x)``.
"""
from __future__ import annotations

import torch
from torch import nn

ATTENTION_MODES = ("chunked", "stock")
SCORE_BUDGET = 256 * 4096  # score elements per pass (4 MB float32): 256-query chunks of one head in a global
#                           block of ViT-B at 1024 px, or 27 whole 14x14 windows (1 thread: fastest of 32..512 rows)
MLP_ROWS = 1024  # tokens per MLP pass: a 12 MB hidden layer instead of 50 MB (ViT-B, 4096 tokens)


def supports_chunked(encoder: nn.Module) -> bool:
    """True when ``encoder`` is segment_anything's ``ImageEncoderViT`` made of its own blocks."""
    from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT
    return (type(encoder) is ImageEncoderViT
            and all(type(b) is Block and type(b.attn) is Attention for b in encoder.blocks))


def chunked_attention(attn: nn.Module, x: torch.Tensor, budget: int = SCORE_BUDGET) -> torch.Tensor:
    """``attn(x)`` for a segment_anything ``Attention``, computed a few score rows at a time.

    Args:
        attn: ``segment_anything.modeling.image_encoder.Attention`` (relative positions or not).
        x: tokens ``[B, H, W, C]`` (a window batch in windowed blocks).
        budget: score elements per pass (≥ 1): ``budget // tokens`` query rows of one head, or,
            when a whole head fits, as many whole heads (windows) as fit.

    Returns:
        ``[B, H, W, C]``, equal to ``attn(x)`` up to float rounding.
    """
    qkv = attn.qkv(x)
    if qkv.dtype == torch.float32:
        return attn.proj(_attend(attn, qkv, budget))
    with torch.autocast("cpu", enabled=False):  # bf16 autocast: scores and soft-max in float32
        out = _attend(attn, qkv.float(), budget)
    return attn.proj(out)


def _attend(attn: nn.Module, qkv: torch.Tensor, budget: int) -> torch.Tensor:
    """Attention from projected tokens ``qkv [B, H, W, 3C]`` to the heads' outputs ``[B, H, W, C]``
    (before ``proj``)."""
    from segment_anything.modeling.image_encoder import get_rel_pos
    B, H, W, _ = qkv.shape
    n, heads = H * W, attn.num_heads
    qkv = qkv.reshape(B, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * heads, n, -1).unbind(0)  # [B·heads, n, d]
    kt = (k * attn.scale).transpose(-2, -1)  # scale on k: (q·s)kᵀ = q(s·k)ᵀ
    if attn.use_rel_pos:
        r_q = q.reshape(B * heads, H, W, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(H, H, attn.rel_pos_h)).reshape(B * heads, n, H, 1)
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(W, W, attn.rel_pos_w)).reshape(B * heads, n, 1, W)
    rows = max(1, int(budget) // n)  # query rows per pass
    step, g = (n, max(1, rows // n)) if rows >= n else (rows, 1)  # whole windows, g heads at once; or chunks
    buf = torch.empty(min(g, B * heads), step, n, dtype=q.dtype, device=q.device)
    out = torch.empty_like(q)
    for b0 in range(0, B * heads, g):
        b1 = min(b0 + g, B * heads)
        for s in range(0, n, step):
            e = min(s + step, n)
            scores = buf[:b1 - b0, :e - s]
            if attn.use_rel_pos:
                torch.add(rel_h[b0:b1, s:e], rel_w[b0:b1, s:e], out=scores.view(b1 - b0, e - s, H, W))
                scores.baddbmm_(q[b0:b1, s:e], kt[b0:b1])
            else:
                torch.bmm(q[b0:b1, s:e], kt[b0:b1], out=scores)
            torch.softmax(scores, -1, out=scores)
            torch.bmm(scores, v[b0:b1], out=out[b0:b1, s:e])
    return out.view(B, heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)


def _block(blk: nn.Module, x: torch.Tensor, budget: int) -> torch.Tensor:
    """segment_anything ``Block.forward`` with :func:`chunked_attention`."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition
    shortcut = x
    x = blk.norm1(x)
    if blk.window_size > 0:
        H, W = x.shape[1], x.shape[2]
        x, pad_hw = window_partition(x, blk.window_size)
    x = chunked_attention(blk.attn, x, budget)
    if blk.window_size > 0:
        x = window_unpartition(x, blk.window_size, pad_hw, (H, W))
    x = shortcut + x
    return _add_mlp(blk, x)


def _add_mlp(blk: nn.Module, x: torch.Tensor, rows: int = MLP_ROWS) -> torch.Tensor:
    """``x + blk.mlp(blk.norm2(x))`` for ``x [B, H, W, C]`` (a fresh tensor), written into it.

    The norm and the MLP act on each token alone, so ``rows`` tokens at a time give the same
    values while the 4×-wide hidden layer (50 MB for 4096 ViT-B tokens) is never held whole.
    """
    x = x.contiguous()  # the patch embedding's output is a permuted view
    flat = x.view(-1, x.shape[-1])
    for s in range(0, flat.shape[0], rows):
        part = flat[s:s + rows]
        part += blk.mlp(blk.norm2(part))
    return x


def encode(encoder: nn.Module, pixels: torch.Tensor, *, attention: str = "chunked",
           budget: int = SCORE_BUDGET) -> torch.Tensor:
    """SAM image encoder forward.

    Args:
        encoder: a segment_anything ``ImageEncoderViT`` (eval mode).
        pixels: prepared images ``[B, 3, S, S]`` (see :mod:`medkt.models.sam`).
        attention: ``"chunked"`` (this module, where exact and safe; see the module docstring)
            or ``"stock"`` (``encoder(pixels)``).

    Returns:
        Image embeddings ``[B, C_out, S/16, S/16]``.
    """
    autocast_ok = (not torch.is_autocast_enabled("cpu")
                   or torch.get_autocast_dtype("cpu") == torch.bfloat16)  # bf16: attention itself in float32
    fast = (attention == "chunked" and pixels.device.type == "cpu" and not torch.is_grad_enabled()
            and autocast_ok and supports_chunked(encoder) and not encoder.training)
    if not fast:
        return encoder(pixels)
    x = encoder.patch_embed(pixels)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    for blk in encoder.blocks:
        x = _block(blk, x, budget)
    return encoder.neck(x.permute(0, 3, 1, 2))
