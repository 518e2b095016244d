"""Batched, per-sample augmentation and regularisers for inversion.

Randomness is *counter-based*: every random number is a hash of (image seed, step,
copy, slot), computed for the whole batch in a few integer tensor ops.  So an image's
augmentations depend only on its own seed and the step — not on which other images
share the batch — and no per-image Python loop or generator is needed.

All images are ``[N, C, H, W]`` float in [0, 1]; outputs keep that range convention
(before the model's ``normalize``).
"""
from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

_M32 = 0xFFFFFFFF


def image_seed(seed: int, key: str, index: int) -> int:
    """Stable 31-bit seed of image ``index`` of ``key`` (a concept name) under run ``seed``."""
    h = hashlib.blake2b(f"{int(seed)}|{key}|{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """32-bit integer hash (xor-shift-multiply) on int64 tensors holding values < 2**32."""
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _M32
    return x ^ (x >> 16)


def counter_uniform(seeds: torch.Tensor, step: int, n: int, salt: int = 0) -> torch.Tensor:
    """Uniform [0, 1) numbers ``[len(seeds), n]``, a pure function of (seed, step, salt, slot)."""
    s = seeds.to(torch.int64).view(-1, 1) & _M32
    h = _mix(s ^ ((int(step) * 0x27D4EB2D + int(salt) * 0x165667B1) & _M32))
    slots = torch.arange(n, dtype=torch.int64, device=seeds.device).view(1, -1)
    h = _mix(h ^ ((slots * 0x2C1B3C6D + 0x3C6EF372) & _M32))
    h = _mix((h + 0x9E3779B9) & _M32)
    return (h >> 8).to(torch.float32) / float(1 << 24)


def affine_theta(u: torch.Tensor, *, p: float, degrees: float, translate: float,
                 scale: tuple[float, float]) -> torch.Tensor:
    """Sampling matrices ``[N, 2, 3]`` for ``F.affine_grid`` from uniforms ``u`` ``[N, 5]``.

    Forward transform: rotate by U(-degrees, degrees) about the centre, scale by
    U(scale), translate by U(-translate, translate) of the size (kornia ``RandomAffine``);
    the grid needs its inverse.  Rows with ``u[:, 0] >= p`` get the identity.
    """
    n = u.shape[0]
    apply = (u[:, 0] < p).to(u.dtype)
    ang = (2 * u[:, 1] - 1) * math.radians(degrees) * apply
    tx = (2 * u[:, 2] - 1) * translate * 2 * apply  # normalised coords span 2
    ty = (2 * u[:, 3] - 1) * translate * 2 * apply
    s = scale[0] + (scale[1] - scale[0]) * u[:, 4]
    s = s * apply + (1 - apply)
    c, si = torch.cos(ang), torch.sin(ang)
    theta = torch.empty(n, 2, 3, dtype=u.dtype, device=u.device)
    # inverse of [s R | t]: [R^T / s | -R^T t / s]
    theta[:, 0, 0] = c / s
    theta[:, 0, 1] = si / s
    theta[:, 1, 0] = -si / s
    theta[:, 1, 1] = c / s
    theta[:, 0, 2] = -(c * tx + si * ty) / s
    theta[:, 1, 2] = -(-si * tx + c * ty) / s
    return theta


def augment(x: torch.Tensor, seeds: torch.Tensor, step: int, *, out_size: int, copies: int = 1,
            affine=None, color_shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Augmented views ``[N * copies, C, out_size, out_size]`` of ``x`` ``[N, C, H, W]``.

    Row ``i * copies + k`` is copy ``k`` of image ``i``.  Affine and the resize to
    ``out_size`` share one bilinear ``grid_sample``; colour shift is Kazemi's
    ``(x - mu) / sigma`` with mu ~ U(-m, m), sigma = exp(U(-s, s)) per sample and channel.
    ``affine``: an :class:`~medkt.transfer.config.AffineConfig` or ``None``.
    """
    n, c, h, w = x.shape
    if copies > 1:
        x = x.repeat_interleave(copies, dim=0)
        seeds = seeds.repeat_interleave(copies) * 131 + torch.arange(copies, device=seeds.device).repeat(n)
    if affine is not None and affine.p > 0:
        u = counter_uniform(seeds, step, 5, salt=1).to(x.device)
        theta = affine_theta(u, p=affine.p, degrees=affine.degrees, translate=affine.translate,
                             scale=(float(affine.scale[0]), float(affine.scale[1]))).to(x.dtype)
        grid = F.affine_grid(theta, [x.shape[0], c, out_size, out_size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=affine.padding, align_corners=False)
    elif (h, w) != (out_size, out_size):
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
    m, s = float(color_shift[0]), float(color_shift[1])
    if m > 0 or s > 0:
        u = counter_uniform(seeds, step, 2 * c, salt=2).to(x.device, x.dtype)
        mu = ((2 * u[:, :c] - 1) * m).view(-1, c, 1, 1)
        sigma = torch.exp((2 * u[:, c:] - 1) * s).view(-1, c, 1, 1)
        x = (x - mu) / sigma
    return x


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image TV ``[N]``: sum over 4 directions (x, y, two diagonals) of the spatial L2
    norm of the differences, averaged over channels (Kazemi et al.; the author's script)."""
    diffs = (x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1],
             x[..., 1:, 1:] - x[..., :-1, :-1], x[..., 1:, :-1] - x[..., :-1, 1:])
    return sum(d.flatten(2).norm(dim=2).mean(dim=1) for d in diffs)


def gram(tokens: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``[N, D, D]`` of tokens ``[N, T, D]`` (divided by T), for the style term."""
    return tokens.transpose(1, 2) @ tokens / tokens.shape[1]


def stage_sizes(image_size: int, fractions, at, steps: int) -> list[tuple[int, int]]:
    """Progressive schedule as ``[(start_step, size), ...]``; no fractions → one stage."""
    if not fractions:
        return [(0, image_size)]
    sizes = [max(8, int(round(f * image_size))) for f in fractions]
    starts = [0] + [int(round(a * steps)) for a in list(at)[: len(sizes) - 1]]
    return list(zip(starts, sizes))


def noise_images(n: int, channels: int, size: int, seeds) -> torch.Tensor:
    """``[n, C, size, size]`` uniform noise in [0, 1], one generator per image (seeded)."""
    out = torch.empty(n, channels, size, size)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        out[i] = torch.rand(channels, size, size, generator=g)
    return out
