"""Output folder layout of ``medkt invert`` / ``medkt transfer`` (all writes atomic)::

    <out>/images/<concept-slug>/000.png ...     inverted images, pixels in [0, 1] → uint8
                                                 (no per-image min-max rescale)
    <out>/images/<concept-slug>/images.safetensors   raw float tensors ("images" [n, C, H, W]
                                                 in [0, 1], or "tokens" [n, T, D] when relaxed)
    <out>/weights/finetuned-<format>.safetensors  fine-tuned weights (see state.py)
    <out>/run.json                                config, seed, versions, loss summaries, timings
    <out>/.medkt/done/invert-<slug>.json          done-marker of a finished concept (resume)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from medkt.errors import ConfigError
from medkt.runs import atomic_path, atomic_write_json


def concept_dir(out_dir, slug: str) -> Path:
    return Path(out_dir) / "images" / slug


def marker_path(out_dir, stage: str, slug: str) -> Path:
    return Path(out_dir) / ".medkt" / "done" / f"{stage}-{slug}.json"


def save_png(path, image01: torch.Tensor) -> None:
    """Write ``[C, H, W]`` in [0, 1] (C = 1 or 3) as an 8-bit PNG, atomically."""
    from PIL import Image
    arr = (image01.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def save_concept(out_dir, slug: str, tensor: torch.Tensor, *, captions: list[str], layer: int | None,
                 info: dict, fingerprint: str, write_png: bool = True) -> None:
    """Write one concept's images (PNG + safetensors), then its done-marker (last)."""
    from safetensors.torch import save_file
    d = concept_dir(out_dir, slug)
    key = "images" if layer is None else "tokens"
    if write_png and layer is None:
        for k, img in enumerate(tensor):
            save_png(d / f"{k:03d}.png", img)
    with atomic_path(d / "images.safetensors") as tmp:
        save_file({key: tensor.detach().float().cpu().contiguous()}, str(tmp),
                  metadata={"captions": json.dumps(captions), "layer": "" if layer is None else str(layer)})
    atomic_write_json(marker_path(out_dir, "invert", slug),
                      {"concept": slug, "fingerprint": fingerprint, "layer": layer, **info})


def load_concept(out_dir, slug: str, fingerprint: str) -> tuple[torch.Tensor, dict] | None:
    """A finished concept's tensor and marker info, or ``None`` if it is not done."""
    from safetensors.torch import load_file
    marker = marker_path(out_dir, "invert", slug)
    if not marker.exists():
        return None
    info = json.loads(marker.read_text())
    if info.get("fingerprint") != fingerprint:
        raise ConfigError(f"cannot resume: concept '{slug}' in {out_dir} was inverted with different "
                          "settings (config, seed or model).", path=str(marker),
                          hint="rerun with the original settings, or pass --overwrite to start over")
    tensors = load_file(str(concept_dir(out_dir, slug) / "images.safetensors"))
    return tensors["images" if info.get("layer") is None else "tokens"], info
