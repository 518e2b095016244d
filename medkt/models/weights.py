"""Weight resolution: explicit path > ``MEDKT_HOME/weights/<name>`` > Hugging Face cache.

Offline (the default, see :mod:`medkt.paths`) nothing here opens a network connection:
a missing weight raises :class:`WeightsMissingError` naming what is missing and the two
ways to provide it.
"""
from __future__ import annotations

from pathlib import Path

from medkt.errors import WeightsMissingError
from medkt.paths import enforce_offline_env, hf_cache_dir, is_offline, weights_dir


def missing(spec, what: str) -> WeightsMissingError:
    """The one error for absent weights: what is missing and the two ways to provide it."""
    manual = next((e for e in spec.files if "manual" in e), None)
    first = (f"download {manual['filename']} from {manual['manual']} into {weights_dir() / spec.name}"
             if manual else
             f"run `medkt weights download {spec.name}` on a connected machine with MEDKT_OFFLINE=0 "
             + (f"(then copy the Hugging Face cache {hf_cache_dir()} here)" if spec.family in ("open_clip", "coca")
                else f"(then copy {weights_dir() / spec.name} here)"))
    return WeightsMissingError(
        f"weights for model '{spec.name}' are not available: {what} (source: {spec.source}).",
        hint=f"either {first}, or pass a local file/folder with --weights PATH")


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
    for e in spec.files:
        if "repo" in e and not e.get("tokenizer_only") and _hf_cached(e["repo"], "config.json"):
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


# ---------------------------------------------------------------------- Hugging Face folders
def hf_local_only(spec, repo: str) -> dict:
    """``from_pretrained`` keyword arguments: ``local_files_only`` whenever medkt is offline."""
    enforce_offline_env()
    return {"local_files_only": True} if is_offline() else {}


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
    if is_offline() and not _hf_cached(repo, marker):
        raise missing(spec, f"'{repo}' is not in {folder} or the Hugging Face cache and medkt is offline")
    return repo


# ---------------------------------------------------------------------- download / verify
def _require_online(spec) -> None:
    from medkt.errors import WeightsError
    if is_offline():
        raise WeightsError(f"cannot download '{spec.name}': medkt is offline.",
                           hint=f"on a connected machine run `MEDKT_OFFLINE=0 medkt weights download {spec.name}`, "
                                f"or copy the files to {local_weights_folder(spec)} / pass --weights PATH")


def _check_sha(path: Path, entry: dict) -> None:
    from medkt.errors import WeightsError
    want = entry.get("sha256") or entry.get("sha256_prefix")
    if want and not sha256_of(path).startswith(want):
        bad = path.with_suffix(path.suffix + ".corrupt")
        path.replace(bad)
        raise WeightsError(f"SHA-256 of the download does not match the published '{want}'.", path=str(bad),
                           hint="retry the download; the bad file was renamed *.corrupt")


def download(spec) -> list[str]:
    """Fetch ``spec``'s weights (only with ``MEDKT_OFFLINE=0``) → local paths.

    URL files go to ``MEDKT_HOME/weights/<name>/`` (checked against a published SHA-256
    where one exists); Hugging Face repos and open_clip tags go to the Hugging Face cache.
    """
    from medkt.errors import WeightsError
    if spec.tiny:
        return []
    _require_online(spec)
    out: list[str] = []
    if spec.family in ("open_clip", "coca"):
        out += _download_open_clip(spec)
    for entry in spec.files:
        if "manual" in entry:
            raise WeightsError(f"'{spec.name}' has no direct download link.",
                               hint=f"download {entry['filename']} from {entry['manual']} and put it in "
                                    f"{local_weights_folder(spec)} (or pass --weights PATH)")
        if "url" in entry:
            out.append(str(_download_url(spec, entry)))
        elif "repo" in entry:  # into MEDKT_HOME/weights/<name>[/tokenizer]: one folder to copy
            from huggingface_hub import snapshot_download
            tok = entry.get("tokenizer_only")
            dest = local_weights_folder(spec) / ("tokenizer" if tok else "")
            patterns = ["*.json", "*.txt", "*.model"] if tok else \
                ["*.json", "*.txt", "*.safetensors"] if _has_safetensors(entry["repo"]) else None
            out.append(snapshot_download(entry["repo"], allow_patterns=patterns, local_dir=str(dest)))
    return out


def _has_safetensors(repo: str) -> bool:
    from huggingface_hub import list_repo_files
    return any(f.endswith(".safetensors") for f in list_repo_files(repo))


def _download_url(spec, entry: dict) -> Path:
    import shutil
    import zipfile
    from torch.hub import download_url_to_file
    folder = local_weights_folder(spec)
    folder.mkdir(parents=True, exist_ok=True)
    url = entry["url"]
    target = folder / (Path(url).name if entry.get("unzip") else entry["filename"])
    tmp = target.with_suffix(target.suffix + ".part")
    download_url_to_file(url, str(tmp), progress=True)
    tmp.replace(target)
    _check_sha(target, entry)
    if entry.get("unzip"):
        with zipfile.ZipFile(target) as z:
            z.extractall(folder)
        target.unlink()
        found = sorted(folder.rglob(entry["filename"]))
        if found and found[0].parent != folder:  # flatten <zip folder>/<file> into the model folder
            for f in found[0].parent.iterdir():
                shutil.move(str(f), str(folder / f.name))
        return folder / entry["filename"]
    return target


def _download_open_clip(spec) -> list[str]:
    arch, tag = spec.options["arch"], spec.options.get("tag")
    if arch.startswith("hf-hub:"):
        import json
        from huggingface_hub import snapshot_download
        path = snapshot_download(arch[len("hf-hub:"):])
        cfg = json.loads((Path(path) / "open_clip_config.json").read_text())
        text = cfg.get("model_cfg", {}).get("text_cfg", {})
        extra = [snapshot_download(r, allow_patterns=["*.json", "*.txt"])  # HF text tower config + tokenizer
                 for r in {text.get("hf_model_name"), text.get("hf_tokenizer_name")} if r]
        return [path] + extra
    import open_clip
    from open_clip.pretrained import download_pretrained
    return [download_pretrained(open_clip.get_pretrained_cfg(arch, tag))]


def _hf_blob_check(path: str) -> str:
    """Hugging Face cache blobs of LFS files are named by their SHA-256: compare."""
    blob = Path(path).resolve()
    name = blob.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return "ok (sha256 = Hugging Face LFS oid)" if sha256_of(blob) == name else f"MISMATCH: {blob}"
    return "present (no published hash)"


def verify(spec) -> list[tuple[str, str]]:
    """``[(file, status)]`` for ``spec``'s local weights; never touches the network."""
    if spec.tiny:
        return [("(built in)", "ok (tiny, random init)")]
    rows: list[tuple[str, str]] = []
    folder = local_weights_folder(spec)
    known = {e["filename"]: e for e in spec.files if "filename" in e}
    if folder.is_dir():
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            entry = known.get(f.name, {})
            want = entry.get("sha256") or entry.get("sha256_prefix")
            if want:
                rows.append((str(f), "ok (sha256)" if sha256_of(f).startswith(want) else
                             f"MISMATCH: sha256 does not start with published {want}"))
            elif f.suffix in CHECKPOINT_SUFFIXES:
                rows.append((str(f), "present (no published hash)"))
    for repo, fname in _hf_files(spec):
        hit = _hf_cached(repo, fname)
        if hit:
            rows.append((f"{repo}/{fname}", _hf_blob_check(hit)))
    if not rows:
        rows.append((spec.name, "missing"))
    return rows


def _hf_files(spec) -> list[tuple[str, str]]:
    weights = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    repos = [e["repo"] for e in spec.files if "repo" in e and not e.get("tokenizer_only")]
    arch = spec.options.get("arch", "")
    if arch.startswith("hf-hub:"):
        repos.append(arch[len("hf-hub:"):])
    elif spec.family in ("open_clip", "coca") and arch:
        try:
            import open_clip
            hub = (open_clip.get_pretrained_cfg(arch, spec.options.get("tag")) or {}).get("hf_hub", "")
        except Exception:  # noqa: BLE001
            hub = ""
        if hub:
            repos.append("/".join(hub.rstrip("/").split("/")[:2]))
    return [(r, f) for r in repos for f in weights]


def write_state_dict(state: dict, path) -> str:
    """Atomically save a state dict: ``.safetensors`` by suffix, else ``torch.save`` (loadable
    with ``weights_only=True``).  The counterpart of :func:`read_state_dict`."""
    from medkt.runs import atomic_path
    sd = {k: v.detach().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(sd, str(tmp))
        else:
            import torch
            torch.save(sd, str(tmp))
    return str(path)
