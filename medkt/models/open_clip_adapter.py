"""open_clip adapter: CLIP, BiomedCLIP (timm trunk + HF text) and the base for CoCa.

Load sources (all through open_clip's own loaders):
  * ``ViT-B-32-quickgelu`` + pretrained tag (``openai``, ``laion2b_s34b_b79k``, ...);
  * ``hf-hub:org/repo`` ids (BiomedCLIP);
  * ``local-dir:/path`` folders (``open_clip_config.json`` + weights);
  * a model name + a local checkpoint file.
In-memory models are wrapped with :func:`from_open_clip`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medkt.models.cls_block import class_token_block
from medkt.models.base import CONTRASTIVE, TEXT_TOKENS, VISUAL_TOKENS, VisionLanguageModel, VisualLayout

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _preprocess_stats(preprocess, model) -> tuple[int, tuple, tuple]:
    """Image size, mean and std from an open_clip preprocess transform (or the model's cfg)."""
    size, mean, std = None, OPENAI_MEAN, OPENAI_STD
    cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
    if cfg:
        mean = tuple(cfg.get("mean", mean))
        std = tuple(cfg.get("std", std))
        sz = cfg.get("size")
        size = sz if isinstance(sz, int) else (sz[0] if sz else None)
    for t in getattr(preprocess, "transforms", []) or []:
        if t.__class__.__name__ == "Normalize":
            mean, std = tuple(t.mean), tuple(t.std)
        if t.__class__.__name__ in ("CenterCrop", "Resize") and size is None:
            s = getattr(t, "size", None)
            size = s if isinstance(s, int) else (s[0] if s else None)
    if size is None:
        isz = getattr(model.visual, "image_size", 224)
        size = isz if isinstance(isz, int) else isz[0]
    return int(size), mean, std


class OpenClipModel(VisionLanguageModel):
    """Wraps an open_clip ``CLIP`` / ``CustomTextCLIP`` (incl. BiomedCLIP)."""

    family = "open_clip"
    capabilities = frozenset({CONTRASTIVE, VISUAL_TOKENS, TEXT_TOKENS})

    def __init__(self, model: nn.Module, tokenizer, *, name: str, image_size: int,
                 mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
                 weights: str | None = None):
        super().__init__(name=name, image_size=image_size, mean=mean, std=std, in_channels=3,
                         weights=weights)
        self.model = model
        self.tokenizer = tokenizer
        v = model.visual
        self._timm = hasattr(v, "trunk")
        caps = set(self.capabilities)
        if not self._timm and not hasattr(v, "transformer"):
            caps.discard(VISUAL_TOKENS)  # e.g. ModifiedResNet: no token interface
        if not hasattr(model, "transformer") or hasattr(model, "text"):
            caps.discard(TEXT_TOKENS)  # only the built-in text transformer exposes tokens
        self.capabilities = frozenset(caps)

    # ------------------------------------------------------------------ text
    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", 77))

    def tokenize(self, texts: Sequence[str]) -> dict:
        ids = self.tokenizer(list(texts))
        if isinstance(ids, dict):
            return dict(ids)
        return {"input_ids": ids}

    def encode_text(self, tokens: dict, normalize: bool = True) -> torch.Tensor:
        z = self.model.encode_text(tokens["input_ids"])
        return F.normalize(z, dim=-1) if normalize else z

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.model.visual(pixels)
        if isinstance(z, tuple):  # output_tokens=True (CoCa-style towers)
            z = z[0]
        return F.normalize(z, dim=-1) if normalize else z

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def logit_scale_parameter(self):
        return self.model.logit_scale

    # ------------------------------------------------------------------ vision tokens
    def visual_blocks(self) -> list[nn.Module]:
        v = self.model.visual
        return list(v.trunk.blocks) if self._timm else list(v.transformer.resblocks)

    def visual_layout(self, layer: int) -> VisualLayout:
        v = self.model.visual
        if self._timm:
            t = v.trunk
            gh, gw = t.patch_embed.grid_size
            n_prefix = getattr(t, "num_prefix_tokens", 1)
            return VisualLayout(n_prefix, gh, gw)
        gh, gw = v.grid_size
        return VisualLayout(1, gh, gw)

    def visual_tokens(self, pixels: torch.Tensor, layer: int) -> torch.Tensor:
        v = self.model.visual
        if self._timm:
            t = v.trunk
            x = t.patch_embed(pixels)
            x = t._pos_embed(x)
            x = t.patch_drop(x)
            x = t.norm_pre(x)
        else:
            x = v._embeds(pixels)
        return self._run_blocks(x, 0, layer)

    def encode_image_from(self, tokens: torch.Tensor, layer: int, normalize: bool = False) -> torch.Tensor:
        v = self.model.visual
        x = self._run_blocks(tokens, layer, self.num_visual_layers - 1)
        if layer < self.num_visual_layers:
            last = self.visual_blocks()[-1]
            row = class_token_block(last, x) if self._pools_class_token() else None
            x = last(x) if row is None else row
        if self._timm:
            x = v.trunk.norm(x)
            z = v.head(v.trunk.forward_head(x))
        else:
            pooled, _ = v._pool(x)
            z = pooled @ v.proj if v.proj is not None else pooled
        return F.normalize(z, dim=-1) if normalize else z

    def _pools_class_token(self) -> bool:
        """True when the image embedding reads only token 0 of the last block's output."""
        v = self.model.visual
        if self._timm:
            t = v.trunk
            return (getattr(t, "global_pool", None) == "token" and getattr(t, "attn_pool", None) is None
                    and getattr(t, "num_prefix_tokens", 1) >= 1)
        return getattr(v, "attn_pool", None) is None and getattr(v, "pool_type", None) == "tok"

    # ------------------------------------------------------------------ text tokens
    @property
    def num_text_layers(self) -> int:
        return len(self.model.transformer.resblocks)

    def _text_mask(self):
        return self.model.attn_mask

    def text_tokens(self, tokens: dict, layer: int) -> torch.Tensor:
        m = self.model
        ids = tokens["input_ids"]
        x = m.token_embedding(ids) + m.positional_embedding[: ids.shape[1]]
        for blk in list(m.transformer.resblocks)[:layer]:
            x = blk(x, attn_mask=self._text_mask())
        return x

    def encode_text_from(self, hidden: torch.Tensor, tokens: dict, layer: int,
                         normalize: bool = False) -> torch.Tensor:
        m = self.model
        x = hidden
        for blk in list(m.transformer.resblocks)[layer:]:
            x = blk(x, attn_mask=self._text_mask())
        x = m.ln_final(x)
        ids = tokens["input_ids"]
        pooled = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        z = pooled @ m.text_projection if not isinstance(m.text_projection, nn.Linear) \
            else m.text_projection(pooled)
        return F.normalize(z, dim=-1) if normalize else z

    # ------------------------------------------------------------------ parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        m = self.model
        v = m.visual
        groups: dict[str, list[nn.Parameter]] = {}
        if self._timm:
            groups["visual_proj"] = list(v.head.parameters())
            groups["visual_tower"] = list(v.trunk.parameters())
        else:
            proj = [v.proj] if isinstance(getattr(v, "proj", None), nn.Parameter) else []
            ids = {id(p) for p in proj}
            groups["visual_proj"] = proj
            groups["visual_tower"] = [p for p in v.parameters() if id(p) not in ids]
        if hasattr(m, "text"):  # CustomTextCLIP / CoCa
            t = m.text
            proj_mod = getattr(t, "proj", None) or getattr(t, "text_projection", None)
            if isinstance(proj_mod, nn.Parameter):
                tp = [proj_mod]
            elif isinstance(proj_mod, nn.Module):
                tp = list(proj_mod.parameters())
            else:
                tp = []
            ids = {id(p) for p in tp}
            groups["text_proj"] = tp
            groups["text_tower"] = [p for p in t.parameters() if id(p) not in ids]
        else:
            tp = m.text_projection
            tp_list = [tp] if isinstance(tp, nn.Parameter) else list(tp.parameters())
            groups["text_proj"] = tp_list
            tower = [m.token_embedding.weight, m.positional_embedding]
            tower += list(m.transformer.parameters()) + list(m.ln_final.parameters())
            groups["text_tower"] = tower
        if hasattr(m, "text_decoder"):
            groups["decoder"] = list(m.text_decoder.parameters())
        groups["logit_scale"] = [m.logit_scale]
        if getattr(m, "logit_bias", None) is not None:
            groups["logit_scale"].append(m.logit_bias)
        return self._check_groups_cover(groups)


def from_open_clip(model: nn.Module, tokenizer, preprocess=None, *, name: str = "wrapped-open_clip",
                   weights: str | None = "in-memory") -> OpenClipModel:
    """Wrap an in-memory open_clip model (``CLIP``, ``CustomTextCLIP`` or ``CoCa``).

    ``preprocess`` (the val transform from ``create_model_and_transforms``) supplies the
    image size and normalisation; without it the model's ``preprocess_cfg`` is used.
    """
    size, mean, std = _preprocess_stats(preprocess, model)
    if model.__class__.__name__ == "CoCa":
        from medkt.models.coca import CocaModel
        return CocaModel(model, tokenizer, name=name, image_size=size, mean=mean, std=std, weights=weights)
    return OpenClipModel(model, tokenizer, name=name, image_size=size, mean=mean, std=std, weights=weights)
