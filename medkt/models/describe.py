"""What a model spec loads, without loading it: ``medkt models SPEC``.

:func:`describe_spec` returns family, architecture, image size, input channels,
normalisation (mean/std of the model input), weight source and whether the weights are
present, read from the registry and from config files (open_clip model configs,
``open_clip_config.json``, ``config.json`` / ``preprocessor_config.json``).  A value that
only the weights' own files could tell, when they are absent, is ``None``.  With
``load=True`` the model is built and the values come from the instance, plus its parameter
count and :func:`~medkt.models.checkpoints.weights_fingerprint`.
"""
from __future__ import annotations

import json
from pathlib import Path

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_FIELDS = ("spec", "kind", "family", "architecture", "image_size", "in_channels", "mean", "std", "source",
           "weights", "description")


def _row(**kw) -> dict:
    return {k: kw.get(k) for k in _FIELDS}


def _open_clip_static(arch: str, tag: str | None) -> dict:
    """Image size and normalisation of an open_clip ``arch`` (+ ``tag``) from its configs."""
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    cfg = open_clip.get_model_config(arch) or {}
    isz = cfg.get("vision_cfg", {}).get("image_size")
    pre = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    pcfg = cfg.get("preprocess_cfg", {})
    return {"image_size": isz if isinstance(isz, int) or isz is None else isz[0], "in_channels": 3,
            "mean": tuple(pre.get("mean") or pcfg.get("mean") or OPENAI_MEAN),
            "std": tuple(pre.get("std") or pcfg.get("std") or OPENAI_STD)}


def _folder_static(folder: Path) -> dict:
    """Family, architecture, size and normalisation from a model folder's JSON files."""
    from medkt.models.specs import folder_family
    fam = folder_family(folder)
    out: dict = {"family": fam}
    try:
        if fam == "open_clip":
            cfg = json.loads((folder / "open_clip_config.json").read_text())
            m, pre = cfg.get("model_cfg") or {}, cfg.get("preprocess_cfg") or {}
            v = m.get("vision_cfg", {})
            isz = pre.get("size") or v.get("image_size")
            out.update(architecture=v.get("timm_model_name") or f"ViT (width {v.get('width')}, "
                       f"{v.get('layers')} layers, patch {v.get('patch_size')})",
                       image_size=isz if isinstance(isz, int) or isz is None else isz[0], in_channels=3,
                       mean=tuple(pre.get("mean", OPENAI_MEAN)), std=tuple(pre.get("std", OPENAI_STD)))
        elif fam in ("hf_clip", "vilt"):
            cfg = json.loads((folder / "config.json").read_text())
            pre_p = folder / "preprocessor_config.json"
            pre = json.loads(pre_p.read_text()) if pre_p.is_file() else {}
            arch = (cfg.get("architectures") or [cfg.get("model_type")])[0]
            isz = cfg.get("vision_config", {}).get("image_size") or cfg.get("image_size")
            out.update(architecture=arch, image_size=isz, in_channels=3,
                       mean=tuple(pre["image_mean"]) if "image_mean" in pre else None,
                       std=tuple(pre["image_std"]) if "image_std" in pre else None)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def _registry_static(spec) -> dict:
    from medkt.models.resolve import weights_status
    o = spec.options
    row = _row(spec=spec.name, kind=spec.kind, family=spec.family, architecture=o.get("arch"), source=spec.source,
               weights=weights_status(spec), description=spec.description)
    if spec.family in ("open_clip", "coca") and o.get("arch") and not o["arch"].startswith("hf-hub:"):
        row.update(_open_clip_static(o["arch"], o.get("tag")))
    elif o.get("arch", "").startswith("hf-hub:"):
        from medkt.models.resolve import hf_cached
        hit = hf_cached(o["arch"][7:], "open_clip_config.json", o.get("revision"))
        if hit:
            found = _folder_static(Path(hit).parent)
            row.update({k: v for k, v in found.items() if k in ("image_size", "in_channels", "mean", "std")})
    for k in ("image_size", "in_channels", "mean", "std"):
        if k in o:
            row[k] = tuple(o[k]) if isinstance(o[k], list) else o[k]
    return row


def describe_spec(spec: str, weights: str | None = None, *, load: bool = False) -> dict:
    """Describe what ``create_model(spec, weights=weights)`` loads (see the module docstring)."""
    from medkt.models.registry import _REGISTRY
    from medkt.models.specs import infer_checkpoint, parse_spec
    p = parse_spec(spec)
    if p.kind == "registry":
        row = _registry_static(_REGISTRY[p.name])
        if weights:
            row["weights"] = f"--weights {weights}"
    elif p.kind == "local-dir":
        row = _row(spec=p.text, kind="vlm", source=p.path, weights=f"present: {p.path}", **_folder_static(Path(p.path)))
    elif p.kind == "hf-hub":
        from medkt.models.resolve import hf_cached
        at = f" @ {p.revision}" if p.revision else ""
        row = _row(spec=p.text, kind="vlm", source=f"Hugging Face {p.repo}{at}", weights="missing")
        for marker in ("open_clip_config.json", "config.json"):
            hit = hf_cached(p.repo, marker, p.revision)
            if hit:
                row.update(_folder_static(Path(hit).parent))
                row["weights"] = f"present: Hugging Face cache (commit {Path(hit).parent.name})"
                break
    elif p.kind == "open_clip":
        from medkt.models.registry import ModelSpec
        from medkt.models.resolve import weights_status
        fake = ModelSpec(name=p.text, family="open_clip", builder=None, options={"arch": p.arch, "tag": p.tag})
        row = _row(spec=p.text, kind="vlm", family="open_clip", architecture=p.arch,
                   source=f"open_clip {p.arch}" + (f" / {p.tag}" if p.tag else f" + {weights}"),
                   weights=(f"--weights {weights}" if weights else weights_status(fake)),
                   **_open_clip_static(p.arch, p.tag))
    else:  # checkpoint file
        kind, name = infer_checkpoint(Path(p.path))
        if kind == "registry":
            row = _registry_static(_REGISTRY[name])
            row.update(spec=p.text, description=f"checkpoint recognised as '{name}'")
        else:
            row = _row(spec=p.text, kind="vlm", family="open_clip", architecture=name,
                       description=f"checkpoint recognised as open_clip '{name}'", **_open_clip_static(name, None))
        row.update(source=p.path, weights=f"present: {p.path}")
    if load:
        from medkt.models.checkpoints import weights_fingerprint
        from medkt.models.registry import create_model
        m = create_model(spec, weights=weights)
        d = m.describe()
        row.update({k: d[k] for k in ("image_size", "in_channels", "mean", "std") if k in d})
        row.update(weights_loaded=d.get("weights"), parameters=d.get("parameters"),
                   capabilities=d.get("capabilities"), fingerprint=weights_fingerprint(m))
    return row
