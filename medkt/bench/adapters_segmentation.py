"""Segmentation dataset adapters: UnitoChest, UDIAT, BUSI, SIIM Pneumothorax, BraTS 2023 glioma.

Each pairs 2-D images with masks; the volumetric ones (UnitoChest, BraTS) also pair 3-D
NIfTI volumes with label volumes and expand them into one case per slice (by default the
slices whose mask is non-empty, as in the paper: "we consider all slices where a tumor is
present").  Images are read, intensity-prepared and sliced by :mod:`medkt.io` exactly as
``medkt segment`` does (options ``modality``, ``window`` and ``plane`` mean what they mean there).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medkt.bench.datasets import (BenchItem, DatasetAdapter, VOLUME_SUFFIXES, list_images, natural_key, read_image_file,
                                  read_mask_file, register_dataset, safe_id, stem, volume_slices)

#: Intensity options, as in ``medkt segment``: ``modality`` (ct | mr | us | cxr ...; None = min-max)
#: and ``window`` (CT preset name or [level, width]) go to :func:`medkt.io.prepare_intensity`.
IMAGE_OPTIONS = {"modality": None, "window": None}
SLICE_OPTIONS = {"split": None, "plane": "axial", "slices": "foreground", "labels": None, **IMAGE_OPTIONS}

LAYOUT_2D = """  {images}/  *.png | *.jpg | *.dcm     2-D images
  {masks}/   *.png                     masks with the same file stem (non-zero = foreground)
  (options.split=test reads test_images/ and test_masks/, the MedCLIP-SAMv2 layout)"""

LAYOUT_3D = """  imagesTs/  <case>_0000.nii.gz | <case>.nii.gz     3-D volumes (nnU-Net naming)
  labelsTs/  <case>.nii.gz                          label volumes (non-zero = foreground)
  (expanded into slices: options.plane = axial, options.slices = foreground | all)"""


def _dirs(root: Path, options: dict, images: str = "images", masks: str = "masks") -> tuple[Path, Path]:
    split = options["split"]
    if split:
        return root / f"{split}_{images}", root / f"{split}_{masks}"
    return root / images, root / masks


def scan_2d_pairs(adapter: DatasetAdapter, root: Path, img_dir: Path, mask_dir: Path,
                  mask_suffix: str = "") -> list[BenchItem]:
    """Pair ``img_dir/<stem>.*`` with ``mask_dir/<stem><mask_suffix>.*``; every image needs a mask."""
    images = list_images(img_dir, suffixes=(".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm",
                                            ".PNG", ".JPG", ".JPEG"))
    if not images:
        raise adapter.layout_error(root, f"no images in {img_dir}.")
    masks = {stem(p): p for p in list_images(mask_dir)}
    cases, missing = [], []
    for p in images:
        m = masks.get(stem(p) + mask_suffix)
        if m is None:
            missing.append(p.name)
            continue
        cases.append(BenchItem(case_id=safe_id(stem(p)), image=str(p), mask=str(m)))
    if missing:
        raise adapter.layout_error(root, f"{len(missing)} image(s) have no mask in {mask_dir} "
                                         f"(e.g. {', '.join(missing[:3])}).")
    return cases


def _volume_pairs(adapter: DatasetAdapter, root: Path) -> list[tuple[str, Path, Path]]:
    img_dir, lab_dir = root / "imagesTs", root / "labelsTs"
    vols = sorted([p for p in img_dir.glob("*") if p.name.endswith(VOLUME_SUFFIXES)],
                  key=lambda p: natural_key(p.name)) if img_dir.is_dir() else []
    if not vols:
        raise adapter.layout_error(root, f"no volumes in {img_dir}.")
    pairs = []
    for v in vols:
        case = stem(v)
        case = case[:-5] if case.endswith("_0000") else case
        lab = next((lab_dir / f"{case}{s}" for s in VOLUME_SUFFIXES if (lab_dir / f"{case}{s}").exists()), None)
        if lab is None:
            raise adapter.layout_error(root, f"volume {v.name} has no label {case}.nii.gz in {lab_dir}.")
        pairs.append((case, v, lab))
    return pairs


def _labels(options: dict) -> tuple | None:
    return tuple(int(x) for x in options["labels"]) if options["labels"] else None


def _window(options: dict):
    w = options["window"]
    return tuple(w) if isinstance(w, list) else w


def expand_slices(pairs: list[tuple[str, Path, Path]], options: dict) -> list[BenchItem]:
    """One :class:`BenchItem` per display slice along ``options.plane`` (slice index ``k`` as in
    :func:`medkt.io.iter_slices`), foreground-only unless ``slices=all``."""
    cases = []
    for case, img, lab in pairs:
        masks, spacing = volume_slices(str(lab), options["plane"], labels=_labels(options), mask=True)
        for k, m in masks.items():
            if options["slices"] == "all" or m.any():
                cases.append(BenchItem(case_id=safe_id(f"{case}_z{int(k):04d}"), image=str(img), mask=str(lab),
                                  meta={"slice": int(k), "plane": options["plane"], "volume": case,
                                        "spacing": spacing}))
    return cases


class SegmentationAdapter(DatasetAdapter):
    """2-D pairs (``images``/``masks``) or 3-D volumes (``imagesTs``/``labelsTs``) expanded to slices."""

    task = "segmentation"
    default_options = dict(SLICE_OPTIONS)
    images_dir, masks_dir, mask_suffix = "images", "masks", ""

    def scan(self, root, options):
        if (root / "imagesTs").is_dir():
            return expand_slices(_volume_pairs(self, root), options), []
        img_dir, mask_dir = _dirs(root, options, self.images_dir, self.masks_dir)
        if not img_dir.is_dir():
            raise self.layout_error(root, f"folder {img_dir.name}/ not found.")
        return scan_2d_pairs(self, root, img_dir, mask_dir, self.mask_suffix), []

    def read_image(self, case, options):
        if "slice" not in case.meta:
            return read_image_file(case.image, modality=options["modality"], window=_window(options),
                                   keep_uint8=False)
        slices, _ = volume_slices(case.image, case.meta["plane"], modality=options["modality"],
                                  window=_window(options))
        return slices[case.meta["slice"]].copy()  # the volume is cached: callers get their own slice

    def read_mask(self, case, options):
        if "slice" not in case.meta:
            return read_mask_file(case.mask)
        masks, _ = volume_slices(case.mask, case.meta["plane"], labels=_labels(options), mask=True)
        return masks[case.meta["slice"]].copy()


@register_dataset
class UnitoChest(SegmentationAdapter):
    name = "unitochest"
    title = "UnitoChest lung-nodule CT (slices with nodules; 4,179 in the paper)"
    layout = ("<root>/\n" + LAYOUT_2D.format(images="images", masks="masks")
              + "\nor 3-D CT volumes (HU; lung window by default, as configs/segment/ct-lung-nodule.yaml):\n"
              + "<root>/\n" + LAYOUT_3D + "\n")
    default_options = {**SLICE_OPTIONS, "modality": "ct", "window": "lung"}


@register_dataset
class UDIAT(SegmentationAdapter):
    name = "udiat"
    title = "UDIAT breast ultrasound, Dataset B (163 images: 110 benign, 53/54 malignant)"
    layout = """
<root>/
  original/  000001.png ...            the ultrasound images (as distributed)
  GT/        000001.png ...            lesion masks with the same file names
or the generic 2-D layout:
<root>/
""" + LAYOUT_2D.format(images="images", masks="masks") + "\n"

    def scan(self, root, options):
        if (root / "original").is_dir():
            return scan_2d_pairs(self, root, root / "original", root / "GT"), []
        return super().scan(root, options)


@register_dataset
class BUSI(SegmentationAdapter):
    name = "busi"
    title = "BUSI breast ultrasound (Al-Dhabyani et al.; benign, malignant, normal)"
    layout = """
<root>/                                    (Dataset_BUSI_with_GT)
  benign/     benign (1).png  benign (1)_mask.png  [benign (1)_mask_1.png ...]
  malignant/  malignant (1).png  malignant (1)_mask.png ...
  normal/     normal (1).png  normal (1)_mask.png          (used only with options.include_normal)
Extra masks (_mask_1, _mask_2) are merged into one lesion mask.
"""
    default_options = {"include_normal": False, "classes": ["benign", "malignant"], **IMAGE_OPTIONS}

    def scan(self, root, options):
        classes = list(options["classes"])
        if options["include_normal"] and "normal" not in classes:
            classes.append("normal")
        cases = []
        for cls in classes:
            d = root / cls
            if not d.is_dir():
                raise self.layout_error(root, f"class folder {cls}/ not found.")
            files = list_images(d)
            images = [f for f in files if "_mask" not in f.stem]
            for img in images:
                masks = [f for f in files if f.stem == f"{img.stem}_mask" or f.stem.startswith(f"{img.stem}_mask_")]
                if not masks:
                    raise self.layout_error(root, f"{cls}/{img.name} has no {img.stem}_mask.png.")
                cases.append(BenchItem(case_id=safe_id(f"{cls}_{img.stem}"), image=str(img), label=cls,
                                  mask=str(masks[0]), meta={"extra_masks": [str(m) for m in masks[1:]]}))
        return cases, classes

    def read_mask(self, case, options):
        m = read_mask_file(case.mask)
        for extra in case.meta.get("extra_masks", []):
            m = m | read_mask_file(extra)
        return m


@register_dataset
class SIIMPneumothorax(SegmentationAdapter):
    name = "siim_pneumothorax"
    title = "SIIM-ACR Pneumothorax (chest X-ray; 500 images in the paper)"
    layout = """
<root>/
""" + LAYOUT_2D.format(images="images", masks="masks") + """
or the challenge's run-length encoding:
<root>/
  train-rle.csv        ImageId, EncodedPixels (SIIM relative RLE, column-major; -1 = no pneumothorax)
  images/              <ImageId>.png | <ImageId>.dcm  (or dicom-images-train/**/<ImageId>.dcm)
Cases without pneumothorax are skipped unless options.positive_only=false.
"""
    default_options = {**SLICE_OPTIONS, "positive_only": True}

    def scan(self, root, options):
        rle = next((p for p in (root / "train-rle.csv", root / "stage_2_train.csv") if p.exists()), None)
        if rle is None:
            return super().scan(root, options)
        encodings: dict[str, list[str]] = {}
        with open(rle, newline="") as fh:
            for row in csv.reader(fh):
                if len(row) < 2 or row[0] == "ImageId":
                    continue
                encodings.setdefault(row[0].strip(), []).append(row[1].strip())
        files = {stem(p): p for p in list_images(root / "images", (".png", ".dcm", ".jpg"))}
        if not files:
            files = {stem(p): p for p in root.glob("dicom-images-*/**/*.dcm")}
        cases = []
        for image_id in sorted(encodings, key=natural_key):
            enc = [e for e in encodings[image_id] if e != "-1"]
            if options["positive_only"] and not enc:
                continue
            if image_id not in files:
                raise self.layout_error(root, f"image {image_id} listed in {rle.name} is missing.")
            cases.append(BenchItem(case_id=safe_id(image_id), image=str(files[image_id]), mask=None,
                              meta={"rle": enc}))
        for c in cases:
            c.mask = f"rle:{c.case_id}"
        return cases, []

    def read_mask(self, case, options):
        if "rle" not in case.meta:
            return super().read_mask(case, options)
        img = self.read_image(case, options)
        return rle_decode(case.meta["rle"], img.shape[0], img.shape[1])


def rle_decode(encodings: list[str], height: int, width: int) -> np.ndarray:
    """SIIM's relative run-length encoding (column-major, offsets relative to the last run) → bool mask."""
    flat = np.zeros(height * width, dtype=bool)
    for enc in encodings:
        nums = [int(x) for x in enc.split()]
        pos = 0
        for start, length in zip(nums[0::2], nums[1::2]):
            pos += start
            flat[pos:pos + length] = True
            pos += length
    return flat.reshape(width, height).T


def rle_encode(mask: np.ndarray) -> str:
    """Inverse of :func:`rle_decode` for one mask (used to build test fixtures)."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    runs, pos, last = [], 0, 0
    while pos < flat.size:
        if flat[pos]:
            start = pos
            while pos < flat.size and flat[pos]:
                pos += 1
            runs += [start - last, pos - start]
            last = pos
        else:
            pos += 1
    return " ".join(map(str, runs)) if runs else "-1"


BRATS_MODALITIES = ("t1c", "t1n", "t2f", "t2w")


@register_dataset
class BraTS23Glioma(SegmentationAdapter):
    name = "brats23_glioma"
    title = "BraTS 2023 adult glioma (MRI; 14,746 tumour slices in the paper)"
    layout = """
<root>/
  BraTS-GLI-00000-000/
    BraTS-GLI-00000-000-t1c.nii.gz  -t1n  -t2f  -t2w   the four MRI sequences (options.sequence)
    BraTS-GLI-00000-000-seg.nii.gz                     labels 1 NCR, 2 ED, 3 ET (options.labels)
  BraTS-GLI-00002-000/ ...
expanded into axial slices with tumour (options.slices=all keeps every slice), or 2-D slices:
<root>/
""" + LAYOUT_2D.format(images="images", masks="masks") + "\n"
    default_options = {**SLICE_OPTIONS, "modality": "mr", "sequence": "t2f"}

    def scan(self, root, options):
        if (root / "images").is_dir() or options["split"]:
            return super().scan(root, options)
        mod = options["sequence"]
        if mod not in BRATS_MODALITIES:
            raise self.layout_error(root, f"unknown sequence '{mod}'; use one of {', '.join(BRATS_MODALITIES)}.")
        subjects = sorted([d for d in root.iterdir() if d.is_dir() and d.name.startswith("BraTS")],
                          key=lambda d: natural_key(d.name))
        if not subjects:
            raise self.layout_error(root, "no BraTS-GLI-* subject folders and no images/ folder.")
        pairs = []
        for d in subjects:
            img = next((d / f"{d.name}-{mod}{s}" for s in VOLUME_SUFFIXES if (d / f"{d.name}-{mod}{s}").exists()), None)
            seg = next((d / f"{d.name}-seg{s}" for s in VOLUME_SUFFIXES if (d / f"{d.name}-seg{s}").exists()), None)
            if img is None or seg is None:
                raise self.layout_error(root, f"{d.name}/ lacks {d.name}-{mod}.nii.gz or {d.name}-seg.nii.gz.")
            pairs.append((d.name, img, seg))
        return expand_slices(pairs, options), []
