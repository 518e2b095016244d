"""The world models shipped as small fp16 files in ``medkt/assets/worlds``: builders and I/O.

* ``world-clip``   — open_clip CLIP (32 px ViT, 4+4 layers) pretrained on the natural world;
* ``phantom-clip`` — open_clip CLIP (64 px ViT, mean-pooled patch tokens) pretrained on
  counterfactual pairs of medical phantoms (finding ``nodule`` held out of its text and images);
* ``phantom-sam``  — segment_anything ``Sam`` (256 px, 3-block encoder) trained
  class-agnostically on phantom findings with box and point prompts.

Everything needed to *load* them lives here, in the model layer, so the registry imports
nothing above ``medkt.models``; the training recipes (:mod:`medkt.worlds.pretrain`,
:mod:`medkt.worlds.sam_train`, scripts in ``pipelines/worlds/``) import the I/O from here.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from medkt.errors import CheckpointMismatchError, WeightsError
from medkt.models.registry import ModelSpec, register_model
from medkt.paths import assets_dir

EMBED_STD = 0.02
WORLD_FORMAT = "medkt-world-compact-1"
PHANTOM_SAM_FORMAT = "medkt-phantom-sam-1"


def world_weights(filename: str) -> Path:
    """Path of a shipped world file (``medkt/assets/worlds/<filename>``)."""
    return assets_dir() / "worlds" / filename


# ----------------------------------------------------------------------------- world CLIPs
def create_world_clip(arch: str, embedding_seed: int = 1234, seed: int = 0):
    """Random-init open_clip model for ``arch`` with a regenerable token embedding."""
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    torch.manual_seed(seed)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights" for every random init
    try:
        model = open_clip.create_model(arch, pretrained=None)
    finally:
        root.setLevel(level)
    with torch.no_grad():
        model.token_embedding.weight.copy_(initial_token_embedding(model.token_embedding.weight.shape,
                                                                   embedding_seed))
    return model


def world_tokenizer(arch: str):
    """open_clip tokenizer with the architecture's context length (configs registered first)."""
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    return open_clip.get_tokenizer(arch)


def initial_token_embedding(shape, embedding_seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(embedding_seed))
    return torch.randn(tuple(shape), generator=g) * EMBED_STD


# ----------------------------------------------------------------------------- compact export (CLIP)
def export_compact(model, path: str | Path, keep_token_ids, *, arch: str, embedding_seed: int,
                   meta: dict | None = None) -> Path:
    """fp16 safetensors of ``model`` keeping only ``keep_token_ids`` rows of the token embedding."""
    from safetensors.torch import save_file
    from medkt.runs import atomic_path
    ids = torch.tensor(sorted(set(int(i) for i in keep_token_ids)), dtype=torch.int64)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "token_embedding.weight":
            sd["token_embedding.rows"] = v[ids].half().contiguous()
            sd["token_embedding.ids"] = ids
        elif k == "attn_mask":
            continue
        else:
            sd[k] = v.half().contiguous() if v.is_floating_point() else v.contiguous()
    md = {"arch": arch, "embedding_seed": str(embedding_seed), "format": WORLD_FORMAT}
    md.update({k: str(v) for k, v in (meta or {}).items()})
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=md)
    return Path(path)


def load_compact(path: str | Path, seed: int = 0):
    """Rebuild the raw open_clip model saved by :func:`export_compact` (fp32)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise WeightsError("world weights not found.", path=str(path),
                           hint="reinstall medkt or rerun the recipe in pipelines/worlds/")
    with safe_open(str(path), "pt") as f:
        md = f.metadata() or {}
        sd = {k: f.get_tensor(k) for k in f.keys()}
    if md.get("format") != WORLD_FORMAT:
        raise CheckpointMismatchError("not a medkt world checkpoint (missing format metadata).", path=str(path))
    model = create_world_clip(md["arch"], int(md["embedding_seed"]), seed=seed)
    ids, rows = sd.pop("token_embedding.ids"), sd.pop("token_embedding.rows")
    full = model.token_embedding.weight.detach().clone()
    full[ids] = rows.float()
    sd["token_embedding.weight"] = full
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "attn_mask"]
    if missing or unexpected:
        raise CheckpointMismatchError(f"keys do not match architecture {md['arch']}: missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}", path=str(path))
    model.eval()
    return model, md

# ----------------------------------------------------------------------------- phantom SAM
PHANTOM_SAM_ARCH = dict(image_size=256, encoder_embed_dim=64, encoder_depth=3, encoder_num_heads=2,
                        window_size=4, global_attn_indexes=(2,), prompt_embed_dim=32, mask_in_chans=8,
                        decoder_mlp_dim=64, decoder_heads=2, iou_head_hidden_dim=64)


def build_phantom_sam(seed: int = 0):
    """Random-init ``Sam`` of :data:`PHANTOM_SAM_ARCH` wrapped as a :class:`SamModel`."""
    from medkt.models.sam import SamModel, build_sam_module
    torch.manual_seed(seed)
    sam = build_sam_module(**PHANTOM_SAM_ARCH)
    return SamModel(sam, name="phantom-sam", variant="sam", weights="random-init")


def export_sam(model, path: str | Path, meta: dict | None = None) -> Path:
    """fp16 safetensors of ``model.sam``'s state dict."""
    from safetensors.torch import save_file
    from medkt.runs import atomic_path
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.sam.state_dict().items()}
    with atomic_path(path) as tmp:
        md = {"format": PHANTOM_SAM_FORMAT, **{k: str(v) for k, v in (meta or {}).items()}}
        save_file(sd, str(tmp), metadata=md)
    return Path(path)


def load_phantom_sam(path: str | Path, device: str = "cpu"):
    """Build ``phantom-sam`` from its shipped fp16 weights (strict)."""
    from safetensors.torch import load_file
    from medkt.errors import WeightsError
    from medkt.models.sam import SamModel, build_sam_module
    path = Path(path)
    if not path.is_file():
        raise WeightsError("phantom-sam weights not found.", path=str(path),
                           hint="reinstall medkt or run pipelines/worlds/train_phantom_sam.py")
    sam = build_sam_module(**PHANTOM_SAM_ARCH)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    sam.load_state_dict(sd, strict=True)
    return SamModel(sam.to(device).eval(), name="phantom-sam", variant="sam", weights=str(path))


# ----------------------------------------------------------------------------- registry
def _build_world_clip(spec: ModelSpec, weights: str | None, device: str):
    from medkt.models.open_clip_adapter import from_open_clip
    path = Path(weights) if weights else world_weights(spec.options["file"])
    raw, md = load_compact(path)
    model = from_open_clip(raw.to(device), world_tokenizer(md["arch"]), name=spec.name, weights=str(path))
    return model.eval()


def _build_phantom_sam(spec: ModelSpec, weights: str | None, device: str):
    return load_phantom_sam(Path(weights) if weights else world_weights(spec.options["file"]), device)


register_model(ModelSpec(
    name="world-clip", family="open_clip", builder=_build_world_clip, tiny=True,
    description="open_clip CLIP pretrained on medkt's natural shapes world (32 px; docs/worlds.md)",
    source="shipped: medkt/assets/worlds/world-clip.safetensors (pipelines/worlds/pretrain_world_clip.py)",
    options={"arch": "world-clip", "file": "world-clip.safetensors", "shipped": "worlds/world-clip.safetensors",
             "templates": "world"}))  # its pretraining prompts: "a photo of a/an X", "an image of a/an X"
register_model(ModelSpec(
    name="phantom-clip", family="open_clip", builder=_build_world_clip, tiny=True,
    description="open_clip CLIP pretrained on medkt's medical phantoms, 'nodule' held out (64 px, avg pool)",
    source="shipped: medkt/assets/worlds/phantom-clip.safetensors (pipelines/worlds/pretrain_phantom_clip.py)",
    options={"arch": "world-phantom-clip-v2", "file": "phantom-clip.safetensors",
             "shipped": "worlds/phantom-clip.safetensors",
             "templates": "name"}))  # phantom prompts are whole phrases ("axial chest ct showing ...")
register_model(ModelSpec(
    name="phantom-sam", family="segment_anything", builder=_build_phantom_sam, kind="sam", tiny=True,
    description="SAM-architecture promptable segmenter trained on phantom findings (256 px input)",
    source="shipped: medkt/assets/worlds/phantom-sam.safetensors (pipelines/worlds/train_phantom_sam.py)",
    options={"arch": "phantom", "variant": "sam", "file": "phantom-sam.safetensors",
             "shipped": "worlds/phantom-sam.safetensors"}))
