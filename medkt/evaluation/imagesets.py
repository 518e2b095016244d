"""Folder-per-class image sets for zero-shot evaluation.

Layout: ``ROOT/<class>/<image>`` (png, jpg, jpeg, bmp, tif, tiff; hidden entries
skipped).  Class names are folder names with ``_`` read as a space.  Images are read as
RGB (grayscale repeated) and centre-cropped to a square of the model's input size at load
time (:data:`medkt.evaluation.classifier.RESIZE_MODE`, the same rule the classifier
applies), so a set is a ``[N, 3, S, S]`` float tensor in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import torch

from medkt.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def folder_class_name(folder: str) -> str:
    """``"red_car"`` → ``"red car"`` (the class name a folder stands for)."""
    return " ".join(folder.replace("_", " ").split())


def read_image(path, image_size: int | None = None) -> torch.Tensor:
    """One image file → ``[3, S, S]`` in [0, 1] (``S`` = ``image_size`` or the shorter side)."""
    from PIL import Image

    from medkt.models.base import image_to_unit_tensor, resize_to_square
    try:
        with Image.open(path) as im:
            x = image_to_unit_tensor(im.convert("RGB"))
    except OSError as e:
        raise InputError(f"cannot read image: {e}", path=str(path),
                         hint="remove the file or convert it to PNG") from None
    size = image_size or min(x.shape[-2:])
    if tuple(x.shape[-2:]) == (size, size):
        return x
    from medkt.evaluation.classifier import RESIZE_MODE
    return resize_to_square(x[None], size, RESIZE_MODE)[0]


def _images_in(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.iterdir())
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES]


def load_class_folders(root, image_size: int, *, what: str = "image folder",
                       allow_flat: bool = False) -> dict[str, torch.Tensor]:
    """``ROOT/<class>/*`` → ``{folder name: images [n, 3, S, S] in [0, 1]}`` (sorted by name).

    ``allow_flat``: images directly in ``ROOT`` form one group named after ``ROOT``.  A
    class folder without images is an error naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{what} not found.", path=str(root), hint="pass a folder with one subfolder per class")
    groups: dict[str, torch.Tensor] = {}
    flat = _images_in(root) if allow_flat else []
    if flat:
        groups[root.name] = torch.stack([read_image(f, image_size) for f in flat])
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    for d in folders:
        files = _images_in(d)
        if not files:
            raise InputError(f"{what}: class folder '{d.name}' holds no images.", path=str(d),
                             hint=f"supported: {', '.join(IMAGE_SUFFIXES)}; remove the empty folder")
        groups[d.name] = torch.stack([read_image(f, image_size) for f in files])
    if not groups:
        raise InputError(f"{what} holds no class subfolders.", path=str(root),
                         hint="layout: ROOT/<class>/<image>.png" + (" (or images directly in ROOT)" if allow_flat
                                                                    else ""))
    return groups


def load_image_folder(root, image_size: int | None = None) -> tuple[torch.Tensor, list[int], list[str]]:
    """``root/<class>/<image>`` → (images ``[N, 3, S, S]`` in [0, 1], labels, class names).

    ``image_size`` defaults to the first image's shorter side.
    """
    root = Path(root)
    if image_size is None and root.is_dir():
        first = next((f for d in sorted(root.iterdir()) if d.is_dir() for f in _images_in(d)), None)
        image_size = int(min(read_image(first).shape[-2:])) if first is not None else 1
    groups = load_class_folders(root, int(image_size or 1))
    images, labels = [], []
    for i, x in enumerate(groups.values()):
        images.append(x)
        labels += [i] * len(x)
    return torch.cat(images), labels, [folder_class_name(n) for n in groups]
