"""Training data for ``medkt refine``: images paired with ``medkt segment``'s pseudo-labels.

* :func:`find_labels` lists the pseudo-labels under a folder: a ``medkt segment`` output
  (``OUT/<case_id>/mask.{png,nii.gz}`` with ``saliency.{npy,nii.gz}`` beside it) or a flat
  folder of mask files named by case id (as ``--gt`` takes them).
* :func:`case_slices` reads one case the way ``medkt segment`` read it (intensities prepared
  with the same modality / window, 3-D volumes cut into the same display slices) and returns
  its 2-D slices: ``image`` ``[1, H, W]`` float32 in [0, 1] (RGB → mean of the channels),
  ``label`` ``[1, H, W]`` float32 0/1 and ``weight`` ``[1, H, W]`` float32 in [0, 1]
  (:func:`confidence`).
* :func:`train_transforms` / :func:`eval_transforms`: MONAI dictionary transforms
  (``Resized`` to the network size, then ``RandAffined`` augmentation for training).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medkt.errors import InputError

log = logging.getLogger("medkt.refine")

MASK_NAMES = ("mask.nii.gz", "mask.nii", "mask.png")
SALIENCY_NAMES = ("saliency.nii.gz", "saliency.nii", "saliency.npy")
KEYS = ("image", "label", "weight")


@dataclass
class LabelFiles:
    """One case's pseudo-label file and (optionally) its saliency map."""

    case_id: str
    mask: Path
    saliency: Path | None = None


def paired_cases(images, pseudo_masks, max_voxels: int | None = None) -> tuple[list, list[dict], list[str]]:
    """``([(case, LabelFiles), ...], failures, orphans)``: the discovered image cases of ``images``
    with their pseudo-labels under ``pseudo_masks``; a case without one is a failure row
    (``case_id``, ``reason``), not an error; ``orphans``: ids of pseudo-labels without an image."""
    from medkt import io as mio
    cases = mio.discover_cases(images, max_voxels=max_voxels)
    labels = find_labels(pseudo_masks)
    pairs, failures = [], []
    for case in cases:
        lf = labels.get(case.case_id)
        if lf is None:
            failures.append({"case_id": case.case_id, "reason": "no pseudo-label for this case"})
        else:
            pairs.append((case, lf))
    orphans = sorted(set(labels) - {c.case_id for c in cases})
    return pairs, failures, orphans


def find_labels(root: str | Path) -> dict[str, LabelFiles]:
    """``{case_id: LabelFiles}`` under ``root`` (see module docstring).

    Raises:
        InputError: ``root`` is missing or holds no mask (the message says which layouts are read).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError("the pseudo-label folder does not exist.", path=root,
                         hint="pass the output folder of `medkt segment` (or a folder of masks named by case id)")
    out: dict[str, LabelFiles] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        mask = next((sub / n for n in MASK_NAMES if (sub / n).is_file()), None)
        if mask is None:
            if (sub / "mask.seg.dcm").is_file():
                raise InputError("DICOM-SEG pseudo-labels are not read by medkt refine.", path=sub / "mask.seg.dcm",
                                 hint="rerun `medkt segment ... --mask-format nifti`")
            continue
        sal = next((sub / n for n in SALIENCY_NAMES if (sub / n).is_file()), None)
        out[sub.name] = LabelFiles(sub.name, mask, sal)
    if not out:
        from medkt.io import discover_cases
        try:
            cases = discover_cases(root)
        except InputError:
            cases = []
        out = {c.case_id: LabelFiles(c.case_id, Path(c.paths[0])) for c in cases if c.ok}
    if not out:
        raise InputError("no pseudo-label masks found.", path=root,
                         hint="pass a `medkt segment` output folder (CASE/mask.png or CASE/mask.nii.gz) "
                              "or a folder of mask files named like the images")
    return out


def _read_array(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    from medkt.io import read_image
    return np.asarray(read_image(path).array)


def confidence(label: np.ndarray, saliency: np.ndarray | None, cfg) -> np.ndarray:
    """Per-pixel weight in [0, 1] of a pseudo-label (``cfg``: :class:`~medkt.refinement.config.LabelConfig`).

    ``confidence: none`` → 1 everywhere.  ``saliency`` → ``s`` on foreground and ``1 - s`` on
    background (``s`` the min-max saliency map), floored at ``min_weight``; pixels below
    ``ignore_below`` get 0.  Then pixels of the border band (:func:`boundary_band`,
    ``boundary_ignore`` pixels) get 0.
    """
    if cfg.confidence == "none" or saliency is None:
        w = np.ones(label.shape, np.float32)
    else:
        s = np.clip(np.asarray(saliency, np.float32), 0.0, 1.0)
        conf = np.where(label > 0, s, 1.0 - s)
        w = np.maximum(conf, cfg.min_weight)
        if cfg.ignore_below > 0:
            w = np.where(conf < cfg.ignore_below, 0.0, w)
    if getattr(cfg, "boundary_ignore", 0) > 0:
        w = np.where(boundary_band(label, cfg.boundary_ignore), 0.0, w)
    return w.astype(np.float32)


def boundary_band(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels of a 2-D mask's border, on either side: the dilation minus the
    erosion by a ``(2·width + 1)²`` square (bool, ``label``'s shape).  An empty or full mask has
    no border (all False); the image edge is not a border."""
    from scipy import ndimage
    m = np.asarray(label) > 0
    if width <= 0 or not m.any() or m.all():
        return np.zeros(m.shape, bool)
    st = np.ones((2 * width + 1,) * m.ndim, bool)
    return ndimage.binary_dilation(m, st) & ~ndimage.binary_erosion(m, st, border_value=1)


def _gray(s: np.ndarray) -> np.ndarray:
    return s.mean(axis=-1) if s.ndim == 3 else s


def case_slices(vol, label: np.ndarray, saliency: np.ndarray | None, cfg, case_id: str,
                mask_path: Path | None = None) -> list[dict]:
    """Training samples of one case (see module docstring); ``cfg`` is a ``RefineConfig``.

    Raises:
        InputError: the pseudo-label (or saliency) is not on the image grid.
    """
    from medkt import io as mio
    shape = tuple(vol.spatial_shape)
    lab = np.asarray(label)
    if lab.ndim == 3 and lab.shape[-1] in (3, 4) and len(shape) == 2:
        lab = lab[..., 0]
    if lab.shape != shape:
        raise InputError(f"pseudo-label of case {case_id} has shape {lab.shape}, the image {shape}.",
                         path=mask_path, hint="pass the masks `medkt segment` wrote for these images")
    if saliency is not None and np.shape(saliency) != shape:
        raise InputError(f"saliency of case {case_id} has shape {np.shape(saliency)}, the image {shape}.",
                         path=mask_path, hint="keep saliency files beside the masks, or use labels.confidence=none")
    img01, params = mio.prepare_intensity(vol, modality=cfg.modality, window=cfg.window)
    lab = (lab > 0).astype(np.float32)
    if vol.is_2d:
        triples = [(0, img01, lab, saliency)]
    else:
        pairs, smap = mio.iter_slices(vol, cfg.plane, array=img01)
        labs = smap.extract(lab)
        sals = smap.extract(np.asarray(saliency, np.float32)) if saliency is not None else [None] * len(pairs)
        triples = [(k, im, lb, sl) for (k, im), lb, sl in zip(pairs, labs, sals)]
    out = []
    for k, im, lb, sl in triples:
        if cfg.labels.empty_slices == "drop" and not lb.any():
            continue
        w = confidence(lb, sl, cfg.labels)
        out.append({"image": _gray(np.asarray(im, np.float32))[None], "label": lb[None].astype(np.float32),
                    "weight": w[None], "case_id": case_id, "slice": int(k)})
    return out


def eval_transforms(size: int):
    """``Resized`` of image / label / weight to ``size × size`` (bilinear / nearest / bilinear)."""
    from monai.transforms import Compose, EnsureTyped, Resized
    return Compose([EnsureTyped(KEYS, track_meta=False),
                    Resized(KEYS, spatial_size=(size, size), mode=("bilinear", "nearest", "bilinear"))])


def train_transforms(size: int, prob: float):
    """:func:`eval_transforms` then ``RandAffined`` (rotation ±0.3 rad, scale ±15 %, shift ±10 %)
    with probability ``prob`` (0: no augmentation)."""
    from monai.transforms import Compose, RandAffined
    tf = list(eval_transforms(size).transforms)
    if prob > 0:
        tf.append(RandAffined(KEYS, prob=prob, rotate_range=0.3, scale_range=0.15,
                              translate_range=(0.1 * size, 0.1 * size), mode=("bilinear", "nearest", "bilinear"),
                              padding_mode="zeros"))
    from monai.transforms import EnsureTyped
    tf.append(EnsureTyped(KEYS, track_meta=False))  # plain tensors into the network
    return Compose(tf)
