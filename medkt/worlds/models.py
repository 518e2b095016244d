"""Registry provider: the world models shipped as small fp16 files in ``medkt/assets/worlds``.

* ``world-clip``   — open_clip CLIP (32 px ViT, 4+4 layers) pretrained on the natural world;
* ``phantom-clip`` — open_clip CLIP (64 px ViT) pretrained on the medical phantoms
  (finding ``nodule`` held out of its text and images);
* ``phantom-sam``  — segment_anything ``Sam`` (256 px, 3-block encoder) trained
  class-agnostically on phantom findings with box and point prompts.

Each is rebuilt offline from its shipped file by the recipes in ``pipelines/worlds/``.
"""
from __future__ import annotations

from pathlib import Path

from medkt.models.registry import ModelSpec, register_model
from medkt.paths import assets_dir


def world_weights(filename: str) -> Path:
    """Path of a shipped world file (``medkt/assets/worlds/<filename>``)."""
    return assets_dir() / "worlds" / filename


def _build_world_clip(spec: ModelSpec, weights: str | None, device: str):
    from medkt.models import from_open_clip
    from medkt.worlds.pretrain import load_compact, world_tokenizer
    path = Path(weights) if weights else world_weights(spec.options["file"])
    raw, md = load_compact(path)
    model = from_open_clip(raw.to(device), world_tokenizer(md["arch"]), name=spec.name, weights=str(path))
    return model.eval()


def _build_phantom_sam(spec: ModelSpec, weights: str | None, device: str):
    from medkt.worlds.sam_train import load_phantom_sam
    return load_phantom_sam(Path(weights) if weights else world_weights(spec.options["file"]), device)


register_model(ModelSpec(
    name="world-clip", family="open_clip", builder=_build_world_clip, tiny=True,
    description="open_clip CLIP pretrained on medkt's natural shapes world (32 px; docs/worlds.md)",
    source="shipped: medkt/assets/worlds/world-clip.safetensors (pipelines/worlds/pretrain_world_clip.py)",
    options={"arch": "world-clip", "file": "world-clip.safetensors", "shipped": "worlds/world-clip.safetensors",
             "templates": "world"}))  # its pretraining prompts: "a photo of a/an X", "an image of a/an X"
register_model(ModelSpec(
    name="phantom-clip", family="open_clip", builder=_build_world_clip, tiny=True,
    description="open_clip CLIP pretrained on medkt's medical phantoms, 'nodule' held out (64 px)",
    source="shipped: medkt/assets/worlds/phantom-clip.safetensors (pipelines/worlds/pretrain_phantom_clip.py)",
    options={"arch": "world-phantom-clip", "file": "phantom-clip.safetensors",
             "shipped": "worlds/phantom-clip.safetensors",
             "templates": "name"}))  # phantom prompts are whole phrases ("axial chest ct showing ...")
register_model(ModelSpec(
    name="phantom-sam", family="segment_anything", builder=_build_phantom_sam, kind="sam", tiny=True,
    description="SAM-architecture promptable segmenter trained on phantom findings (256 px input)",
    source="shipped: medkt/assets/worlds/phantom-sam.safetensors (pipelines/worlds/train_phantom_sam.py)",
    options={"arch": "phantom", "variant": "sam", "file": "phantom-sam.safetensors",
             "shipped": "worlds/phantom-sam.safetensors"}))
