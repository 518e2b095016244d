"""MedCLIP (Swin-T vision + Bio_ClinicalBERT text, 512-d) reimplemented on transformers.

The ``medclip`` package does not import with transformers 5 and downloads at
construction, so the architecture is rebuilt from ``SwinModel`` + ``BertModel``:

* vision: ``SwinModel.pooler_output`` (768) → ``projection_head`` ``Linear(768, 512, bias=False)``;
  1-channel input is repeated to 3 inside the tower;
* text: ``BertModel`` hidden states ``[1]``, ``[2]`` and ``[-1]`` → mean over tokens
  (**ignoring the attention mask**, padding included, as MedCLIP does) → mean over the
  three layers → ``projection_head`` ``Linear(768, 512, bias=False)``;
* ``logit_scale`` = log(1/0.07) init; the scale used is ``exp(clamp(logit_scale, 0, 4.6052))``.

Checkpoints use MedCLIP's **original key names** (``vision_model.model.*``,
``vision_model.projection_head.weight``, ``text_model.model.*``,
``text_model.projection_head.weight``, ``logit_scale``; Swin keys in the transformers 4.x
layout, e.g. ``...attention.self.query.weight``).  :func:`load_medclip_checkpoint` maps
them onto transformers 5 modules, drops ``*.position_ids`` and checks Swin's
``relative_position_index`` buffers (recomputed in v5) before a strict load;
:func:`save_medclip_checkpoint` writes the same layout, so a saved file looks like the
published ``pytorch_model.bin``.

Preprocessing: grayscale (ITU-R 601 luma, as PIL ``"L"``), zero-pad to a centred square,
bicubic resize to 224, normalise with mean 0.5862785803043838 / std 0.27950088968644304 →
``[1, 224, 224]``.  Tokenizer: Bio_ClinicalBERT, max length 77, padded to the longest text
of each call (so, as in MedCLIP, a text's embedding depends on its batch's padding).
Vision tokens (M2IB) are not exposed for the Swin tower (its stages change resolution).
Registered: ``medclip-vit`` (real) and ``tiny-medclip`` (random init, 64 px, toy vocab).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medkt.models.base import CONTRASTIVE, VisionLanguageModel, image_to_unit_tensor, resize_to_square
from medkt.models.registry import ModelSpec, register_model

MEDCLIP_MEAN = 0.5862785803043838
MEDCLIP_STD = 0.27950088968644304
LOGIT_SCALE_MAX = 4.6052
CHECKPOINT_NAME = "pytorch_model.bin"
BERT_TYPE = "emilyalsentzer/Bio_ClinicalBERT"

REAL_SWIN = dict(image_size=224, patch_size=4, num_channels=3, embed_dim=96, depths=[2, 2, 6, 2],
                 num_heads=[3, 6, 12, 24], window_size=7)  # microsoft/swin-tiny-patch4-window7-224
REAL_BERT = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)  # Bio_ClinicalBERT (BERT-base cased)
TINY_SWIN = dict(image_size=64, patch_size=4, num_channels=3, embed_dim=32, depths=[1, 1],
                 num_heads=[2, 4], window_size=4)
TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 max_position_embeddings=80)


class MedCLIPVisionModelViT(nn.Module):
    """Swin tower + bias-free projection (keys ``model.*``, ``projection_head.weight``)."""

    def __init__(self, swin_cfg: dict, proj_dim: int = 512):
        super().__init__()
        from transformers import SwinConfig, SwinModel
        self.model = SwinModel(SwinConfig(**swin_cfg))
        self.projection_head = nn.Linear(self.model.num_features, proj_dim, bias=False)

    def forward(self, pixel_values: torch.Tensor, project: bool = True) -> torch.Tensor:
        if pixel_values.shape[1] == 1:
            pixel_values = pixel_values.repeat(1, 3, 1, 1)
        z = self.model(pixel_values=pixel_values).pooler_output
        return self.projection_head(z) if project else z


class MedCLIPTextModel(nn.Module):
    """BERT + 3-layer unmasked mean pooling + bias-free projection."""

    def __init__(self, bert_cfg: dict, proj_dim: int = 512):
        super().__init__()
        from transformers import BertConfig, BertModel
        if bert_cfg.get("num_hidden_layers", 12) < 2:
            from medkt.errors import ConfigError
            raise ConfigError("MedCLIP text pooling uses hidden states 1, 2 and -1: BERT needs >= 2 layers.")
        self.model = BertModel(BertConfig(**bert_cfg), add_pooling_layer=True)
        self.projection_head = nn.Linear(self.model.config.hidden_size, proj_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hs = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        stacked = torch.stack([hs[1], hs[2], hs[-1]], dim=1)  # [B, 3, T, C]
        return self.projection_head(stacked.mean(dim=2).mean(dim=1))


class MedCLIPNet(nn.Module):
    """The module whose ``state_dict`` mirrors MedCLIP's ``MedCLIPModel`` (after key mapping)."""

    def __init__(self, swin_cfg: dict, bert_cfg: dict, proj_dim: int = 512):
        super().__init__()
        self.vision_model = MedCLIPVisionModelViT(swin_cfg, proj_dim)
        self.text_model = MedCLIPTextModel(bert_cfg, proj_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


# ---------------------------------------------------------------------- key mapping (4.x <-> 5.x Swin)
_SWIN_V4_TO_V5 = [  # applied in order, only under vision_model.model.
    ("attention.self.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
    ("attention.self.query.", "attention.q_proj."), ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj."),
    ("intermediate.dense.", "mlp.fc1."), (".output.dense.", ".mlp.fc2."),
]
_VISION = "vision_model.model."
_REL_INDEX = re.compile(r"\.attention\.self\.relative_position_index$")


def to_original_keys(net: MedCLIPNet) -> dict[str, torch.Tensor]:
    """``net``'s weights under MedCLIP's published names (Swin 4.x layout, incl. buffers)."""
    out = {}
    for k, v in net.state_dict().items():
        if k.startswith(_VISION):
            for old, new in reversed(_SWIN_V4_TO_V5):
                k = k.replace(new, old)
        out[k] = v
    for name, buf in net.named_buffers():  # buffers published by 4.x but non-persistent in 5.x
        if name.endswith("relative_position_bias.relative_position_index"):
            n = int(math.isqrt(buf.numel()))
            out[name.replace("attention.relative_position_bias.", "attention.self.")] = buf.view(n, n).clone()
        elif name == "text_model.model.embeddings.position_ids":
            out[name] = buf.view(1, -1).clone()
    return out


def from_original_keys(sd: dict[str, torch.Tensor], net: MedCLIPNet, path) -> dict[str, torch.Tensor]:
    """Published names → this module's names; drops ``position_ids`` and verified rel-pos indices."""
    from medkt.errors import CheckpointMismatchError
    buffers = dict(net.named_buffers())
    out = {}
    for k, v in sd.items():
        if k.endswith(("position_ids", "token_type_ids")):
            continue
        if _REL_INDEX.search(k):
            mine = buffers.get(k.replace("attention.self.", "attention.relative_position_bias."))
            if mine is None or not torch.equal(mine.view(-1), v.reshape(-1).to(mine.dtype)):
                raise CheckpointMismatchError(f"Swin window layout differs at '{k}'.", path=str(path),
                                              hint="this checkpoint was made for another window size")
            continue
        if k.startswith(_VISION):
            for old, new in _SWIN_V4_TO_V5:
                k = k.replace(old, new)
        out[k] = v
    return out


def load_medclip_checkpoint(net: MedCLIPNet, path) -> None:
    """Safe, strict load of a MedCLIP ``pytorch_model.bin`` (or .safetensors) into ``net``."""
    from medkt.models.weights import load_strict, read_state_dict
    load_strict(net, from_original_keys(read_state_dict(path), net, path), path)


def save_medclip_checkpoint(model: "MedCLIPModel", path) -> str:
    """Write ``model`` under the published key names (``torch.save``; ``.safetensors`` too)."""
    from medkt.models.weights import write_state_dict
    return write_state_dict(to_original_keys(model.net), path)


# ---------------------------------------------------------------------- medkt interface
class MedCLIPModel(VisionLanguageModel):
    """MedCLIP behind the medkt interface (1-channel input, 512-d embeddings)."""

    family = "medclip"
    capabilities = frozenset({CONTRASTIVE})

    def __init__(self, net: MedCLIPNet, tokenizer, *, name: str, image_size: int, weights: str | None = None,
                 max_length: int = 77):
        super().__init__(name=name, image_size=image_size, mean=(MEDCLIP_MEAN,), std=(MEDCLIP_STD,),
                         in_channels=1, weights=weights)
        self.net = net
        self.tokenizer = tokenizer
        self.max_length = max_length

    def preprocess(self, image, mode: str = "pad_square") -> torch.Tensor:
        """MedCLIP preprocessing (``pad_square``: gray, centred zero-pad, bicubic resize) → ``[1, S, S]``."""
        x = image_to_unit_tensor(image)
        if x.shape[0] >= 3:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]  # PIL "L" luma
        if mode == "pad_square":
            h, w = x.shape[-2:]
            s = max(h, w)
            top, left = (s - h) // 2, (s - w) // 2
            x = F.pad(x, (left, s - w - left, top, s - h - top))
            mode = "squash"
        x = resize_to_square(x[None], self.image_size, mode)[0]
        return self.normalize(x[None])[0]

    def tokenize(self, texts: Sequence[str]) -> dict:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.net.vision_model(pixels)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text(self, tokens: dict, normalize: bool = True) -> torch.Tensor:
        z = self.net.text_model(tokens["input_ids"], tokens.get("attention_mask"))
        return F.normalize(z, dim=-1) if normalize else z

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.net.logit_scale.clamp(0, LOGIT_SCALE_MAX).exp()

    def logit_scale_parameter(self):
        return self.net.logit_scale

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        n = self.net
        return self._check_groups_cover({
            "visual_tower": list(n.vision_model.model.parameters()),
            "visual_proj": list(n.vision_model.projection_head.parameters()),
            "text_tower": list(n.text_model.model.parameters()),
            "text_proj": list(n.text_model.projection_head.parameters()),
            "logit_scale": [n.logit_scale]})


# ---------------------------------------------------------------------- builders
def build_tiny_medclip(seed: int = 0, proj_dim: int = 64) -> MedCLIPModel:
    from medkt.models.hf_adapter import toy_bert_tokenizer
    tok = toy_bert_tokenizer(77)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MedCLIPNet(TINY_SWIN, {**TINY_BERT, "vocab_size": tok.vocab_size}, proj_dim).eval()
    return MedCLIPModel(net, tok, name="tiny-medclip", image_size=TINY_SWIN["image_size"],
                        weights=f"random-init (seed {seed})")


def _bert_tokenizer(folder: Path | None, spec):
    """Bio_ClinicalBERT tokenizer: from the weights folder if it has one, else the HF cache."""
    from transformers import AutoTokenizer
    from medkt.models.weights import hf_local_only, missing
    for cand in ([folder, folder / "tokenizer"] if folder else []):
        if cand.is_dir() and any((cand / f).is_file() for f in ("vocab.txt", "tokenizer.json")):
            return AutoTokenizer.from_pretrained(str(cand), local_files_only=True, model_max_length=77)
    try:
        return AutoTokenizer.from_pretrained(BERT_TYPE, model_max_length=77, **hf_local_only(spec, BERT_TYPE))
    except OSError:
        raise missing(spec, f"the {BERT_TYPE} tokenizer is not in {folder} (vocab.txt) nor in the "
                            "Hugging Face cache") from None


def _build(spec: ModelSpec, weights: str | None, device: str) -> MedCLIPModel:
    from medkt.models.weights import resolve_file
    if spec.tiny and not weights:
        return build_tiny_medclip().to(device)
    path = resolve_file(spec, weights, CHECKPOINT_NAME)
    if spec.tiny:
        tiny = build_tiny_medclip()
        load_medclip_checkpoint(tiny.net, path)
        tiny.weights = str(path)
        return tiny.to(device)
    tok = _bert_tokenizer(path.parent, spec)
    net = MedCLIPNet(REAL_SWIN, REAL_BERT, 512)
    load_medclip_checkpoint(net, path)
    return MedCLIPModel(net.eval(), tok, name=spec.name, image_size=224, weights=str(path)).to(device)


register_model(ModelSpec(
    name="medclip-vit", family="medclip", builder=_build,
    description="MedCLIP Swin-T + Bio_ClinicalBERT (512-d), reimplemented on transformers",
    source="https://storage.googleapis.com/pytrial/medclip-vit-pretrained.zip (unzip; pytorch_model.bin) "
           f"+ {BERT_TYPE} tokenizer",
    files=[{"url": "https://storage.googleapis.com/pytrial/medclip-vit-pretrained.zip", "unzip": True,
            "filename": CHECKPOINT_NAME}, {"repo": BERT_TYPE, "tokenizer_only": True}],
    options={"arch": "Swin-T + Bio_ClinicalBERT", "image_size": 224, "in_channels": 1, "mean": (MEDCLIP_MEAN,),
             "std": (MEDCLIP_STD,)}))
register_model(ModelSpec(
    name="tiny-medclip", family="medclip", builder=_build, tiny=True,
    description="tiny random-init MedCLIP (Swin 64 px, 2-layer BERT, toy vocab) for tests",
    source="built offline (transformers SwinConfig/BertConfig + medkt/assets/tokenizers/toy-bert)",
    options={"arch": "Swin (64 px) + 2-layer BERT", "image_size": TINY_SWIN["image_size"], "in_channels": 1,
             "mean": (MEDCLIP_MEAN,), "std": (MEDCLIP_STD,)}))
