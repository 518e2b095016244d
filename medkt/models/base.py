"""One interface over every vision-language family medkt supports.

:class:`VisionLanguageModel` is an ``nn.Module`` wrapper.  Transfer, saliency,
segmentation and benchmark code use only this interface, so they work the same on
open_clip CLIP / BiomedCLIP / CoCa, Hugging Face CLIP, MedCLIP and wrapped in-memory
models.  ViLT (single-stream) implements the ITM/MLM capabilities instead of the
dual-encoder ones.

Conventions
-----------
* Images given to :meth:`encode_image` are **normalised** tensors ``[B, C, H, W]`` of
  size ``image_size`` with ``C == in_channels``.  Images in ``[0, 1]`` are turned into
  that with :meth:`normalize` (differentiable, used by inversion and M2IB).
* Text goes through :meth:`tokenize` (list of strings → ``dict[str, Tensor]``, always a
  dict, at least ``input_ids``) then :meth:`encode_text`.
* Embeddings are ``[N, D]``; ``normalize=True`` (default) L2-normalises them.
* :attr:`logit_scale` is the *exponentiated* temperature scale (a 0-d tensor).
* Vision tokens: :meth:`visual_tokens` returns ``[B, T, C]`` after ``layer`` blocks
  (0 = after the stem/embedding), laid out as ``n_prefix`` special tokens followed by a
  row-major ``grid_h × grid_w`` patch grid (:meth:`visual_layout`).
  ``encode_image_from(visual_tokens(x, L), L)`` equals ``encode_image(x, normalize=False)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medkt.errors import CapabilityError, ConfigError

CONTRASTIVE = "contrastive"  # encode_image / encode_text / logit_scale
VISUAL_TOKENS = "visual_tokens"  # visual_tokens / encode_image_from (M2IB)
TEXT_TOKENS = "text_tokens"  # text_tokens / encode_text_from (text-side M2IB)
CAPTION = "caption"  # generate / caption_loss (CoCa)
ITM = "itm"  # match_score (ViLT)
MLM = "mlm"  # mlm_logits (ViLT)

PARAM_GROUPS = ("visual_tower", "visual_proj", "text_tower", "text_proj", "decoder", "logit_scale", "other")
GROUP_ALIASES = {
    "visual": ("visual_tower", "visual_proj"),
    "text": ("text_tower", "text_proj"),
    "projection": ("visual_proj", "text_proj"),
    "all": PARAM_GROUPS,
}


@dataclass(frozen=True)
class VisualLayout:
    """Token layout of the vision tower at one depth: ``n_prefix`` + ``grid_h*grid_w`` tokens."""

    n_prefix: int
    grid_h: int
    grid_w: int


def to_device(tokens: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in tokens.items()}


class VisionLanguageModel(nn.Module):
    """Base class; subclasses implement the capabilities they list in :attr:`capabilities`."""

    family: str = "base"
    capabilities: frozenset = frozenset()
    spec: str | None = None  # the model spec it was created from (set by create_model; None if wrapped)
    text_released: int = 0  # text-encoder parameters freed by release_text_encoder (0: in memory)

    def __init__(self, *, name: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                 in_channels: int = 3, weights: str | None = None):
        super().__init__()
        self.name = name
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.weights = weights  # human-readable weight source, recorded in run.json
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, -1, 1, 1), persistent=False)

    # ------------------------------------------------------------------ bookkeeping
    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str) -> None:
        if capability not in self.capabilities:
            raise CapabilityError(f"model '{self.name}' ({self.family}) does not support '{capability}'; "
                                  f"it supports: {', '.join(sorted(self.capabilities))}.")

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def describe(self) -> dict:
        return {"name": self.name, "spec": self.spec, "family": self.family, "weights": self.weights,
                "image_size": self.image_size, "in_channels": self.in_channels,
                "mean": self.mean, "std": self.std, "capabilities": sorted(self.capabilities),
                "parameters": sum(p.numel() for p in self.parameters()) + self.text_released,
                **({"text_encoder": f"released after encoding the prompt ({self.text_released} parameters)"}
                   if self.text_released else {})}

    # ------------------------------------------------------------------ images
    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → model input.  3→1 channel by mean, 1→3 by repeat."""
        x01 = match_channels(x01, self.in_channels)
        return (x01 - self._mean.to(x01.dtype)) / self._std.to(x01.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._std.to(x.dtype) + self._mean.to(x.dtype)

    def preprocess(self, image, mode: str = "center_crop") -> torch.Tensor:
        """One image (PIL, ``HxW`` / ``HxWxC`` array, or ``CxHxW`` tensor) → normalised ``[C, S, S]``.

        Arrays of integer dtype are scaled by their dtype's max (uint8 → /255); float arrays
        must already be in [0, 1].  ``mode``: ``center_crop`` (resize shortest side, crop;
        the CLIP convention), ``letterbox`` (pad to square with zeros, then resize; keeps
        geometry, used for saliency) or ``squash`` (resize both sides).
        """
        x = image_to_unit_tensor(image)
        x = resize_to_square(x[None], self.image_size, mode)[0]
        return self.normalize(x[None])[0]

    def preprocess_batch(self, images: Iterable, mode: str = "center_crop") -> torch.Tensor:
        return torch.stack([self.preprocess(im, mode) for im in images])

    # ------------------------------------------------------------------ contrastive API
    def tokenize(self, texts: Sequence[str]) -> dict:
        raise CapabilityError(f"model '{self.name}' has no tokenizer.")

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.require(CONTRASTIVE)
        raise NotImplementedError

    def encode_text(self, tokens: dict, normalize: bool = True) -> torch.Tensor:
        self.require(CONTRASTIVE)
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Convenience: tokenize on the model's device, then :meth:`encode_text`."""
        if self.text_released:
            raise CapabilityError(f"model '{self.name}': its text encoder was released to save memory, so it "
                                  f"cannot encode {list(texts)[:1]}.",
                                  hint="encode every prompt before release_text_encoder(), or load the model again")
        return self.encode_text(to_device(self.tokenize(list(texts)), self.device), normalize)

    def release_text_encoder(self) -> int:
        """Free the text encoder's weights (``parameters_of("text")``) for image-only work.

        For inference that only needs text embeddings computed beforehand (a segmentation
        run encodes its one prompt, then only the vision tower runs).  The parameters keep
        their names but hold no data; :meth:`encode_texts` then raises.  Never call it on a
        model someone else still uses.  Returns the bytes freed (0 when already released).
        """
        if self.text_released:
            return 0
        freed = numel = 0
        keep = {id(p) for p in self.parameters_of("visual", "decoder", "logit_scale", "other")}  # shared: kept
        for p in self.parameters_of("text"):
            if id(p) in keep:
                continue
            freed += p.numel() * p.element_size()
            numel += p.numel()
            p.data = p.data.new_empty(0)
        self.text_released = numel
        return freed

    @property
    def logit_scale(self) -> torch.Tensor:
        self.require(CONTRASTIVE)
        raise NotImplementedError

    def logit_scale_parameter(self) -> nn.Parameter | None:
        """The raw (log-space) parameter behind :attr:`logit_scale`, if it is one."""
        return None

    # ------------------------------------------------------------------ vision tokens (M2IB)
    @property
    def num_visual_layers(self) -> int:
        """Number of vision blocks (``len(visual_blocks())``)."""
        return len(self.visual_blocks())

    def visual_layout(self, layer: int) -> VisualLayout:
        self.require(VISUAL_TOKENS)
        raise NotImplementedError

    def visual_tokens(self, pixels: torch.Tensor, layer: int) -> torch.Tensor:
        """Tokens ``[B, T, C]`` after ``layer`` vision blocks (0 ≤ layer ≤ num_visual_layers)."""
        self.require(VISUAL_TOKENS)
        raise NotImplementedError

    def encode_image_from(self, tokens: torch.Tensor, layer: int, normalize: bool = False) -> torch.Tensor:
        """Run blocks ``layer..end`` and the head on ``tokens`` → image embedding ``[B, D]``."""
        self.require(VISUAL_TOKENS)
        raise NotImplementedError

    def visual_blocks(self) -> list[nn.Module]:
        self.require(VISUAL_TOKENS)
        raise NotImplementedError

    def visual_hidden_states(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """``num_visual_layers + 1`` tensors ``[B, T, C]``: after the stem and after each block."""
        states = [self.visual_tokens(pixels, 0)]
        for layer in range(1, self.num_visual_layers + 1):
            states.append(self._run_blocks(states[-1], layer - 1, layer))
        return states

    def _run_blocks(self, tokens: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for blk in self.visual_blocks()[start:stop]:
            tokens = blk(tokens)
        return tokens

    def hook_after_layer(self, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]):
        """Register ``fn(tokens [B,T,C]) -> tokens`` on the output of block ``layer`` (1-based).

        Returns a handle with ``.remove()``.  This is the generic insertion point for
        bottlenecks; the cached path (:meth:`encode_image_from`) avoids recomputation.
        """
        blocks = self.visual_blocks()
        if not 1 <= layer <= len(blocks):
            raise ConfigError(f"layer {layer} is outside 1..{len(blocks)} for model '{self.name}'.")

        def _hook(_module, _inp, out):
            if isinstance(out, tuple):
                return (fn(out[0]),) + tuple(out[1:])
            return fn(out)
        return blocks[layer - 1].register_forward_hook(_hook)

    # ------------------------------------------------------------------ text tokens (optional)
    @property
    def num_text_layers(self) -> int:
        self.require(TEXT_TOKENS)
        raise NotImplementedError

    def text_tokens(self, tokens: dict, layer: int) -> torch.Tensor:
        self.require(TEXT_TOKENS)
        raise NotImplementedError

    def encode_text_from(self, hidden: torch.Tensor, tokens: dict, layer: int,
                         normalize: bool = False) -> torch.Tensor:
        self.require(TEXT_TOKENS)
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint groups: visual_tower, visual_proj, text_tower, text_proj, decoder, logit_scale, other."""
        raise NotImplementedError

    def parameters_of(self, *groups: str) -> list[nn.Parameter]:
        """Parameters of the named groups; aliases ``visual``, ``text``, ``projection``, ``all``."""
        table = self.parameter_groups()
        names: list[str] = []
        for g in groups:
            for n in GROUP_ALIASES.get(g, (g,)):
                if n not in PARAM_GROUPS:
                    raise ConfigError(f"unknown parameter group '{g}'; choose from "
                                      f"{', '.join(PARAM_GROUPS + tuple(GROUP_ALIASES))}.")
                if n not in names:
                    names.append(n)
        out, seen = [], set()
        for n in names:
            for p in table.get(n, []):
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def _check_groups_cover(self, groups: dict[str, list[nn.Parameter]]) -> dict[str, list[nn.Parameter]]:
        """Put every parameter not in a group into ``other`` (so groups always partition)."""
        seen = {id(p) for ps in groups.values() for p in ps}
        groups.setdefault("other", [])
        groups["other"] += [p for p in self.parameters() if id(p) not in seen]
        for g in PARAM_GROUPS:
            groups.setdefault(g, [])
        return groups

    # ------------------------------------------------------------------ family-specific
    def generate(self, pixels: torch.Tensor, method: str = "greedy", max_len: int = 30, **kw) -> list[str]:
        self.require(CAPTION)
        raise NotImplementedError

    def caption_loss(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        self.require(CAPTION)
        raise NotImplementedError

    def match_score(self, pixels: torch.Tensor, tokens: dict, pixel_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Image-text match logit ``[B]`` for aligned pairs (ViLT ITM)."""
        self.require(ITM)
        raise NotImplementedError


# ---------------------------------------------------------------------- image helpers
def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``[B, C, H, W]`` → ``channels`` channels (RGB→gray by mean, gray→RGB by repeat)."""
    c = x.shape[1]
    if c == channels:
        return x
    if channels == 1:
        return x.mean(dim=1, keepdim=True)
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    raise ConfigError(f"cannot convert {c}-channel images to {channels} channels.")


def image_to_unit_tensor(image) -> torch.Tensor:
    """PIL / ndarray (``HxW``, ``HxWxC``) / tensor (``CxHxW``) → float ``[C, H, W]`` in [0, 1]."""
    if torch.is_tensor(image):
        x = image.float()
        if x.ndim == 2:
            x = x[None]
        return x
    try:
        from PIL import Image
        if isinstance(image, Image.Image):
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            image = np.asarray(image)
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    elif arr.dtype == bool:
        arr = arr.astype(np.float32)
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        arr = np.moveaxis(arr, -1, 0)
    else:
        raise ConfigError(f"expected a 2D image (HxW or HxWxC), got shape {arr.shape}.")
    return torch.from_numpy(np.ascontiguousarray(arr))


def resize_to_square(x: torch.Tensor, size: int, mode: str = "center_crop") -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, C, size, size]`` (bicubic, antialiased, clamped to [0, 1])."""
    h, w = x.shape[-2:]
    if mode == "squash":
        out = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    elif mode == "letterbox":
        s = max(h, w)
        pad = (0, s - w, 0, s - h)  # pad right/bottom: geometry maps back by cropping
        x = F.pad(x, pad)
        out = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    elif mode == "center_crop":
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        out = x[..., top:top + size, left:left + size]
    else:
        raise ConfigError(f"unknown resize mode '{mode}'; use center_crop, letterbox or squash.")
    return out.clamp(0, 1)
