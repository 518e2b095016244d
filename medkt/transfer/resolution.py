"""Run a ViT's encoder below its native input size (progressive inversion).

A ViT costs FLOPs in proportion to its tokens.  Inside :func:`encoder_at` the vision
tower of an open_clip ViT (open_clip's own ``VisionTransformer``: ``conv1`` patch
embedding, ``class_embedding``, ``positional_embedding`` ``[1 + g*g, D]``) accepts
``size``-pixel images: its positional embedding is replaced by a bicubic resize of the
patch-grid part to ``size // patch`` per side (the class token's entry unchanged).  The
original tensor is put back on exit.  Weights are not modified.

Other towers (timm trunks such as BiomedCLIP, HF CLIP, MedCLIP's Swin) raise
:class:`~medkt.errors.ConfigError`: ``inversion.progressive_encoder`` is for open_clip ViTs.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from medkt.errors import ConfigError


def _tower(model):
    v = getattr(getattr(model, "model", None), "visual", None)
    ok = v is not None and all(hasattr(v, a) for a in ("conv1", "class_embedding", "positional_embedding"))
    if not ok:
        raise ConfigError(f"inversion.progressive_encoder needs an open_clip ViT; model '{model.name}' "
                          f"({getattr(model, 'family', '?')}) has another vision tower.",
                          hint="set inversion.progressive_encoder=false (progressive pixels still work)")
    return v


def patch_size(model) -> int:
    """Patch size (pixels) of the model's ViT."""
    k = _tower(model).conv1.kernel_size
    return int(k[0] if isinstance(k, (tuple, list)) else k)


def encoder_size(model, size: int) -> int:
    """``size`` rounded down to a whole number of patches (at least one patch)."""
    p = patch_size(model)
    return max(p, (int(size) // p) * p)


def resized_positions(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """``[1 + g*g, D]`` positional embedding -> ``[1 + grid*grid, D]`` (bicubic on the patch grid)."""
    n, d = pos.shape
    g = int(round((n - 1) ** 0.5))
    if g * g != n - 1:
        raise ConfigError(f"positional embedding of {n} entries is not 1 + a square grid.")
    if grid == g:
        return pos
    patch = pos[1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    patch = F.interpolate(patch.float(), size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(grid * grid, d).to(pos.dtype)])


@contextlib.contextmanager
def encoder_at(model, size: int):
    """Inside the context the model's ViT takes ``size``×``size`` images (``size`` a multiple of the patch)."""
    if int(size) == int(model.image_size):
        yield
        return
    v = _tower(model)
    p = patch_size(model)
    if size % p:
        raise ConfigError(f"encoder size {size} is not a multiple of the patch size {p}.")
    original = v.positional_embedding
    with torch.no_grad():
        new = resized_positions(original.detach(), size // p)
    v.positional_embedding = torch.nn.Parameter(new, requires_grad=False)
    try:
        yield
    finally:
        v.positional_embedding = original
