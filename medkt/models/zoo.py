"""The named models medkt ships: real weights (downloaded once) and tiny random-init twins."""
from __future__ import annotations

from medkt.models.open_clip_loader import build_open_clip, build_tiny_open_clip
from medkt.models.registry import ModelSpec, register_model


# ---------------------------------------------------------------------- open_clip family
_OPEN_CLIP = [
    ("clip-vit-b32", "ViT-B-32-quickgelu", "openai", "OpenAI CLIP ViT-B/32 (Table 1)"),
    ("clip-vit-b16", "ViT-B-16-quickgelu", "openai", "OpenAI CLIP ViT-B/16"),
    ("clip-vit-l14", "ViT-L-14-quickgelu", "openai", "OpenAI CLIP ViT-L/14 (Table 1)"),
    ("biomedclip", "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", None,
     "BiomedCLIP ViT-B/16 + PubMedBERT (MedCLIP-SAMv2 backbone)"),
]
for _name, _arch, _tag, _desc in _OPEN_CLIP:
    register_model(ModelSpec(
        name=_name, family="open_clip", builder=build_open_clip, description=_desc,
        source=f"open_clip {_arch}" + (f" / {_tag}" if _tag else ""),
        options={"arch": _arch, "tag": _tag}))

register_model(ModelSpec(
    name="tiny-clip", family="open_clip", builder=build_tiny_open_clip, tiny=True,
    description="tiny random-init open_clip ViT (64 px, 4 layers) for tests and demos",
    source="built offline (medkt/assets/model_configs/tiny-clip.json)", options={"arch": "tiny-clip"}))


# ---------------------------------------------------------------------- other families
# Importing these modules registers their models (SAM, CoCa, HF CLIP, MedCLIP, ViLT).
from medkt.models import sam as _sam  # noqa: E402,F401
from medkt.models import coca as _coca  # noqa: E402,F401
from medkt.models import hf_adapter as _hf_adapter  # noqa: E402,F401
from medkt.models import medclip as _medclip  # noqa: E402,F401
from medkt.models import vilt as _vilt  # noqa: E402,F401
