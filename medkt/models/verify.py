"""Integrity: SHA-256 pins, the check run on every download, and ``medkt weights verify``.

A registry file entry is **pinned** when it carries a full ``sha256`` (64 hex digits) for
a URL file, or a ``revision`` (a 40-hex commit id) for a Hugging Face repo: a commit fixes
every file's content, and the cache stores LFS files under their SHA-256, which
:func:`verify` recomputes.  Files downloaded without a pin (``--allow-unpinned``) get
their SHA-256 recorded in ``MEDKT_HOME/weights/<name>/SHA256SUMS`` when they arrive, so a
later change is still caught (trust on first use).  Nothing here opens a connection.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

SUMS_FILE = "SHA256SUMS"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def entry_pinned(entry: dict) -> bool:
    """True when a registry file entry fixes the content it downloads (see module docstring)."""
    if "url" in entry:
        return bool(_HEX64.match(str(entry.get("sha256", ""))))
    if "repo" in entry:
        return bool(_HEX40.match(str(entry.get("revision", ""))))
    return True  # manual entries download nothing


def unpinned_entries(spec) -> list[str]:
    """Human-readable list of what ``spec`` would download without a pin."""
    out = [e.get("url") or e.get("repo") for e in spec.files
           if ("url" in e or "repo" in e) and not entry_pinned(e)]
    if spec.family in ("open_clip", "coca") and not spec.tiny and not _HEX40.match(
            str(spec.options.get("revision", ""))):
        arch, tag = spec.options.get("arch", ""), spec.options.get("tag")
        out.append(arch if arch.startswith("hf-hub:") else f"open_clip {arch} / {tag}")
    return [o for o in out if o]


def check_download(tmp: Path, entry: dict, final: Path) -> str:
    """SHA-256 of the not-yet-renamed download ``tmp``; raise (and delete it) on a pin mismatch.

    Called *before* the file is moved to ``final``, so a bad file never sits where a
    loader would find it.
    """
    from medkt.errors import WeightsError
    got = sha256_of(tmp)
    want = entry.get("sha256")
    if want and got != want:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"SHA-256 of the download is {got}, not the pinned {want}; nothing was kept.",
                           path=str(final), hint="retry the download; if it persists the source changed: "
                           "check the publisher's page before pinning the new value")
    return got


def record_sums(folder: Path, sums: dict[str, str]) -> None:
    """Add ``{relative name: sha256}`` to ``folder/SHA256SUMS`` (``sha256sum -c`` format)."""
    old = read_sums(folder)
    old.update(sums)
    from medkt.runs import atomic_path
    with atomic_path(folder / SUMS_FILE) as tmp:
        Path(tmp).write_text("".join(f"{h}  {n}\n" for n, h in sorted(old.items())))


def read_sums(folder: Path) -> dict[str, str]:
    p = folder / SUMS_FILE
    if not p.is_file():
        return {}
    out = {}
    for line in p.read_text().splitlines():
        h, _, name = line.partition("  ")
        if _HEX64.match(h) and name:
            out[name] = h
    return out


def _hf_blob_check(path: str) -> str:
    """Hugging Face cache blobs of LFS files are named by their SHA-256: compare."""
    blob = Path(path).resolve()
    name = blob.name
    if _HEX64.match(name):
        return "ok (sha256 = Hugging Face LFS oid)" if sha256_of(blob) == name else f"MISMATCH: {blob}"
    return "present (no published hash)"


def _hf_files(spec) -> list[tuple[str, str, str | None]]:
    from medkt.models.resolve import open_clip_hub_repo
    weights = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    repos = [(e["repo"], e.get("revision")) for e in spec.files if "repo" in e and not e.get("tokenizer_only")]
    arch = spec.options.get("arch", "")
    if arch.startswith("hf-hub:"):
        repos.append((arch[len("hf-hub:"):], spec.options.get("revision")))
    elif spec.family in ("open_clip", "coca") and arch:
        repo = open_clip_hub_repo(arch, spec.options.get("tag"))
        if repo:
            repos.append((repo, spec.options.get("revision")))
    return [(r, f, rev) for r, rev in repos for f in weights]


def verify(spec) -> list[tuple[str, str]]:
    """``[(file, status)]`` for ``spec``'s local weights; never touches the network.

    Status: ``ok (sha256)`` (matches the registry pin), ``ok (sha256 recorded at download)``
    (matches ``SHA256SUMS``), ``ok (sha256 = Hugging Face LFS oid)``, ``present (no published
    hash)``, or ``MISMATCH: ...``.
    """
    from medkt.models.checkpoints import CHECKPOINT_SUFFIXES
    from medkt.models.resolve import hf_cached, local_weights_folder
    if spec.tiny:
        return [("(built in)", "ok (tiny, random init)")]
    rows: list[tuple[str, str]] = []
    folder = local_weights_folder(spec)
    known = {e["filename"]: e for e in spec.files if "filename" in e}
    recorded = read_sums(folder) if folder.is_dir() else {}
    if folder.is_dir():
        for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS_FILE):
            entry = known.get(f.name, {})
            pin = None if entry.get("unzip") else entry.get("sha256")  # an unzip pin is the archive's
            rel = f.relative_to(folder).as_posix()
            if pin:
                rows.append((str(f), "ok (sha256)" if sha256_of(f) == pin else
                             f"MISMATCH: sha256 is not the pinned {pin}"))
            elif rel in recorded:
                rows.append((str(f), "ok (sha256 recorded at download)" if sha256_of(f) == recorded[rel] else
                             f"MISMATCH: sha256 changed since download ({SUMS_FILE})"))
            elif f.suffix in CHECKPOINT_SUFFIXES:
                rows.append((str(f), "present (no published hash)"))
    for repo, fname, rev in _hf_files(spec):
        hit = hf_cached(repo, fname, revision=rev)
        if hit:
            rows.append((f"{repo}/{fname}", _hf_blob_check(hit)))
    if not rows:
        rows.append((spec.name, "missing"))
    return rows
