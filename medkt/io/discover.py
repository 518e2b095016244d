"""Find the cases in an input path: a DICOM series folder, a folder of several series, NIfTI files, 2-D images.

Discovery reads headers only.  What it cannot use is reported, never silently dropped:

* a case it can already tell is unreadable (corrupt or empty file, missing decoder, gantry tilt,
  irregular spacing, mixed series, 4-D NIfTI without a volume choice...) is returned with
  ``Case.error`` set, so ``medkt inspect`` lists it and a batch records it as failed;
* files that are not images (``notes.txt``, RTSTRUCT, SR, DICOM-SEG...), broken links and symlink
  loops are skipped, logged at WARNING, and listed in ``CaseList.skipped``.

Raises :class:`~medkt.errors.InputError` only when there is nothing to process at all (missing
path, empty folder, no image among the files).
"""
from __future__ import annotations

import errno
import logging
import os
from collections import Counter
from pathlib import Path

from medkt.errors import InputError
from medkt.io._fs import IGNORED_NAMES, case_base, safe_id, suffix_of, walk_files
from medkt.io.readers import list_readers
from medkt.io.types import Case

log = logging.getLogger("medkt.io")


class CaseList(list):
    """A ``list[Case]`` that also carries ``skipped``: ``[(path, reason), ...]`` for ignored files."""

    def __init__(self, cases=(), skipped=(), root: Path | None = None):
        super().__init__(cases)
        self.skipped: list[tuple[Path, str]] = list(skipped)
        self.root = root


def _check_root(root: Path) -> None:
    try:
        os.stat(root)
    except FileNotFoundError:
        raise InputError("the input path does not exist.", path=root,
                         hint="check the spelling, or mount the data folder") from None
    except PermissionError:
        raise InputError("the input path is not accessible (permission denied).", path=root,
                         hint="make it readable for this user") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError("the input path is a symbolic link loop.", path=root,
                             hint="fix or remove the link") from None
        raise InputError(f"cannot access the input path: {e.strerror}.", path=root) from None


def discover_cases(path: str | Path, *, nifti_volume: int | None = None, modality: str | None = None,
                   max_voxels: int | None = None) -> CaseList:
    """List the cases under ``path`` (a file or a folder, searched recursively).

    Args:
        path: a DICOM file or series folder, a folder holding several series, a NIfTI file or folder
            of NIfTI files, a 2-D image or a folder of them (mixtures are fine).
        nifti_volume: index of the volume to take from 4-D NIfTI files (without it they are refused).
        modality: override the modality (``"CT"``, ``"MR"``, ``"US"``, ``"CXR"``...); NIfTI and 2-D
            images carry none, DICOM series carry their own.
        max_voxels: size limit per image, checked from headers before any pixel is read (default
            :data:`medkt.io.checks.DEFAULT_MAX_VOXELS`); larger images become failed cases.

    Returns:
        :class:`CaseList` of :class:`~medkt.io.types.Case`, in a stable order, with unique ``case_id``.

    Raises:
        InputError: the path does not exist, the folder is empty, or nothing in it is an image.
    """
    root = Path(path).expanduser()
    _check_root(root)
    skipped: list[tuple[Path, str]] = []
    if root.is_dir():
        files = walk_files(root, skipped)
        if not files and not skipped:
            raise InputError("the input folder is empty.", path=root,
                             hint="point to the folder that holds the images (DICOM, NIfTI, PNG/JPEG/TIFF)")
    else:
        files = [root]
    readers = list_readers()
    buckets: dict[str, list[Path]] = {r.kind: [] for r in readers}
    for f in files:
        if f.name.lower() in IGNORED_NAMES or f.name.startswith("._"):
            log.debug("%s: ignored system file", f)
            continue
        for r in readers:
            if r.claims(f):
                buckets[r.kind].append(f)
                break
        else:
            reason = "not an image file (unknown type); skipped"
            skipped.append((f, reason))
            log.warning("%s: %s", f, reason)
    cases: list[Case] = []
    for r in readers:
        if buckets[r.kind]:
            cases.extend(r.scan(buckets[r.kind], root, nifti_volume=nifti_volume, modality=modality,
                                skipped=skipped, max_voxels=max_voxels))
    if not cases:
        detail = "; ".join(f"{p.name}: {why}" for p, why in skipped[:5])
        raise InputError("no image found" + (f" ({detail}{'...' if len(skipped) > 5 else ''})" if detail else "")
                         + ".", path=root,
                         hint="medkt reads DICOM series, NIfTI (.nii/.nii.gz) and PNG/JPEG/TIFF images")
    _unique_ids(cases, root)
    return CaseList(cases, skipped, root)


#: names a run writes at the top of its output folder; a case id never takes one of them
RESERVED_IDS = frozenset({"cases.csv", "run.json", "summary.json", "per_case.csv", "config.resolved.yaml"})


def _counts(cases: list[Case]) -> Counter:
    return Counter(c.case_id.casefold() for c in cases)


def _unique_ids(cases: list[Case], root: Path) -> None:
    """Make ``case_id`` filesystem-safe and unique, also case-insensitively (macOS, Windows).

    Colliding ids get, in turn, their folder path, their file type, then a number ``_N``
    chosen against *all* ids, so ``a b.nii``, ``a_b.nii`` and ``a_b_nii_1.nii`` give three ids.
    """
    for c in cases:
        c.case_id = safe_id(c.case_id)
        if c.case_id.casefold() in RESERVED_IDS:
            c.case_id = f"{c.case_id}_case"
    counts = _counts(cases)
    for c in cases:
        if counts[c.case_id.casefold()] > 1 and c.kind != "dicom" and root.is_dir():
            prefix = case_base(c.paths[0].parent, root)
            if prefix and prefix != root.name:
                c.case_id = safe_id(f"{prefix}_{c.case_id}")
    counts = _counts(cases)
    for c in cases:
        if counts[c.case_id.casefold()] > 1 and len(c.paths) == 1 and c.kind != "dicom":
            ext = suffix_of(c.paths[0]).lstrip(".").replace(".", "")
            if ext:
                c.case_id = f"{c.case_id}_{ext}"
    counts = _counts(cases)
    taken = set(counts)
    for c in cases:
        if counts[c.case_id.casefold()] > 1:
            base, n = c.case_id, 1
            while f"{base}_{n}".casefold() in taken:
                n += 1
            c.case_id = f"{base}_{n}"
            taken.add(c.case_id.casefold())
    assert len(_counts(cases)) == len(cases), "case ids must be unique"
