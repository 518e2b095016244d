"""Weight resolution: explicit path > ``MEDKT_HOME/weights/<name>`` > Hugging Face cache.

Offline (the default, see :mod:`medkt.paths`) nothing here opens a network connection:
a missing weight raises :class:`WeightsMissingError` naming what is missing and the two
ways to provide it.
"""
from __future__ import annotations

from pathlib import Path

from medkt.errors import WeightsMissingError
from medkt.models.checkpoints import CHECKPOINT_SUFFIXES
from medkt.paths import enforce_offline_env, hf_cache_dir, is_offline, weights_dir

OPEN_CLIP_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def missing(spec, what: str) -> WeightsMissingError:
    """The one error for absent weights: what is missing and the two ways to provide it."""
    from medkt.models.verify import unpinned_entries
    manual = next((e for e in spec.files if "manual" in e), None)
    flag = "--allow-unpinned " if unpinned_entries(spec) else ""
    first = (f"download {manual['filename']} from {manual['manual']} into {weights_dir() / spec.name}"
             if manual else
             f"run `medkt weights download {flag}{spec.name}` on a connected machine with MEDKT_OFFLINE=0 "
             + (f"(then copy the Hugging Face cache {hf_cache_dir()} here)" if spec.family in ("open_clip", "coca")
                else f"(then copy {weights_dir() / spec.name} here)"))
    return WeightsMissingError(
        f"weights for model '{spec.name}' are not available: {what} (source: {spec.source}).",
        hint=f"either {first}, or pass a local file/folder with --weights PATH")


def local_weights_folder(spec) -> Path:
    return weights_dir() / spec.name


def hf_cached(repo: str, filename: str, revision: str | None = None) -> str | None:
    """Path of ``repo``/``filename`` in the Hugging Face cache (``HF_HUB_CACHE``), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    hit = try_to_load_from_cache(repo_id=repo, filename=filename, revision=revision,
                                 cache_dir=str(hf_cache_dir()))
    return hit if isinstance(hit, str) else None


_hf_cached = hf_cached  # older name


def open_clip_hub_repo(arch: str, tag: str | None) -> str | None:
    """The Hugging Face repo open_clip downloads ``arch``/``tag`` from, if any."""
    try:
        import open_clip
        hub = (open_clip.get_pretrained_cfg(arch, tag) or {}).get("hf_hub", "") if tag else ""
    except Exception:  # noqa: BLE001 - unknown arch/tag: no hub repo
        hub = ""
    return "/".join(hub.rstrip("/").split("/")[:2]) if hub else None


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
        if f.suffix in CHECKPOINT_SUFFIXES:
            return arch, str(f)
    if arch.startswith("hf-hub:"):
        repo = arch[len("hf-hub:"):]
        rev = spec.options.get("revision")
        hit = hf_cached(repo, "open_clip_config.json", rev)
        if hit:  # a pinned revision is loaded from its own snapshot folder
            return (f"local-dir:{Path(hit).parent}", None) if rev else (arch, None)
        _download_or_missing(spec, f"'{repo}' is not in the Hugging Face cache")
        return arch, None
    repo_id, rev = open_clip_hub_repo(arch, tag), spec.options.get("revision")
    hits = [h for h in (hf_cached(repo_id, f, rev) for f in OPEN_CLIP_HUB_FILES) if h] if repo_id else []
    if hits:  # a pinned revision loads its own snapshot's file
        return (arch, hits[0]) if rev else (arch, tag)
    _download_or_missing(spec, f"'{repo_id}' is not in the Hugging Face cache" if repo_id else
                         f"tag '{tag}' is not cached locally")
    return arch, tag


def _download_or_missing(spec, what: str) -> None:
    """Online: download through :func:`medkt.models.download.download` (pins enforced, so an
    unpinned source needs an explicit ``medkt weights download --allow-unpinned``).
    Offline: raise the one "weights missing" error."""
    if is_offline():
        raise missing(spec, what + " and medkt is offline")
    from medkt.models.download import download
    download(spec)


def weights_status(spec) -> str:
    """'built-in (tiny)', 'present: <where>' or 'missing' — never touches the network."""
    if spec.options.get("shipped"):  # weights shipped inside the package (medkt/assets/...)
        from medkt.paths import assets_dir
        path = assets_dir() / spec.options["shipped"]
        return f"shipped: {path}" if path.is_file() else "missing (shipped file absent: reinstall medkt)"
    if spec.tiny:
        return "built-in (tiny, random init)"
    folder = local_weights_folder(spec)
    if folder.is_dir() and any(folder.iterdir()):
        return f"present: {folder}"
    arch = spec.options.get("arch", "")
    if spec.family in ("open_clip", "coca"):
        if arch.startswith("hf-hub:") and hf_cached(arch[7:], "open_clip_config.json", spec.options.get("revision")):
            return "present: Hugging Face cache"
        repo_id = open_clip_hub_repo(arch, spec.options.get("tag"))
        if repo_id and any(hf_cached(repo_id, f) for f in OPEN_CLIP_HUB_FILES):
            return "present: Hugging Face cache"
    for e in spec.files:
        if "repo" in e and not e.get("tokenizer_only") and hf_cached(e["repo"], "config.json", e.get("revision")):
            return "present: Hugging Face cache"
    return "missing"


def resolve_file(spec, weights: str | None, filename: str | None = None) -> Path:
    """Local checkpoint file for a single-file model (SAM, MedSAM...).

    Order: ``weights`` (a file, or a folder holding ``filename``) > ``MEDKT_HOME/weights/<name>/``
    > download (only when online, see :func:`medkt.models.download.download`).  Offline and
    absent → :class:`WeightsMissingError` (nothing touches the network).
    """
    enforce_offline_env()
    filename = filename or (spec.files[0]["filename"] if spec.files else None)
    if weights:
        p = Path(weights).expanduser()
        if p.is_dir():
            cands = [p / filename] if filename else []
            cands += sorted(q for q in p.iterdir() if q.suffix in CHECKPOINT_SUFFIXES)
            for c in cands:
                if c.is_file():
                    return c
            from medkt.errors import WeightsError
            raise WeightsError(f"no checkpoint file ({filename or 'any of ' + ', '.join(CHECKPOINT_SUFFIXES)}) "
                               "in this folder.", path=str(p), hint="pass the checkpoint file itself")
        return p
    folder = local_weights_folder(spec)
    if filename and (folder / filename).is_file():
        return folder / filename
    if folder.is_dir():
        for c in sorted(folder.iterdir()):
            if c.suffix in CHECKPOINT_SUFFIXES:
                return c
    if not is_offline() and spec.files:
        from medkt.models.download import download
        return Path(download(spec)[0])
    raise missing(spec, f"no {filename or 'checkpoint'} in {folder}"
                        + (" and medkt is offline" if is_offline() else ""))


def hf_local_only(spec, repo: str) -> dict:
    """``from_pretrained`` keyword arguments: ``local_files_only`` whenever medkt is offline,
    and the registry's pinned ``revision`` for ``repo`` if it has one."""
    enforce_offline_env()
    kw: dict = {"local_files_only": True} if is_offline() else {}
    rev = next((e.get("revision") for e in getattr(spec, "files", []) or []
                if e.get("repo") == repo and e.get("revision")), None)
    if rev:
        kw["revision"] = rev
    return kw


def resolve_hf_folder(spec, weights: str | None, *, marker: str = "config.json") -> str:
    """A ``from_pretrained`` source: ``weights`` folder > ``MEDKT_HOME/weights/<name>`` > hub id.

    Offline, the hub id is only returned when its ``marker`` file is in the HF cache;
    otherwise :class:`WeightsMissingError` (no network access is attempted).
    """
    enforce_offline_env()
    if weights:
        p = Path(weights).expanduser()
        if not p.is_dir():
            from medkt.errors import WeightsError
            raise WeightsError("expected a folder written by save_pretrained (config.json + weights).",
                               path=str(p), hint="pass the model folder, not a single file")
        return str(p)
    folder = local_weights_folder(spec)
    if (folder / marker).is_file():
        return str(folder)
    repo = spec.options.get("repo")
    if not repo:
        raise missing(spec, f"no {marker} in {folder}")
    rev = hf_local_only(spec, repo).get("revision")
    if hf_cached(repo, marker, rev):
        return repo
    _download_or_missing(spec, f"'{repo}' is not in {folder} or the Hugging Face cache")
    return str(folder) if (folder / marker).is_file() else repo
