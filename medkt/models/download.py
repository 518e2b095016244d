"""Downloads (only with ``MEDKT_OFFLINE=0``): pinned, verified before they land, bounded unzip.

* URL files go to ``MEDKT_HOME/weights/<name>/``: fetched to a ``.part`` file, hashed, and
  renamed into place only when the SHA-256 matches the registry pin;
* Hugging Face repos are fetched at the registry's pinned ``revision`` (a commit id);
* zip archives are checked member by member (count, total size, no absolute paths, no
  ``..``, no links) before anything is extracted;
* anything without a pin is refused unless ``allow_unpinned=True`` (CLI
  ``--allow-unpinned``); its SHA-256 is then recorded in ``SHA256SUMS`` on arrival.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from medkt.models.resolve import local_weights_folder
from medkt.models.verify import check_download, entry_pinned, record_sums, sha256_of, unpinned_entries
from medkt.paths import is_offline

MAX_ZIP_MEMBERS = 1000
MAX_ZIP_BYTES = 8 << 30  # 8 GiB uncompressed


def _require_online(spec) -> None:
    from medkt.errors import WeightsError
    if is_offline():
        raise WeightsError(f"cannot download '{spec.name}': medkt is offline.",
                           hint=f"on a connected machine run `MEDKT_OFFLINE=0 medkt weights download {spec.name}`, "
                                f"or copy the files to {local_weights_folder(spec)} / pass --weights PATH")


def _require_pins(spec, allow_unpinned: bool) -> None:
    from medkt.errors import WeightsError
    loose = unpinned_entries(spec)
    if loose and not allow_unpinned:
        raise WeightsError(
            f"'{spec.name}' has no published SHA-256 or revision pin for: {'; '.join(loose)}.",
            hint=f"`medkt weights download --allow-unpinned {spec.name}` downloads it anyway and records the "
                 "SHA-256 of what arrived (SHA256SUMS); `medkt weights verify` then checks against that")


def download(spec, *, allow_unpinned: bool = False) -> list[str]:
    """Fetch ``spec``'s weights (only with ``MEDKT_OFFLINE=0``) → local paths.

    Refuses (:class:`WeightsError`) when medkt is offline, or when an entry has no pin and
    ``allow_unpinned`` is False.  Nothing unverified is ever left where a loader looks.
    """
    from medkt.errors import WeightsError
    if spec.tiny:
        return []
    _require_online(spec)
    for entry in spec.files:
        if "manual" in entry:
            raise WeightsError(f"'{spec.name}' has no direct download link.",
                               hint=f"download {entry['filename']} from {entry['manual']} and put it in "
                                    f"{local_weights_folder(spec)} (or pass --weights PATH)")
    _require_pins(spec, allow_unpinned)
    out: list[str] = []
    if spec.family in ("open_clip", "coca"):
        out += _download_open_clip(spec)
    for entry in spec.files:
        if "url" in entry:
            out.append(str(download_url(spec, entry, url_fetch=_fetch_url)))
        elif "repo" in entry:  # into MEDKT_HOME/weights/<name>[/tokenizer]: one folder to copy
            out.append(_download_repo(spec, entry))
    return out


def _fetch_url(url: str, dest: str) -> None:
    from torch.hub import download_url_to_file
    download_url_to_file(url, dest, progress=True)


def download_url(spec, entry: dict, *, url_fetch=_fetch_url) -> Path:
    """One URL entry: fetch to ``.part``, check the SHA-256 **before** renaming, then unzip if asked."""
    folder = local_weights_folder(spec)
    folder.mkdir(parents=True, exist_ok=True)
    url = entry["url"]
    target = folder / (PurePosixPath(url).name if entry.get("unzip") else entry["filename"])
    tmp = target.with_name(target.name + ".part")
    try:
        url_fetch(url, str(tmp))
        digest = check_download(tmp, entry, target)  # raises (and deletes tmp) on a mismatch
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not entry.get("unzip"):
        tmp.replace(target)
        if not entry_pinned(entry):
            record_sums(folder, {target.name: digest})
        return target
    try:
        extracted = safe_extract(tmp, folder)
    finally:
        tmp.unlink(missing_ok=True)
    found = sorted(folder.rglob(entry["filename"]))
    if found and found[0].parent != folder:  # flatten <zip folder>/<file> into the model folder
        inner = found[0].parent
        for f in inner.iterdir():
            shutil.move(str(f), str(folder / f.name))
        extracted = [folder / p.name if p.parent == inner else p for p in extracted]
    record_sums(folder, {p.relative_to(folder).as_posix(): sha256_of(p) for p in extracted if p.is_file()}
                | {f"{target.name} (archive)": digest})
    return folder / entry["filename"]


def safe_extract(archive: Path, dest: Path, *, max_members: int = MAX_ZIP_MEMBERS,
                 max_bytes: int = MAX_ZIP_BYTES) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every member; → extracted file paths.

    Refused (:class:`WeightsError`, nothing extracted): more than ``max_members`` members,
    a declared uncompressed total over ``max_bytes``, an absolute path, a ``..`` component,
    or a symbolic link.  ``zipfile`` stops each member at its declared size (and checks its
    CRC), and the bytes written are counted again, so the declared total bounds the disk use.
    """
    from medkt.errors import WeightsError
    dest = Path(dest).resolve()

    def refuse(why: str):
        return WeightsError(f"refusing to unzip: {why}.", path=str(archive),
                            hint="the archive is not the published one; delete it and retry the download")
    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise refuse(f"not a valid zip ({e})") from None
    with z:
        infos = z.infolist()
        if len(infos) > max_members:
            raise refuse(f"{len(infos)} members (limit {max_members})")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise refuse(f"{total} bytes uncompressed (limit {max_bytes})")
        for i in infos:
            p = PurePosixPath(i.filename.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts or not (dest / p).resolve().is_relative_to(dest):
                raise refuse(f"member '{i.filename}' would land outside {dest}")
            if (i.external_attr >> 16) & 0o170000 == 0o120000:
                raise refuse(f"member '{i.filename}' is a symbolic link")
        out, written = [], 0
        for i in infos:
            target = dest.joinpath(*PurePosixPath(i.filename.replace("\\", "/")).parts)
            if i.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(i) as src, open(target, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    written += len(block)
                    if written > max_bytes:
                        dst.close()
                        target.unlink(missing_ok=True)
                        raise refuse(f"more than {max_bytes} bytes when decompressed")
                    dst.write(block)
            out.append(target)
    return out


def _download_repo(spec, entry: dict) -> str:
    from huggingface_hub import snapshot_download
    if entry.get("hf_cache"):  # an hf-hub: spec: into the Hugging Face cache, where hf-hub: resolves
        from medkt.paths import hf_cache_dir
        return snapshot_download(entry["repo"], revision=entry.get("revision"), cache_dir=str(hf_cache_dir()))
    tok = entry.get("tokenizer_only")
    dest = local_weights_folder(spec) / ("tokenizer" if tok else "")
    patterns = ["*.json", "*.txt", "*.model"] if tok else \
        ["*.json", "*.txt", "*.safetensors"] if _has_safetensors(entry["repo"], entry.get("revision")) else None
    return snapshot_download(entry["repo"], revision=entry.get("revision"), allow_patterns=patterns,
                             local_dir=str(dest))


def _has_safetensors(repo: str, revision: str | None = None) -> bool:
    from huggingface_hub import list_repo_files
    return any(f.endswith(".safetensors") for f in list_repo_files(repo, revision=revision))


def _download_open_clip(spec) -> list[str]:
    from huggingface_hub import snapshot_download
    from medkt.models.resolve import open_clip_hub_repo
    from medkt.paths import hf_cache_dir
    arch, tag, rev = spec.options["arch"], spec.options.get("tag"), spec.options.get("revision")
    cache = str(hf_cache_dir())
    if arch.startswith("hf-hub:"):
        import json
        path = snapshot_download(arch[len("hf-hub:"):], revision=rev, cache_dir=cache)
        cfg = json.loads((Path(path) / "open_clip_config.json").read_text())
        text = cfg.get("model_cfg", {}).get("text_cfg", {})
        extra = [snapshot_download(r, allow_patterns=["*.json", "*.txt"], cache_dir=cache)  # text config + tokenizer
                 for r in {text.get("hf_model_name"), text.get("hf_tokenizer_name")} if r]
        return [path] + extra
    repo = open_clip_hub_repo(arch, tag)
    if repo and rev:
        return [snapshot_download(repo, revision=rev, cache_dir=cache,
                                  allow_patterns=["open_clip_*", "*.json", "*.txt"])]
    import open_clip
    from open_clip.pretrained import download_pretrained
    return [download_pretrained(open_clip.get_pretrained_cfg(arch, tag), cache_dir=cache)]
