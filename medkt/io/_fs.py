"""Filesystem helpers for discovery: a loop-safe walk, readability checks and file-type sniffing."""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from medkt.errors import InputError

log = logging.getLogger("medkt.io")

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Files that are never images and are skipped silently (besides a debug log line).
IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "dicomdir"}
#: medkt's own bookkeeping in an output folder (lock, temp folder, done-markers): never inputs.
MEDKT_NAMES = {".medkt", ".medkt-tmp", ".medkt.lock"}


def hidden_reason(name: str, is_dir: bool = False) -> str | None:
    """Why a hidden entry (name starting with ``.``) is not an input, or ``None`` if not hidden.

    Hidden files are temp files of interrupted writes or copies (``.scan.nii.gz.x1y2.tmp``),
    editor or OS leftovers; they are never cases.
    """
    if not name.startswith("."):
        return None
    if name in MEDKT_NAMES:
        return "medkt bookkeeping; skipped"
    if ".tmp" in name.lower() or name.lower().endswith((".part", ".partial", ".crdownload", "~")):
        return "hidden temp file (an interrupted write or copy); skipped"
    what = "folder" if is_dir else "file"
    return f"hidden {what}; skipped (rename it without the leading dot to include it)"


def open_binary(path: Path):
    """Open ``path`` for reading bytes (a seam so tests can simulate I/O failures)."""
    return open(path, "rb")


def check_readable(path: Path) -> None:
    """Raise :class:`InputError` if ``path`` is empty, unreadable or a symlink loop."""
    try:
        with open_binary(path) as f:
            head = f.read(1)
    except PermissionError:
        raise InputError("cannot read the file: permission denied.", path=path,
                         hint="make it readable for this user (e.g. chmod a+r) or copy the data") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError("the path is a symbolic link loop.", path=path,
                             hint="remove or fix the link") from None
        raise InputError(f"cannot read the file: {e.strerror or e}.", path=path) from None
    if not head:
        raise InputError("the file is empty (0 bytes), probably an interrupted copy.", path=path,
                         hint="copy the file again from its source, or remove it")


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def stem_of(path: Path) -> str:
    s = suffix_of(path)
    return path.name[: len(path.name) - len(s)] if s else path.name


def looks_like_dicom(path: Path) -> bool:
    """True if the file has the DICOM preamble (``DICM`` at byte 128) or a DICOM suffix."""
    if suffix_of(path) in DICOM_SUFFIXES:
        return True
    try:
        with open_binary(path) as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def walk_files(root: Path, problems: list[tuple[Path, str]]) -> list[Path]:
    """All regular files under ``root`` (sorted), following directory symlinks at most once.

    Hidden files and folders (``.name``) below ``root`` are never returned: medkt's own
    bookkeeping (``.medkt``, ``.medkt-tmp``, ``.medkt.lock``) and OS metadata are dropped
    silently, anything else (temp files of interrupted writes...) goes to ``problems``.

    Symlink loops and unreadable folders are not fatal: they are appended to ``problems`` as
    ``(path, reason)`` and logged, and the walk goes on.
    """
    out: list[Path] = []
    seen: set[str] = set()

    def visit(d: Path) -> None:
        real = os.path.realpath(d)
        if real in seen:
            problems.append((d, "symbolic link loop (folder already visited); skipped"))
            log.warning("%s: symbolic link loop; skipped", d)
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except PermissionError:
            problems.append((d, "folder not readable (permission denied); skipped"))
            log.warning("%s: folder not readable; skipped", d)
            return
        for e in entries:
            p = Path(e.path)
            hidden = hidden_reason(e.name, _is_dir(e))
            if hidden is not None:
                if e.name.lower() in IGNORED_NAMES or e.name.startswith("._"):
                    continue  # OS metadata (.DS_Store, AppleDouble): dropped silently at discovery
                if e.name in MEDKT_NAMES:
                    log.debug("%s: %s", p, hidden)
                    continue
                problems.append((p, hidden))
                log.warning("%s: %s", p, hidden)
                continue
            try:
                if e.is_dir(follow_symlinks=True):
                    visit(p)
                elif e.is_file(follow_symlinks=True):
                    out.append(p)
                elif e.is_symlink():
                    # a dangling link or a link loop: os.stat fails
                    try:
                        os.stat(p)
                        reason = "not a regular file; skipped"
                    except OSError as err:
                        reason = ("symbolic link loop; skipped" if err.errno == errno.ELOOP
                                  else "broken symbolic link; skipped")
                    problems.append((p, reason))
                    log.warning("%s: %s", p, reason)
            except OSError as err:
                reason = ("symbolic link loop; skipped" if err.errno == errno.ELOOP
                          else f"cannot stat ({err.strerror}); skipped")
                problems.append((p, reason))
                log.warning("%s: %s", p, reason)

    visit(root)
    return out


def case_base(folder: Path, root: Path, file: Path | None = None) -> str:
    """A readable case-id stem: the folder path relative to the input root, joined with ``_``."""
    if root.is_file():
        return stem_of(file or root)
    try:
        rel = folder.relative_to(root)
    except ValueError:
        rel = Path(folder.name)
    parts = [p for p in rel.parts if p not in ("", ".")]
    return "_".join(parts) if parts else (root.name or "case")


def safe_id(text: str) -> str:
    """Filesystem-safe case id (letters, digits, ``-_.``)."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._")
    return out or "case"
