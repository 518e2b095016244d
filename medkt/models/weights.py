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


# ---------------------------------------------------------------------- safe checkpoint loading
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def read_state_dict(path: str | Path, *, key: str | None = None) -> dict:
    """Read a checkpoint file safely → ``{name: tensor}``.

    ``.safetensors`` via safetensors; anything else via ``torch.load(weights_only=True)``
    (no pickled code runs).  ``key`` (or a top-level ``state_dict``/``model`` entry) is
    unwrapped; a ``module.`` prefix (DataParallel) is stripped.  An unreadable file
    raises :class:`CheckpointMismatchError` naming the file.
    """
    import torch
    from medkt.errors import CheckpointMismatchError, WeightsError
    p = Path(path)
    if not p.is_file():
        raise WeightsError("checkpoint file not found.", path=str(p), hint="check the --weights path")
    if p.stat().st_size == 0:
        raise CheckpointMismatchError("checkpoint file is empty (0 bytes).", path=str(p),
                                      hint="re-copy or re-download the file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file for the user
        raise CheckpointMismatchError(f"cannot read checkpoint ({type(e).__name__}: {str(e)[:200]}).",
                                      path=str(p), hint="the file is corrupt, truncated or not a "
                                      "plain state dict; re-download it (pickled code is never run)") from None
    if key is not None and isinstance(sd, dict) and key in sd:
        sd = sd[key]
    elif isinstance(sd, dict):
        for k in ("state_dict", "model"):
            if k in sd and isinstance(sd[k], dict) and not torch.is_tensor(sd[k]):
                sd = sd[k]
                break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise CheckpointMismatchError("checkpoint is not a state dict of tensors.", path=str(p),
                                      hint="pass the model's weight file (a state dict)")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_strict(module, state_dict: dict, path: str | Path, *, ignore: tuple[str, ...] = (),
                n_show: int = 5) -> None:
    """Load ``state_dict`` into ``module`` strictly, or raise naming the file and first bad keys.

    Keys ending in one of ``ignore`` (e.g. ``"position_ids"``) are dropped first.  Shapes are
    checked *before* anything is copied, so a mismatch never leaves a half-loaded model.
    """
    from medkt.errors import CheckpointMismatchError
    sd = {k: v for k, v in state_dict.items() if not k.endswith(tuple(ignore))}
    own = module.state_dict()
    missing_keys = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing_keys:
        problems.append(f"{len(missing_keys)} missing key(s): {', '.join(missing_keys[:n_show])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:n_show])}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:n_show])}")
    if problems:
        raise CheckpointMismatchError(
            "checkpoint does not match the model: " + "; ".join(problems) + ".", path=str(path),
            hint="pass the checkpoint that belongs to this model (nothing was loaded)")
    module.load_state_dict(sd, strict=True)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def resolve_file(spec, weights: str | None, filename: str | None = None) -> Path:
    """Local checkpoint file for a single-file model (SAM, MedSAM...).

    Order: ``weights`` (a file, or a folder holding ``filename``) > ``MEDKT_HOME/weights/<name>/``
    > download (only when online, see :func:`download`).  Offline and absent →
    :class:`WeightsMissingError` (nothing touches the network).
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
        return Path(download(spec)[0])
    raise missing(spec, f"no {filename or 'checkpoint'} in {folder}"
                        + (" and medkt is offline" if is_offline() else ""))
