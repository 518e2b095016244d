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

    def grid_to_image(self, grid: torch.Tensor) -> torch.Tensor:
        """Map ``[B, gh, gw]`` (model-input frame) → ``[B, H, W]`` on the original pixels."""
        g = grid[:, None].float()
        h, w = self.height, self.width
        if self.mode == "squash":
            return F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        if self.mode == "letterbox":
            side = max(h, w)
            out = F.interpolate(g, size=(side, side), mode="bilinear", align_corners=False)
            return out[:, 0, :h, :w]
        top, left, side, _ = self.crop_box()
        inner = F.interpolate(g, size=(side, side), mode="bilinear", align_corners=False)[:, 0]
        out = inner.new_zeros(grid.shape[0], h, w)
        out[:, top:top + side, left:left + side] = inner
        return out

    def point_to_model(self, x: float, y: float) -> tuple[float, float]:
        """Original-pixel point ``(x, y)`` → model-input pixels (letterbox / squash)."""
        if self.mode == "letterbox":
            s = self.size / max(self.height, self.width)
            return x * s, y * s
        if self.mode == "squash":
            return x * self.size / self.width, y * self.size / self.height
        top, left, side, _ = self.crop_box()
        return (x - left) * self.size / side, (y - top) * self.size / side


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
    pixels, ``raw`` the un-normalised KL map ``H×W`` (nats), ``grid`` the patch-grid KL map."""

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
            grids = m2ib_visual(self.model, pixels, text, self.cfg, sd).cpu()
            texts = m2ib_text(self.model, pixels, prompt, self.cfg, sd) if self.cfg.text_map \
                else [None] * len(chunk)
            for g, geo, s, tm in zip(grids, geoms, sd, texts):
                raw = geo.grid_to_image(g[None])
                smap = minmax(raw) if self.cfg.normalize_map else raw
                out.append(SaliencyResult(map=smap[0].numpy().astype(np.float32),
                                          raw=raw[0].numpy().astype(np.float32),
                                          grid=g.numpy().astype(np.float32), seed=int(s), text=tm))
        return out
