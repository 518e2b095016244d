"""SAM v1, MedSAM and tiny-SAM behind one small segmenter-backend wrapper.

Registered names (``kind="sam"``): ``sam-vit-b``, ``sam-vit-l``, ``sam-vit-h``, ``medsam``
(real checkpoints) and ``tiny-sam`` (random init, seeded, 256 px, ~0.2M params)::

    from medkt.models import create_model
    m = create_model("tiny-sam")                 # or "medsam", weights="medsam_vit_b.pth"
    prep = m.prepare_image(image)                # HxW / HxWxC array (uint8 or float in [0,1])
    emb = m.embed(prep.pixels)                   # [1, C, S/16, S/16]  (compute once, reuse)
    boxes = m.transform_boxes(xyxy, prep)        # [N, 4] original px -> model input px
    low, iou = m.decode(emb, boxes=boxes, multimask=False)   # [N, K, S/4, S/4], [N, K]
    logits = m.upscale(low, prep)                # [N, K, H, W] logits at original size
    masks = logits > m.mask_threshold            # bool masks

Conventions
-----------
* Images: ``H×W`` or ``H×W×C`` (C = 1 or 3; RGB), integer dtypes scaled by dtype max,
  float arrays assumed in [0, 1]; tensors ``[C, H, W]`` in [0, 1].  Both encoders are fed
  8-bit RGB (as the official SAM predictor and MedSAM inference script do).
* Coordinates: pixels of the *original* image, ``x`` = column, ``y`` = row; boxes are
  ``XYXY``; point labels 1 = foreground, 0 = background.  ``transform_*`` maps them to
  the model input frame (``image_size`` square).
* ``variant == "sam"``: SAM's own preprocessing (``ResizeLongestSide`` to ``image_size``,
  ImageNet mean/std on the 0–255 scale, zero-pad bottom/right) — identical to
  ``SamPredictor.set_image``.  ``variant == "medsam"``: MedSAM's (skimage order-3 resize
  to ``image_size²``, min-max to [0, 1], no mean/std); both end
  with logits thresholded at 0 (MedSAM's sigmoid > 0.5 is the same test).
* ``.predictor()`` returns segment_anything's ``SamPredictor`` (SAM variant only: it
  applies SAM's mean/std) for code that prefers that API.

Segmenter backend interface (what SAM 2 must provide to plug in)
-----------------------------------------------------------------
``name``, ``variant``, ``image_size``, ``weights``, ``mask_threshold``, and the five
methods ``prepare_image``, ``embed``, ``transform_boxes`` / ``transform_points``,
``decode`` and ``upscale`` with the shapes above (``embed`` may return any object that
``decode`` accepts, e.g. SAM 2's multi-scale feature dict).  Register the builder with
``register_model(ModelSpec(..., kind="sam"))``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medkt.errors import ConfigError, InputError
from medkt.models.registry import ModelSpec, register_model

SAM_MEAN = (123.675, 116.28, 103.53)  # 0-255 scale
SAM_STD = (58.395, 57.12, 57.375)
VARIANTS = ("sam", "medsam")


@dataclass
class PreparedImage:
    """Model input plus the geometry needed to map results back.

    ``pixels`` ``[1, 3, S, S]`` float (None once encoded: decoding needs only the geometry);
    ``original_hw`` the input image size; ``input_hw`` the resized image inside the padded
    square (SAM) or ``(S, S)`` (MedSAM).
    """

    pixels: torch.Tensor | None
    original_hw: tuple[int, int]
    input_hw: tuple[int, int]


class SamModel(nn.Module):
    """Wrapper over a segment_anything ``Sam`` (``.sam``) with variant-specific preprocessing."""

    kind = "sam"
    backend = "segment_anything"
    mask_threshold = 0.0
    spec: str | None = None  # the model spec it was created from (set by create_model)

    def __init__(self, sam, *, name: str, variant: str = "sam", weights: str | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"unknown SAM variant '{variant}'; use one of {', '.join(VARIANTS)}.")
        self.sam = sam.eval()
        self.name = name
        self.variant = variant
        self.weights = weights
        self.image_size = int(sam.image_encoder.img_size)

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (``image_size // 16``)."""
        return self.sam.prompt_encoder.image_embedding_size[0]

    def describe(self) -> dict:
        return {"name": self.name, "spec": self.spec, "kind": self.kind, "variant": self.variant,
                "weights": self.weights,
                "image_size": self.image_size, "parameters": sum(p.numel() for p in self.sam.parameters())}

    # ------------------------------------------------------------------ images
    def prepare_image(self, image) -> PreparedImage:
        """Image (see module conventions) → :class:`PreparedImage` for :meth:`embed`."""
        rgb = _to_rgb_uint8(image)  # [H, W, 3] uint8, as SAM and MedSAM feed their encoders
        h, w = rgb.shape[:2]
        s = self.image_size
        if self.variant == "medsam":  # MedSAM_Inference.py: skimage order-3 resize, min-max
            from skimage.transform import resize
            r = resize(rgb, (s, s), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
            r = r.astype(np.float32)
            r = (r - r.min()) / max(float(r.max() - r.min()), 1e-8)
            x = torch.from_numpy(r).permute(2, 0, 1)[None].contiguous()
            return PreparedImage(x.to(self.device), (h, w), (s, s))
        from segment_anything.utils.transforms import ResizeLongestSide
        r = ResizeLongestSide(s).apply_image(rgb)  # exactly SamPredictor.set_image
        nh, nw = r.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(r)).permute(2, 0, 1)[None].float()
        mean = torch.tensor(SAM_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(SAM_STD).view(1, 3, 1, 1)
        x = F.pad((x - mean) / std, (0, s - nw, 0, s - nh))
        return PreparedImage(x.to(self.device), (h, w), (nh, nw))

    def embed(self, pixels: torch.Tensor, *, attention: str = "chunked") -> torch.Tensor:
        """``[B, 3, S, S]`` prepared pixels → image embeddings ``[B, C, S/16, S/16]``.

        ``attention="chunked"`` computes attention a chunk of queries at a time where that is
        exact (CPU inference; :mod:`medkt.models.sam_encoder`), ``"stock"`` runs
        segment_anything's encoder forward as is.
        """
        from medkt.models.sam_encoder import encode
        return encode(self.sam.image_encoder, pixels, attention=attention)

    # ------------------------------------------------------------------ prompts
    def _scale(self, prep: PreparedImage) -> tuple[float, float]:
        (h, w), (ih, iw) = prep.original_hw, prep.input_hw
        return iw / w, ih / h

    def transform_boxes(self, boxes, prep: PreparedImage) -> torch.Tensor:
        """``[N, 4]`` XYXY boxes in original pixels → model input pixels (float tensor)."""
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        sx, sy = self._scale(prep)
        return (b * torch.tensor([sx, sy, sx, sy])).to(self.device)

    def transform_points(self, points, prep: PreparedImage) -> torch.Tensor:
        """``[..., 2]`` (x, y) points in original pixels → model input pixels."""
        p = torch.as_tensor(np.asarray(points, dtype=np.float32))
        sx, sy = self._scale(prep)
        return (p * torch.tensor([sx, sy])).to(self.device)

    def decode(self, embedding: torch.Tensor, *, boxes: torch.Tensor | None = None,
               points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (model-input pixels) → ``(low_res_logits [N, K, S/4, S/4], iou [N, K])``.

        ``embedding`` ``[1, C, g, g]`` is shared by the ``N`` prompts (boxes ``[N, 4]``,
        points ``[N, P, 2]`` with labels ``[N, P]``, mask_input ``[N, 1, S/4, S/4]``
        logits).  ``K`` = 3 with ``multimask`` else 1.
        """
        pts = None
        if points is not None:
            if point_labels is None:
                raise InputError("point prompts need point_labels (1 = foreground, 0 = background).")
            pts = (points.float().to(self.device), torch.as_tensor(point_labels).to(self.device))
        bx = boxes.float().to(self.device)[:, None, :] if boxes is not None else None
        sparse, dense = self.sam.prompt_encoder(points=pts, boxes=bx, masks=mask_input)
        low, iou = self.sam.mask_decoder(image_embeddings=embedding,
                                         image_pe=self.sam.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=multimask)
        return low, iou

    def upscale(self, low_res_logits: torch.Tensor, prep: PreparedImage) -> torch.Tensor:
        """``[N, K, S/4, S/4]`` logits → ``[N, K, H, W]`` logits at the original image size."""
        s = self.image_size
        x = F.interpolate(low_res_logits, size=(s, s), mode="bilinear", align_corners=False)
        ih, iw = prep.input_hw
        x = x[..., :ih, :iw]
        return F.interpolate(x, size=prep.original_hw, mode="bilinear", align_corners=False)

    def predictor(self):
        """segment_anything ``SamPredictor`` over ``.sam`` (SAM variant; MedSAM has none)."""
        if self.variant != "sam":
            raise ConfigError(f"model '{self.name}' is MedSAM: it uses its own preprocessing, not "
                              "SamPredictor; use prepare_image/embed/decode/upscale.")
        from segment_anything import SamPredictor
        return SamPredictor(self.sam)


# ---------------------------------------------------------------------- helpers
def _longest_side_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _to_rgb_uint8(image) -> np.ndarray:
    """Image → ``[H, W, 3]`` uint8 (gray repeated; integer dtypes scaled by dtype max)."""
    from medkt.models.base import image_to_unit_tensor
    x = image_to_unit_tensor(image)
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise InputError(f"SAM expects a 2-D image (HxW, HxWx3 or 3xHxW), got shape {tuple(x.shape)}.")
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = (x[:3].float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return x.permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------- builders
def build_sam_module(*, image_size: int = 1024, encoder_embed_dim: int = 768, encoder_depth: int = 12,
                     encoder_num_heads: int = 12, global_attn_indexes=(2, 5, 8, 11), window_size: int = 14,
                     prompt_embed_dim: int = 256, mask_in_chans: int = 16, decoder_mlp_dim: int = 2048,
                     decoder_heads: int = 8, iou_head_hidden_dim: int = 256):
    """A segment_anything ``Sam`` from its classes (defaults = SAM ViT-B, same as ``_build_sam``)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
    if image_size % 16:
        raise ConfigError(f"SAM image_size must be a multiple of 16, got {image_size}.")
    g = image_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=16, embed_dim=encoder_embed_dim, depth=encoder_depth,
            num_heads=encoder_num_heads, mlp_ratio=4, out_chans=prompt_embed_dim, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), use_abs_pos=True, use_rel_pos=True,
            window_size=window_size, global_attn_indexes=tuple(global_attn_indexes)),
        prompt_encoder=PromptEncoder(embed_dim=prompt_embed_dim, image_embedding_size=(g, g),
                                     input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=decoder_mlp_dim,
                                          num_heads=decoder_heads),
            transformer_dim=prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=iou_head_hidden_dim),
        pixel_mean=list(SAM_MEAN), pixel_std=list(SAM_STD))
    return sam.eval()


# Architectures of the real checkpoints (segment_anything.build_sam) and the tiny twin.
SAM_ARCHS = {
    "vit_b": dict(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
                  global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16,
                  global_attn_indexes=(7, 15, 23, 31)),
    "tiny": dict(image_size=256, encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, window_size=4,
                 global_attn_indexes=(1,), prompt_embed_dim=32, mask_in_chans=8, decoder_mlp_dim=64,
                 decoder_heads=2, iou_head_hidden_dim=64),
}


def load_sam_checkpoint(sam, path, *, release_first: bool = False) -> None:
    """Strict, safe load of a SAM/MedSAM state dict (``.pth`` / ``.safetensors``) into ``sam``.

    ``release_first``: free ``sam``'s parameters before reading the file, so that the weights
    are in memory once, not twice (the registry builder's path, for a fresh random-init
    module; after a mismatch such a module is unusable).
    """
    from medkt.models.memory import release_parameters
    from medkt.models.weights import load_strict, read_state_dict
    released = release_parameters(sam) if release_first else None
    load_strict(sam, read_state_dict(path), path, released=released)


def save_sam_checkpoint(model: SamModel, path) -> str:
    """Save ``model.sam``'s state dict (``.safetensors`` or torch ``.pth``) atomically."""
    from medkt.models.weights import write_state_dict
    return write_state_dict(model.sam.state_dict(), path)


def _build(spec: ModelSpec, weights: str | None, device: str) -> SamModel:
    from medkt.models.weights import resolve_file
    arch = spec.options["arch"]
    if spec.tiny and not weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.options.get("seed", 0))
            sam = build_sam_module(**SAM_ARCHS[arch])
        label = "random-init (seed 0)"
    else:
        path = resolve_file(spec, weights)
        sam = build_sam_module(**SAM_ARCHS[arch])
        load_sam_checkpoint(sam, path, release_first=True)
        label = str(path)
    return SamModel(sam.to(device), name=spec.name, variant=spec.options.get("variant", "sam"),
                    weights=label)


_FB = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM_NORM = {"in_channels": 3, "mean": SAM_MEAN, "std": SAM_STD}  # 0-255 scale, see module docstring
_MEDSAM_NORM = {"in_channels": 3, "mean": None, "std": None}  # min-max to [0, 1], no mean/std
# Full SHA-256 of the published files.  The 6 hex digits in the file names are NOT a prefix
# of the SHA-256 (e.g. sam_vit_h_4b8939.pth hashes to a7bf3b02...), so only full sums are used.
_REAL = [
    ("sam-vit-b", "vit_b", "sam_vit_b_01ec64.pth",
     "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", "SAM v1 ViT-B (91M)"),
    ("sam-vit-l", "vit_l", "sam_vit_l_0b3195.pth",
     "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", "SAM v1 ViT-L (308M)"),
    ("sam-vit-h", "vit_h", "sam_vit_h_4b8939.pth",
     "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", "SAM v1 ViT-H (636M)"),
]
for _name, _arch, _file, _sha, _desc in _REAL:
    register_model(ModelSpec(
        name=_name, family="segment_anything", builder=_build, kind="sam", description=_desc,
        source=_FB + _file, options={"arch": _arch, "variant": "sam", "image_size": 1024, **_SAM_NORM},
        files=[{"url": _FB + _file, "filename": _file, "sha256": _sha}]))

register_model(ModelSpec(
    name="medsam", family="segment_anything", builder=_build, kind="sam",
    description="MedSAM ViT-B (bowang-lab/MedSAM; 1024², min-max [0,1], no mean/std)",
    source="medsam_vit_b.pth from https://github.com/bowang-lab/MedSAM (manual download, Google Drive)",
    options={"arch": "vit_b", "variant": "medsam", "image_size": 1024, **_MEDSAM_NORM},
    files=[{"filename": "medsam_vit_b.pth", "manual": "https://github.com/bowang-lab/MedSAM#model-checkpoints"}]))

register_model(ModelSpec(
    name="tiny-sam", family="segment_anything", builder=_build, kind="sam", tiny=True,
    description="tiny random-init SAM v1 (256 px, 2-block ViT encoder) for tests and demos",
    source="built offline from segment_anything classes",
    options={"arch": "tiny", "variant": "sam", "image_size": 256, **_SAM_NORM}))

register_model(ModelSpec(
    name="tiny-medsam", family="segment_anything", builder=_build, kind="sam", tiny=True,
    description="tiny-sam with MedSAM preprocessing (resize to square, min-max [0,1]) for tests",
    source="built offline from segment_anything classes",
    options={"arch": "tiny", "variant": "medsam", "image_size": 256, **_MEDSAM_NORM}))
