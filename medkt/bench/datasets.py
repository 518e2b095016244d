"""Benchmark dataset adapters: a registry of named folder layouts.

Each adapter knows one dataset's folder layout (documented in its ``layout`` text and in
``docs/datasets.md``), turns a root folder into a :class:`Dataset` of :class:`Case` items
in a fixed, sorted order, and reads images and masks on demand::

    from medkt.bench.datasets import load_dataset, list_datasets
    ds = load_dataset("busi", "/data/BUSI", limit=20)
    img = ds.image(ds.cases[0])            # HxW or HxWxC, uint8 or float in [0, 1]
    gt = ds.mask(ds.cases[0])              # HxW bool

A folder that does not match the layout raises :class:`~medkt.errors.InputError` whose
message shows the expected layout.  ``limit`` keeps the first N cases of the canonical
order; for classification sets they are taken round-robin over classes so that every
class is represented.  Case ids are stable: the same root gives the same ids and order on
every machine, which is what deterministic sharding relies on.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import InputError, look_up

TASKS = ("classification", "segmentation", "captions")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".JPEG", ".PNG", ".JPG")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


@dataclass
class Case:
    """One evaluation item.

    ``image``/``mask`` are paths (a 3-D volume slice adds ``meta["slice"]`` and
    ``meta["axis"]``); ``label`` is a class name; ``captions`` the reference captions.
    """

    case_id: str
    image: str
    label: str | None = None
    mask: str | None = None
    captions: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


@dataclass
class Dataset:
    """A scanned dataset: ordered cases, class names, and the adapter that reads them."""

    name: str
    root: Path
    task: str
    cases: list[Case]
    classes: list[str] = field(default_factory=list)
    adapter: "DatasetAdapter | None" = None
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cases)

    def image(self, case: Case) -> np.ndarray:
        """The case's image: ``HxW`` or ``HxWx3``, uint8 or float32 in [0, 1]."""
        return self.adapter.read_image(case, self.options)

    def mask(self, case: Case) -> np.ndarray:
        """The case's ground-truth mask as ``HxW`` bool."""
        if case.mask is None:
            raise InputError(f"case '{case.case_id}' of {self.name} has no mask.")
        return self.adapter.read_mask(case, self.options)

    def spacing(self, case: Case) -> tuple[float, float] | None:
        """In-plane pixel spacing (rows, cols) in mm, when the source format stores it."""
        return case.meta.get("spacing")

    def ref(self) -> dict:
        """A picklable description from which a worker re-opens this dataset (no rescan)."""
        return {"adapter": self.name, "root": str(self.root), "options": dict(self.options)}


class DatasetAdapter:
    """Base class: subclasses set ``name``, ``task``, ``layout`` and implement :meth:`scan`."""

    name: str = ""
    task: str = "classification"
    title: str = ""
    layout: str = ""
    default_options: dict = {}

    def scan(self, root: Path, options: dict) -> tuple[list[Case], list[str]]:
        raise NotImplementedError

    # ---------------------------------------------------------------- reading
    def read_image(self, case: Case, options: dict) -> np.ndarray:
        return read_image_file(case.image)

    def read_mask(self, case: Case, options: dict) -> np.ndarray:
        return read_mask_file(case.mask)

    # ---------------------------------------------------------------- errors
    def layout_error(self, root: Path, problem: str) -> InputError:
        """An :class:`InputError` naming the problem and showing the expected layout."""
        return InputError(f"{problem}\n  expected layout for dataset '{self.name}' ({self.title}):\n"
                          + _indent(self.layout.strip("\n"), 4),
                          path=str(root), hint="see docs/datasets.md, or pass the folder that holds "
                                               "this layout")


_REGISTRY: dict[str, DatasetAdapter] = {}


def register_dataset(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Class decorator: register an adapter under ``cls.name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def _load_builtin() -> None:
    from medkt.bench import adapters_classification, adapters_segmentation, adapters_text  # noqa: F401


def get_adapter(name: str) -> DatasetAdapter:
    _load_builtin()
    return look_up("dataset", name, _REGISTRY)


def list_datasets() -> list[DatasetAdapter]:
    _load_builtin()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def load_dataset(name: str, root: str | Path, *, limit: int | None = None,
                 options: dict | None = None) -> Dataset:
    """Scan ``root`` with adapter ``name``; see the module docstring."""
    adapter = get_adapter(name)
    root = Path(root).expanduser().absolute()
    opts = {**adapter.default_options, **(options or {})}
    unknown = sorted(set(opts) - set(adapter.default_options))
    if unknown:
        from medkt.errors import ConfigError
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for dataset '{name}'.",
                          hint=f"options: {', '.join(sorted(adapter.default_options)) or '(none)'}")
    if not root.is_dir():
        raise adapter.layout_error(root, "the dataset folder does not exist.")
    cases, classes = adapter.scan(root, opts)
    if not cases:
        raise adapter.layout_error(root, "no cases were found.")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise adapter.layout_error(root, f"duplicate case ids: {', '.join(dup)}.")
    if limit is not None and limit > 0:
        cases = apply_limit(cases, limit, by_label=adapter.task == "classification")
    return Dataset(name=name, root=root, task=adapter.task, cases=cases, classes=classes,
                   adapter=adapter, options=opts)


def open_dataset(ref: dict, cases: list[Case]) -> Dataset:
    """Re-open a dataset from :meth:`Dataset.ref` with already-scanned ``cases`` (workers)."""
    adapter = get_adapter(ref["adapter"])
    return Dataset(name=ref["adapter"], root=Path(ref["root"]), task=adapter.task, cases=cases,
                   adapter=adapter, options=ref.get("options", {}))


def apply_limit(cases: list[Case], limit: int, by_label: bool = False) -> list[Case]:
    """First ``limit`` cases; with ``by_label`` taken round-robin over labels (order kept)."""
    if not by_label:
        return cases[:limit]
    buckets: dict[Any, list[int]] = {}
    for i, c in enumerate(cases):
        buckets.setdefault(c.label, []).append(i)
    chosen: list[int] = []
    queues = [list(v) for v in buckets.values()]
    while len(chosen) < limit and any(queues):
        for q in queues:
            if q and len(chosen) < limit:
                chosen.append(q.pop(0))
    return [cases[i] for i in sorted(chosen)]


# ---------------------------------------------------------------------- helpers for adapters
def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def natural_key(s: str):
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def list_images(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), naturally sorted."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(tuple(suffixes))
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def stem(path: Path) -> str:
    name = path.name
    for suf in VOLUME_SUFFIXES + IMAGE_SUFFIXES + (".dcm", ".IMG", ".npy"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def safe_id(text: str) -> str:
    """A case id usable in file names (spaces and odd characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def read_image_file(path: str | Path) -> np.ndarray:
    """Read a 2-D image: PNG/JPEG/TIFF/BMP (PIL), DICOM (pydicom), ``.npy``.

    Returns ``HxW`` or ``HxWx3`` (alpha dropped, palettes expanded): uint8 as stored, or
    float32 in [0, 1] for 16-bit and DICOM data (min-max over the image).
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".dcm":
            return _read_dicom(path)
        if path.suffix.lower() == ".npy":
            return _to_unit(np.load(path))
        from PIL import Image
        with Image.open(path) as im:
            if im.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure becomes one typed error
        raise InputError(f"cannot read image: {type(e).__name__}: {e}", path=str(path)) from None
    if arr.dtype == np.uint8:
        return arr
    return _to_unit(arr)


def read_mask_file(path: str | Path) -> np.ndarray:
    """Read a 2-D mask (any format :func:`read_image_file` reads) → ``HxW`` bool (``> 0``)."""
    arr = read_image_file(path)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return np.asarray(arr) > 0


def _to_unit(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi > lo:
        arr = (arr - lo) / (hi - lo)
    else:
        arr = np.zeros_like(arr)
    return arr


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    ds = pydicom.dcmread(str(path))
    arr = ds.pixel_array.astype(np.float32)
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = arr.max() - arr
    return _to_unit(arr)


@functools.lru_cache(maxsize=4)
def read_volume(path: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """A NIfTI volume in closest-canonical (RAS) orientation: ``(array[x, y, z], spacing)``.

    Cached (a few volumes), so reading many slices of one volume loads it once.
    """
    import nibabel as nib
    try:
        img = nib.as_closest_canonical(nib.load(path))
        arr = np.asarray(img.dataobj)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot read volume: {type(e).__name__}: {e}", path=path) from None
    return arr, tuple(float(z) for z in img.header.get_zooms()[:3])


def volume_slice(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a RAS array, displayed radiologically (anterior/superior up)."""
    sl = np.take(arr, index, axis=axis)
    return np.flipud(sl.T)


def slice_spacing(spacing: tuple[float, ...], axis: int) -> tuple[float, float]:
    inplane = [s for i, s in enumerate(spacing) if i != axis]
    return (float(inplane[1]), float(inplane[0]))  # rows follow the second remaining axis after .T


def normalize_intensity(arr: np.ndarray, method: str, window: list[float] | None = None) -> np.ndarray:
    """Volume intensities → float32 [0, 1].

    ``percentile``: clip to the 0.5–99.5 percentiles of non-zero voxels (MRI, MedSAM);
    ``window``: CT window ``[level, width]`` in HU; ``minmax``: over the whole volume.
    """
    arr = arr.astype(np.float32)
    if method == "window":
        level, width = (window or [-600.0, 1500.0])
        lo, hi = level - width / 2, level + width / 2
    elif method == "percentile":
        nz = arr[arr != 0]
        if nz.size == 0:
            return np.zeros_like(arr)
        lo, hi = np.percentile(nz, [0.5, 99.5])
    else:
        lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0, 1)

