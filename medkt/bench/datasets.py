"""Benchmark dataset adapters: a registry of named folder layouts.

Each adapter knows one dataset's folder layout (documented in its ``layout`` text and in
``docs/datasets.md``), turns a root folder into a :class:`Dataset` of :class:`BenchItem`s
in a fixed, sorted order, and reads images and masks on demand through :mod:`medkt.io`
(adapters only list and pair files; reading, intensity preparation and slicing are medkt.io's,
so ``medkt bench`` and ``medkt segment`` see the same pixels)::

    from medkt.bench.datasets import load_dataset, list_datasets
    ds = load_dataset("busi", "/data/BUSI", limit=20)
    img = ds.image(ds.cases[0])            # HxW or HxWx3, uint8 or float32 in [0, 1]
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
class BenchItem:
    """One evaluation item of a benchmark dataset (not :class:`medkt.io.Case`, a readable input).

    ``image``/``mask`` are paths (a slice of a 3-D volume adds ``meta["slice"]``, the index
    ``k`` of :func:`medkt.io.iter_slices`, and ``meta["plane"]``); ``label`` is a class name;
    ``captions`` the reference captions.  ``case_id`` names it in every table.
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
    cases: list[BenchItem]
    classes: list[str] = field(default_factory=list)
    adapter: "DatasetAdapter | None" = None
    options: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cases)

    def image(self, case: BenchItem) -> np.ndarray:
        """The case's image: ``HxW`` or ``HxWx3``, uint8 or float32 in [0, 1]."""
        return self.adapter.read_image(case, self.options)

    def mask(self, case: BenchItem) -> np.ndarray:
        """The case's ground-truth mask as ``HxW`` bool."""
        if case.mask is None:
            raise InputError(f"case '{case.case_id}' of {self.name} has no mask.")
        return self.adapter.read_mask(case, self.options)

    def spacing(self, case: BenchItem) -> tuple[float, float] | None:
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

    def scan(self, root: Path, options: dict) -> tuple[list[BenchItem], list[str]]:
        raise NotImplementedError

    # ---------------------------------------------------------------- reading
    def read_image(self, case: BenchItem, options: dict) -> np.ndarray:
        return read_image_file(case.image)

    def read_mask(self, case: BenchItem, options: dict) -> np.ndarray:
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


def open_dataset(ref: dict, cases: list[BenchItem]) -> Dataset:
    """Re-open a dataset from :meth:`Dataset.ref` with already-scanned ``cases`` (workers)."""
    adapter = get_adapter(ref["adapter"])
    return Dataset(name=ref["adapter"], root=Path(ref["root"]), task=adapter.task, cases=cases,
                   adapter=adapter, options=ref.get("options", {}))


def apply_limit(cases: list[BenchItem], limit: int, by_label: bool = False) -> list[BenchItem]:
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


# ---------------------------------------------------------------------- reading (all through medkt.io)
def read_image_file(path: str | Path, *, modality: str | None = None, window=None,
                    keep_uint8: bool = True) -> np.ndarray:
    """Read a 2-D image (PNG/JPEG/TIFF/BMP, 2-D DICOM) with :func:`medkt.io.read_image`.

    Returns ``HxW`` or ``HxWx3``: with ``keep_uint8`` an 8-bit image as stored (natural images,
    what CLIP-style evaluations feed); anything else is prepared by
    :func:`medkt.io.prepare_intensity` (``modality``/``window`` as in ``medkt segment``) to float32
    in [0, 1], which is exactly the image ``medkt segment`` sees.
    """
    from medkt import io as mio
    vol = mio.read_image(path, modality=modality)
    if not vol.is_2d:
        raise InputError(f"expected a 2-D image, found a volume of shape {vol.array.shape}.", path=str(path),
                         hint="use the dataset's volume layout (imagesTs/labelsTs) for 3-D images")
    if keep_uint8 and window is None and vol.array.dtype == np.uint8:
        return vol.array
    return mio.prepare_intensity(vol, modality=modality, window=window)[0]


def read_mask_file(path: str | Path) -> np.ndarray:
    """Read a 2-D mask (any format :func:`medkt.io.read_image` reads) → ``HxW`` bool (``> 0``)."""
    from medkt import io as mio
    arr = np.asarray(mio.read_image(path).array)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return arr > 0


@functools.lru_cache(maxsize=4)
def volume_slices(path: str, plane: str = "axial", *, modality: str | None = None, window=None,
                  labels: tuple | None = None, mask: bool = False) -> tuple[dict[int, np.ndarray], tuple]:
    """A NIfTI/DICOM volume as display slices, through :mod:`medkt.io` (cached: a few volumes).

    Images: :func:`medkt.io.prepare_intensity` (``modality``, ``window``), then
    :func:`medkt.io.iter_slices` along ``plane`` (radiological display orientation), so each slice
    is the one ``medkt segment`` segments.  Masks (``mask=True``): foreground = ``labels`` (or
    ``> 0``), sliced the same way.  Returns ``({slice_index: 2-D array}, (row_mm, col_mm))``;
    image slices are float32 in [0, 1], mask slices bool.
    """
    from medkt import io as mio
    vol = mio.read_image(path, modality=modality)
    if vol.is_2d:
        raise InputError("expected a 3-D volume, found a 2-D image.", path=path)
    if mask:
        data = np.isin(vol.array, list(labels)) if labels else np.asarray(vol.array) > 0
    else:
        data = mio.prepare_intensity(vol, modality=modality, window=window)[0]
    slices, smap = mio.iter_slices(vol, plane, array=data)
    return dict(slices), tuple(float(s) for s in smap.pixel_spacing)
