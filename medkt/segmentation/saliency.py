"""Image-level saliency: geometry-correct model input, batched M2IB, maps back on the image.

:class:`SquareGeometry` records how an ``H×W`` image became the ``S×S`` model input and
maps a patch-grid map back onto the original pixels:

* ``letterbox`` (default): zero-pad right/bottom to a ``max(H, W)`` square, resize to S.
  Back: upsample the grid (bilinear, cell centres at ``(i + 0.5)·side/g``) to the padded
  square and crop ``[:H, :W]``.  Nothing is cut away and nothing is stretched.
* ``squash``: resize both sides to S; back: upsample the grid straight to ``H×W``.
* ``center_crop``: CLIP's resize-shortest-side + centre crop; back: the map fills the
  crop box, pixels outside it get 0 (MedCLIP-SAMv2 instead stretched the crop's map over
  the whole image, misregistering non-square inputs).

:class:`SaliencyEngine` wraps a model: text embeddings cached per prompt, images batched
``cfg.batch_size`` at a time, one noise seed per image.

Shift averaging (``m2ib.shifts: [[dy, dx], ...]``, model-input pixels, default off): M2IB runs
on each shifted copy of the model input — the copy's pixel ``(y, x)`` shows the input's
``(y − dy, x − dx)``, i.e. content moves ``dy`` down and ``dx`` right, and the rows / columns
uncovered at the edge repeat the edge pixels (replicate) — with the image's own seed; each
copy's patch-grid map is then read back at the shifted position (the original's pixel at
model coordinate ``u`` takes the copy's map at ``u + d``, bilinear on the cell centres,
coordinates clamped to the outermost cell centres — the same edge rule as the plain
upsampling), and the maps on the original pixels are averaged before min-max.  Shifts of half
a patch give the map a finer effective grid.  A lone ``[0, 0]`` gives the plain map.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medkt.errors import ConfigError
from medkt.models.base import image_to_unit_tensor, resize_to_square
from medkt.segmentation.m2ib import M2IBConfig, TextMap, m2ib_text, m2ib_visual

RESIZE_MODES = ("letterbox", "squash", "center_crop")


@dataclass(frozen=True)
class SquareGeometry:
    """How an ``(H, W)`` image maps onto the ``size × size`` model input."""

    height: int
    width: int
    size: int
    mode: str = "letterbox"

    def __post_init__(self):
        if self.mode not in RESIZE_MODES:
            raise ConfigError(f"unknown resize mode '{self.mode}'; use one of {', '.join(RESIZE_MODES)}.")

    def to_model(self, x01: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → ``[B, C, size, size]`` in [0, 1]."""
        return resize_to_square(x01, self.size, self.mode)

    def crop_box(self) -> tuple[int, int, int, int]:
        """Centre-crop mode: ``(top, left, side, side)`` of the crop in original pixels."""
        side = min(self.height, self.width)
        return (self.height - side) // 2, (self.width - side) // 2, side, side

    def grid_to_image(self, grid: torch.Tensor, shift: Sequence[int] = (0, 0)) -> torch.Tensor:
        """Map ``[B, gh, gw]`` (model-input frame) → ``[B, H, W]`` on the original pixels.

        ``shift = (dy, dx)`` (model-input pixels): ``grid`` was computed on a copy whose content
        was moved by ``(dy, dx)``; the map is read back at the shifted position, so it lands on
        the original pixels (see the module docstring).  ``(0, 0)``: plain bilinear upsampling.
        """
        g = grid[:, None].float()
        h, w = self.height, self.width
        if self.mode == "squash":
            return self._upsample(g, (h, w), shift)
        if self.mode == "letterbox":
            side = max(h, w)
            return self._upsample(g, (side, side), shift)[:, :h, :w]
        top, left, side, _ = self.crop_box()
        inner = self._upsample(g, (side, side), shift)
        out = inner.new_zeros(grid.shape[0], h, w)
        out[:, top:top + side, left:left + side] = inner
        return out

    def _upsample(self, g: torch.Tensor, out: tuple[int, int], shift: Sequence[int]) -> torch.Tensor:
        """``[B, 1, gh, gw]`` over the ``size²`` model input → ``[B, oh, ow]`` over the same extent."""
        dy, dx = (int(v) for v in shift)
        if dy == 0 and dx == 0:
            return F.interpolate(g, size=out, mode="bilinear", align_corners=False)[:, 0]
        gh, gw = g.shape[-2:]
        wy = _shifted_bilinear(out[0], gh, dy * gh / self.size).to(g)
        wx = _shifted_bilinear(out[1], gw, dx * gw / self.size).to(g)
        return torch.einsum("yi,bij,xj->byx", wy, g[:, 0], wx)

    def point_to_model(self, x: float, y: float) -> tuple[float, float]:
        """Original-pixel point ``(x, y)`` → model-input pixels (letterbox / squash)."""
        if self.mode == "letterbox":
            s = self.size / max(self.height, self.width)
            return x * s, y * s
        if self.mode == "squash":
            return x * self.size / self.width, y * self.size / self.height
        top, left, side, _ = self.crop_box()
        return (x - left) * self.size / side, (y - top) * self.size / side


def _shifted_bilinear(n_out: int, n_grid: int, offset: float) -> torch.Tensor:
    """Bilinear weights ``[n_out, n_grid]``: output pixel ``q`` samples the grid at cell coordinate
    ``(q + 0.5)·n_grid/n_out − 0.5 + offset`` (``align_corners=False`` centres), clamped to
    ``[0, n_grid − 1]``; ``offset`` in cells."""
    c = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_grid / n_out - 0.5 + offset).clamp(0, n_grid - 1)
    i0 = c.floor().long().clamp(max=n_grid - 1)
    i1 = (i0 + 1).clamp(max=n_grid - 1)
    frac = c - i0
    wts = torch.zeros(n_out, n_grid, dtype=torch.float64)
    rows = torch.arange(n_out)
    wts.index_put_((rows, i0), 1 - frac, accumulate=True)
    wts.index_put_((rows, i1), frac, accumulate=True)
    return wts


def shift_content(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``[..., H, W]`` with its content moved ``dy`` down and ``dx`` right (same shape): output
    ``(y, x)`` = input ``(y − dy, x − dx)``, uncovered rows / columns replicate the edge."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ConfigError(f"m2ib.shifts entry [{dy}, {dx}] moves the whole {h}×{w} model input out of view.",
                          hint="use shifts smaller than the model input (e.g. half a patch)")
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w)
    p = max(abs(dy), abs(dx))
    pad = F.pad(flat, (p, p, p, p), mode="replicate")
    return pad[..., p - dy:p - dy + h, p - dx:p - dx + w].reshape(*lead, h, w)


def minmax(m: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1] over the last two axes (constant maps → 0)."""
    flat = m.flatten(-2)
    lo = flat.min(dim=-1, keepdim=True).values[..., None]
    hi = flat.max(dim=-1, keepdim=True).values[..., None]
    rng = hi - lo
    return torch.where(rng > 0, (m - lo) / rng.clamp_min(1e-12), torch.zeros_like(m))


@dataclass
class SaliencyResult:
    """One image's saliency: ``map`` ``H×W`` float32 in [0, 1] (min-max) on the original
    pixels, ``raw`` the un-normalised KL map ``H×W`` (nats; with ``m2ib.shifts`` the mean over
    the shifted copies), ``grid`` the patch-grid KL map ``[gh, gw]`` (with ``m2ib.shifts``:
    ``[K, gh, gw]``, one per shift, each in its copy's frame)."""

    map: np.ndarray
    raw: np.ndarray
    grid: np.ndarray
    seed: int
    text: TextMap | None = None
    info: dict = field(default_factory=dict)


class SaliencyEngine:
    """M2IB saliency for a :class:`~medkt.models.base.VisionLanguageModel`.

    ``images`` are ``H×W`` / ``H×W×C`` arrays (integer dtypes scaled by dtype max, floats
    in [0, 1]) or ``[C, H, W]`` tensors in [0, 1]; sizes may differ within a batch.
    """

    def __init__(self, model, cfg: M2IBConfig | None = None):
        self.model = model
        self.cfg = (cfg or M2IBConfig()).validate()
        self._text_cache: dict[str, torch.Tensor] = {}
        size = int(getattr(model, "image_size", 0) or 0)
        for dy, dx in self.cfg.shifts:
            if size and (abs(dy) >= size or abs(dx) >= size):
                raise ConfigError(f"m2ib.shifts entry [{dy}, {dx}] is not smaller than the model's "
                                  f"{size}×{size} input.", hint="use shifts of a fraction of a patch")

    def text_embedding(self, prompt: str) -> torch.Tensor:
        """Normalised text embedding ``[1, D]``, computed once per prompt string."""
        if prompt not in self._text_cache:
            with torch.no_grad():
                self._text_cache[prompt] = self.model.encode_texts([prompt], normalize=True).detach()
        return self._text_cache[prompt]

    def prepare(self, images: Sequence) -> tuple[torch.Tensor, list[SquareGeometry]]:
        """Images → normalised model input ``[N, C, S, S]`` and their geometries."""
        xs, geoms = [], []
        for im in images:
            x = image_to_unit_tensor(im).clamp(0, 1)
            if x.shape[0] == 4:
                x = x[:3]
            geo = SquareGeometry(int(x.shape[-2]), int(x.shape[-1]), self.model.image_size, self.cfg.resize)
            xs.append(self.model.normalize(geo.to_model(x[None]))[0])
            geoms.append(geo)
        return torch.stack(xs).to(self.model.device), geoms

    def __call__(self, images: Sequence, prompt: str, seeds: Sequence[int] | None = None
                 ) -> list[SaliencyResult]:
        """Saliency maps of ``images`` for ``prompt``; ``seeds`` one per image (default cfg.seed)."""
        images = list(images)
        seeds = [self.cfg.seed] * len(images) if seeds is None else list(seeds)
        text = self.text_embedding(prompt)
        out: list[SaliencyResult] = []
        bs = self.cfg.batch_size
        for start in range(0, len(images), bs):
            chunk, sd = images[start:start + bs], seeds[start:start + bs]
            pixels, geoms = self.prepare(chunk)
            grids = self._grids(pixels, text, sd)  # [K, n, gh, gw]
            texts = m2ib_text(self.model, pixels, prompt, self.cfg, sd) if self.cfg.text_map \
                else [None] * len(chunk)
            for j, (geo, s, tm) in enumerate(zip(geoms, sd, texts)):
                raw = torch.stack([geo.grid_to_image(g[j][None], d) for g, d in zip(grids, self._shifts())]).mean(0)
                smap = minmax(raw) if self.cfg.normalize_map else raw
                grid = grids[:, j] if self.cfg.shifts else grids[0, j]
                out.append(SaliencyResult(map=smap[0].numpy().astype(np.float32),
                                          raw=raw[0].numpy().astype(np.float32),
                                          grid=grid.numpy().astype(np.float32), seed=int(s), text=tm))
        return out

    def _shifts(self) -> list[tuple[int, int]]:
        return [(int(dy), int(dx)) for dy, dx in self.cfg.shifts] or [(0, 0)]

    def _grids(self, pixels: torch.Tensor, text: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Raw KL grids ``[K, N, gh, gw]`` of the ``K`` shifted copies of ``pixels`` ``[N, C, S, S]``.

        The copies are just more images: each keeps its image's seed, and they go through
        M2IB ``cfg.batch_size`` at a time.
        """
        shifts = self._shifts()
        copies = torch.cat([shift_content(pixels, dy, dx) for dy, dx in shifts])
        seeds = list(seeds) * len(shifts)
        bs = self.cfg.batch_size
        grids = torch.cat([m2ib_visual(self.model, copies[i:i + bs], text, self.cfg, seeds[i:i + bs]).cpu()
                           for i in range(0, len(copies), bs)])
        return grids.view(len(shifts), pixels.shape[0], *grids.shape[1:])
