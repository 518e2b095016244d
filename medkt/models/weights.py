"""Weight resolution: explicit path > ``MEDKT_HOME/weights/<name>`` > Hugging Face cache.

Offline (the default, see :mod:`medkt.paths`) nothing here opens a network connection:
a missing weight raises :class:`WeightsMissingError` naming what is missing and the two
ways to provide it.
"""
from __future__ import annotations

from pathlib import Path

from medkt.errors import WeightsMissingError
from medkt.paths import enforce_offline_env, is_offline, weights_dir


def missing(spec, what: str) -> WeightsMissingError:
    return WeightsMissingError(
        f"weights for model '{spec.name}' are not available: {what} (source: {spec.source}).",
        hint=(f"either run `medkt weights download {spec.name}` on a connected machine "
              f"(then copy {weights_dir() / spec.name} here), or pass a local file/folder "
              f"with --weights PATH"))


def local_weights_folder(spec) -> Path:
    return weights_dir() / spec.name


def _hf_cached(repo: str, filename: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    hit = try_to_load_from_cache(repo_id=repo, filename=filename)
    return hit if isinstance(hit, str) else None


def resolve_open_clip(spec, weights: str | None) -> tuple[str, str | None]:
    """Return ``(arch, pretrained)`` for open_clip's factory, checking presence when offline."""
    enforce_offline_env()
    arch, tag = spec.options["arch"], spec.options.get("tag")
    if weights:
        p = Path(weights)
        if p.is_dir():
            return f"local-dir:{p}", None
        return arch, str(p)
    folder = local_weights_folder(spec)
    if (folder / "open_clip_config.json").exists():
        return f"local-dir:{folder}", None
    for f in sorted(folder.glob("*")) if folder.is_dir() else []:
        if f.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            return arch, str(f)
    if not is_offline():
        return arch, tag
    if arch.startswith("hf-hub:"):
        repo = arch[len("hf-hub:"):]
        if _hf_cached(repo, "open_clip_config.json"):
            return arch, None
        raise missing(spec, f"'{repo}' is not in the Hugging Face cache and medkt is offline")
    import open_clip
    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, _, fname = hub.rstrip("/").partition("/")[0], None, None
        repo_id = "/".join(hub.rstrip("/").split("/")[:2])
        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if _hf_cached(repo_id, fname):
                return arch, tag
        raise missing(spec, f"'{repo_id}' is not in the Hugging Face cache and medkt is offline")
    raise missing(spec, f"tag '{tag}' would be downloaded from {cfg.get('url', 'the network')} "
                        "and medkt is offline")


def weights_status(spec) -> str:
    """'built-in (tiny)', 'present: <where>' or 'missing' — never touches the network."""
    if spec.tiny:
        return "built-in (tiny, random init)"
    folder = local_weights_folder(spec)
    if folder.is_dir() and any(folder.iterdir()):
        return f"present: {folder}"
    arch = spec.options.get("arch", "")
    if spec.family == "open_clip":
        if arch.startswith("hf-hub:") and _hf_cached(arch[7:], "open_clip_config.json"):
            return "present: Hugging Face cache"
        try:
            import open_clip
            hub = (open_clip.get_pretrained_cfg(arch, spec.options.get("tag")) or {}).get("hf_hub", "")
        except Exception:  # noqa: BLE001
            hub = ""
        if hub:
            repo_id = "/".join(hub.rstrip("/").split("/")[:2])
            if any(_hf_cached(repo_id, f) for f in ("open_clip_model.safetensors",
                                                    "open_clip_pytorch_model.bin")):
                return "present: Hugging Face cache"
    return "missing"
