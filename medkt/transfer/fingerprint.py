"""Resume fingerprints of an inversion: what its result depends on, and how two differ.

A concept's done-marker stores :func:`fingerprint_parts` (model name, a sha256 of the
weights and buffers, input size, normalisation, the inversion config and the seed) and
their hash :func:`fingerprint`; :func:`check_resumable` refuses to reuse a marker whose
fingerprint is not the current run's, naming what differs.
"""
from __future__ import annotations

import hashlib
import json

import torch

from medkt.config import to_dict
from medkt.transfer.concepts import Concept
from medkt.transfer.config import EarlyStopConfig, InversionConfig

# Options added after markers were first written: left out of the fingerprint while they hold
# their default value, so markers written before they existed stay resumable.
_LATER_DEFAULTS = {"warmup": 0.0, "progressive_encoder": False, "fourier_decay": 1.0,
                   "color_decorrelation": True, "early_stop": to_dict(EarlyStopConfig())}


def config_fingerprint(cfg: InversionConfig) -> dict:
    """The inversion config as stored in a marker (later options dropped at their defaults)."""
    d = to_dict(cfg)
    return {k: v for k, v in d.items() if not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}


def weights_digest(model) -> str:
    """sha256 (hex) over the model's named parameters and buffers, in name order.

    Each tensor contributes ``name|dtype|shape`` and its raw bytes (copied to CPU), so
    any change of a weight, a buffer (e.g. the normalisation constants), a dtype or a
    shape changes the digest.  Cost: sha256 over the weights' bytes, nothing more (ViT-B/32,
    605 MB fp32: 0.35 s on an idle CPU core, up to ~1.8 s on a loaded one).
    """
    h = hashlib.sha256()
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # buffer, no copy
    return h.hexdigest()


def fingerprint_parts(model, cfg: InversionConfig, seed: int) -> dict:
    """What an inversion depends on: model name, weights digest, input size and normalisation,
    the inversion config and the seed (stored in each concept's done-marker)."""
    parts = {"model": model.name, "weights_sha256": weights_digest(model), "image_size": int(model.image_size),
             "mean": [float(v) for v in model.mean], "std": [float(v) for v in model.std],
             "config": config_fingerprint(cfg), "seed": int(seed)}
    return json.loads(json.dumps(parts))  # JSON types, as stored in the marker


def fingerprint(model, cfg: InversionConfig, seed: int, parts: dict | None = None) -> str:
    """Short hash of :func:`fingerprint_parts` (``parts`` when already computed)."""
    blob = json.dumps(parts or fingerprint_parts(model, cfg, seed), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _differences(then: dict, now: dict) -> list[str]:
    """Human-readable differences between two :func:`fingerprint_parts` (stored → current)."""
    out = []
    if then.get("weights_sha256") != now["weights_sha256"]:
        out.append(f"model weights differ (sha256 {str(then.get('weights_sha256'))[:12]} there, "
                   f"{now['weights_sha256'][:12]} now)")
    labels = {"model": "model name", "image_size": "image size", "mean": "normalisation mean",
              "std": "normalisation std", "seed": "seed"}
    for key, label in labels.items():
        if then.get(key) != now[key]:
            out.append(f"{label} {then.get(key)} there, {now[key]} now")
    if then.get("config") != now["config"]:
        a, b = _flat(then.get("config") or {}), _flat(now["config"])
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        out.append("inversion config differs (" + ", ".join(f"{k}: {a.get(k)} there, {b.get(k)} now"
                                                            for k in keys[:4])
                   + (", ..." if len(keys) > 4 else "") + ")")
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(out_dir, concept: Concept, parts: dict, fp: str) -> None:
    """Refuse (never silently reuse) a finished concept whose fingerprint is not this run's."""
    from medkt.errors import ResumeMismatchError
    from medkt.transfer import outputs as O
    marker = O.marker_path(out_dir, "invert", concept.slug)
    if not marker.exists():
        return
    info = json.loads(marker.read_text())
    if info.get("fingerprint") == fp:
        return
    then = info.get("fingerprint_parts")
    what = ("; ".join(_differences(then, parts)) if then else
            "it has no model fingerprint (written by an older medkt or a noise-control run)")
    raise ResumeMismatchError(
        f"cannot resume: concept '{concept.name}' in {out_dir} was inverted with different settings or model: "
        f"{what or 'fingerprint differs'}.", path=str(marker),
        hint="pass --overwrite (without --resume) to re-invert into this folder, choose another output "
             "folder, or rerun with the original model and settings")
