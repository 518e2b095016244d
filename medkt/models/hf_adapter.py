"""Hugging Face ``CLIPModel`` adapter: wrap in-memory models, load hub ids or local folders.

* :func:`from_hf` ``(model, processor)`` wraps a ``transformers.CLIPModel`` (or a model
  with the same layout) and its ``CLIPProcessor`` (or just a tokenizer).
* :func:`load_hf_clip` ``(id_or_folder)`` loads with ``from_pretrained``; offline (the
  default) it passes ``local_files_only=True`` so nothing touches the network, and a
  missing model raises :class:`WeightsMissingError`.  Never ``trust_remote_code``.
* :func:`save_hf_clip` writes ``save_pretrained`` folders (config.json, model.safetensors,
  tokenizer and image-processor files) that :func:`load_hf_clip` reads back.

transformers 5 ``get_image_features`` / ``get_text_features`` return output objects whose
``pooler_output`` is the projected embedding (4.x returned the tensor); :func:`_features`
accepts both.  Vision tokens (M2IB) are the CLIP vision encoder's hidden states:
``[B, 1 + g*g, C]`` with the CLS token first, ``g = image_size // patch_size``.
Registered: ``hf-clip-vit-b32`` (``openai/clip-vit-base-patch32``) and ``tiny-hf-clip``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medkt.errors import ConfigError
from medkt.models.base import CONTRASTIVE, VISUAL_TOKENS, VisionLanguageModel, VisualLayout
from medkt.models.registry import ModelSpec, register_model

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(out) -> torch.Tensor:
    """Tensor from a transformers 4 (tensor) or 5 (``BaseModelOutputWithPooling``) feature getter."""
    return out if torch.is_tensor(out) else out.pooler_output


def _layer_out(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


class HFClipModel(VisionLanguageModel):
    """A ``transformers.CLIPModel`` behind the medkt interface."""

    family = "hf_clip"
    capabilities = frozenset({CONTRASTIVE, VISUAL_TOKENS})

    def __init__(self, model: nn.Module, processor, *, name: str, weights: str | None = None,
                 max_length: int | None = None):
        vcfg = model.config.vision_config
        ip = getattr(processor, "image_processor", None)
        mean = tuple(getattr(ip, "image_mean", None) or OPENAI_MEAN)
        std = tuple(getattr(ip, "image_std", None) or OPENAI_STD)
        super().__init__(name=name, image_size=vcfg.image_size, mean=mean, std=std, in_channels=3,
                         weights=weights)
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = int(max_length or model.config.text_config.max_position_embeddings)
        self.patch_size = int(vcfg.patch_size)

    # ------------------------------------------------------------------ contrastive
    def tokenize(self, texts: Sequence[str]) -> dict:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def encode_text(self, tokens: dict, normalize: bool = True) -> torch.Tensor:
        z = _features(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                   attention_mask=tokens.get("attention_mask")))
        return F.normalize(z, dim=-1) if normalize else z

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = _features(self.model.get_image_features(pixel_values=pixels))
        return F.normalize(z, dim=-1) if normalize else z

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def logit_scale_parameter(self):
        return self.model.logit_scale

    # ------------------------------------------------------------------ vision tokens
    def visual_blocks(self) -> list[nn.Module]:
        return list(self.model.vision_model.encoder.layers)

    def visual_layout(self, layer: int) -> VisualLayout:
        g = self.image_size // self.patch_size
        return VisualLayout(1, g, g)

    def _run_blocks(self, tokens: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for blk in self.visual_blocks()[start:stop]:
            tokens = _layer_out(blk(tokens, None))
        return tokens

    def visual_tokens(self, pixels: torch.Tensor, layer: int) -> torch.Tensor:
        vm = self.model.vision_model
        x = vm.pre_layrnorm(vm.embeddings(pixels))
        return self._run_blocks(x, 0, layer)

    def encode_image_from(self, tokens: torch.Tensor, layer: int, normalize: bool = False) -> torch.Tensor:
        vm = self.model.vision_model
        x = self._run_blocks(tokens, layer, self.num_visual_layers)
        z = self.model.visual_projection(vm.post_layernorm(x[:, 0]))
        return F.normalize(z, dim=-1) if normalize else z

    # ------------------------------------------------------------------ parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        m = self.model
        return self._check_groups_cover({
            "visual_tower": list(m.vision_model.parameters()),
            "visual_proj": list(m.visual_projection.parameters()),
            "text_tower": list(m.text_model.parameters()),
            "text_proj": list(m.text_projection.parameters()),
            "logit_scale": [m.logit_scale],
        })


def from_hf(model: nn.Module, processor, *, name: str = "wrapped-hf-clip",
            weights: str | None = "in-memory") -> HFClipModel:
    """Wrap an in-memory ``transformers.CLIPModel`` and its processor (or tokenizer)."""
    if not (hasattr(model, "get_image_features") and hasattr(model, "vision_model")):
        raise ConfigError(f"from_hf expects a transformers CLIPModel, got {type(model).__name__}.",
                          hint="for ViLT use medkt.models.vilt; for open_clip models use from_open_clip")
    return HFClipModel(model.eval(), processor, name=name, weights=weights)


def load_hf_clip(source: str, *, name: str | None = None, device: str = "cpu", spec=None) -> HFClipModel:
    """Load a ``CLIPModel`` + processor from a hub id or a local ``save_pretrained`` folder."""
    from transformers import AutoProcessor, AutoTokenizer, CLIPModel
    from medkt.models.weights import hf_local_only
    local = Path(source).expanduser().is_dir()
    kw = {"local_files_only": True} if local else hf_local_only(spec, source)
    model = CLIPModel.from_pretrained(str(source), **kw)
    try:
        processor = AutoProcessor.from_pretrained(str(source), **kw)
    except (OSError, ValueError, TypeError):
        processor = AutoTokenizer.from_pretrained(str(source), **kw)
    return HFClipModel(model.to(device).eval(), processor, name=name or str(source), weights=str(source))


def save_hf_clip(model: HFClipModel, folder: str | Path) -> Path:
    """``save_pretrained`` the model and its processor/tokenizer into ``folder``."""
    folder = Path(folder)
    model.model.save_pretrained(str(folder))
    model.processor.save_pretrained(str(folder))
    return folder


# ---------------------------------------------------------------------- tiny model
def toy_bert_tokenizer(max_length: int = 32):
    """BERT WordPiece tokenizer over medkt's shipped toy vocabulary (offline)."""
    from transformers import BertTokenizer
    from medkt.paths import assets_dir
    return BertTokenizer.from_pretrained(str(assets_dir() / "tokenizers" / "toy-bert"),
                                         model_max_length=max_length, local_files_only=True)


def build_tiny_hf_clip(seed: int = 0, image_size: int = 64):
    """``(CLIPModel, CLIPProcessor)``: hidden 64, 2+2 layers, patch 16, toy vocab (~0.2M params)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
    tok = toy_bert_tokenizer(32)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=tok.cls_token_id,
                         eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=16),
        projection_dim=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(cfg).eval()
    ip = CLIPImageProcessor(size={"shortest_edge": image_size},
                            crop_size={"height": image_size, "width": image_size})
    return model, CLIPProcessor(image_processor=ip, tokenizer=tok)


def _build(spec: ModelSpec, weights: str | None, device: str) -> HFClipModel:
    from medkt.models.weights import resolve_hf_folder
    if spec.tiny and not weights:
        model, proc = build_tiny_hf_clip()
        return HFClipModel(model.to(device), proc, name=spec.name, weights="random-init (seed 0)")
    source = resolve_hf_folder(spec, weights)
    return load_hf_clip(source, name=spec.name, device=device, spec=spec)


register_model(ModelSpec(
    name="hf-clip-vit-b32", family="hf_clip", builder=_build,
    description="OpenAI CLIP ViT-B/32 through transformers.CLIPModel",
    source="hf-hub:openai/clip-vit-base-patch32",
    options={"repo": "openai/clip-vit-base-patch32", "arch": "CLIPModel ViT-B/32", "image_size": 224,
             "in_channels": 3, "mean": OPENAI_MEAN, "std": OPENAI_STD},
    files=[{"repo": "openai/clip-vit-base-patch32"}]))
register_model(ModelSpec(
    name="tiny-hf-clip", family="hf_clip", builder=_build, tiny=True,
    description="tiny random-init transformers CLIPModel (64 px, toy BERT vocab) for tests",
    source="built offline (transformers CLIPConfig + medkt/assets/tokenizers/toy-bert)",
    options={"arch": "CLIPModel (hidden 64, 2+2 layers)", "image_size": 64, "in_channels": 3, "mean": OPENAI_MEAN,
             "std": OPENAI_STD}))
