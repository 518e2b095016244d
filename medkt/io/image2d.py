"""2-D image reader: PNG, JPEG, TIFF (and BMP), grayscale or RGB, one case per file.

Arrays are ``(H, W)`` for grayscale (dtype kept: uint8, uint16, int32 or float32) and ``(H, W, 3)``
uint8/uint16 for colour, row 0 at the top.  Recoveries (each logged and kept in ``meta["warnings"]``):

* an alpha channel (RGBA, LA, palette with transparency) is dropped; transparent pixels keep their
  colour values;
* an RGB image whose three channels are identical is stored as grayscale ``(H, W)``;
* palette, CMYK and YCbCr images are converted to RGB.

Multi-page TIFF/GIF files are refused (they are stacks, not 2-D images).  Width x height x bands
is checked against ``max_voxels`` from the header before decoding; Pillow's decompression-bomb
error becomes an :class:`~medkt.errors.InputTooLargeError` on that one case.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from medkt.errors import InputError, InputTooLargeError
from medkt.io._fs import IMAGE2D_SUFFIXES, check_readable, stem_of, suffix_of
from medkt.io.checks import check_size, resolve_max_voxels
from medkt.io.readers import ImageReader
from medkt.io.types import Case, ImageVolume

log = logging.getLogger("medkt.io")


#: Bytes per sample of Pillow modes that are not 8-bit.
_MODE_ITEMSIZE = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}
_PIL_LOCK = threading.Lock()


def _pillow_open(path: Path, lift_bomb_limit: bool):
    """``Image.open`` with Pillow's decompression-bomb limit lifted only when medkt's own limit allows more."""
    from PIL import Image
    if not lift_bomb_limit:
        return Image.open(path)
    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _open(path: Path, max_voxels=None):
    """Open an image and check its header: size limit (before decoding), single frame.

    Raises:
        InputTooLargeError: more pixels than ``max_voxels`` (including Pillow's decompression-bomb guard).
        InputError: not a readable image, or a multi-page file.
    """
    from PIL import Image, UnidentifiedImageError
    check_readable(path)
    limit = resolve_max_voxels(max_voxels)
    try:
        try:
            img = _pillow_open(path, lift_bomb_limit=False)
        except Image.DecompressionBombError as e:
            pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            if limit <= pillow_limit:
                raise InputTooLargeError(f"the image header claims more than {pillow_limit:,} pixels (Pillow: {e}); "
                                         "refusing to decode it (decompression bomb guard).", path=path,
                                         hint="if the image really is this large, raise the limit with "
                                              "--max-voxels N (Python: max_voxels=N)") from None
            img = _pillow_open(path, lift_bomb_limit=True)
        w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(f"not a readable image file ({type(e).__name__}: {e}).", path=path,
                         hint="the file is corrupt or not an image; remove it or convert it to PNG") from None
    try:
        check_size((h, w, len(img.getbands())), _MODE_ITEMSIZE.get(img.mode, 1), path, limit, what="image")
        try:
            frames = getattr(img, "n_frames", 1)
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise InputError(f"cannot read the image's frame list ({type(e).__name__}: {e}).", path=path,
                             hint="the file is corrupt; copy it again or convert it to PNG") from None
        if frames > 1:
            raise InputError(f"the image holds {frames} frames/pages; medkt reads single 2-D images.", path=path,
                             hint="split the pages into separate PNG files, or convert the stack to NIfTI")
    except BaseException:
        img.close()
        raise
    return img


def _to_array(img, path: Path, warnings: list[str]) -> np.ndarray:
    mode = img.mode
    try:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA") if mode != "LA" else img
            alpha = np.asarray(rgba)[..., -1]
            transparent = int((alpha < 255).sum())
            msg = "alpha channel dropped" + (f" ({transparent} partly transparent pixels keep their colour)"
                                             if transparent else " (image was fully opaque)")
            warnings.append(msg)
            log.warning("%s: %s", path, msg)
            img = img.convert("L") if mode == "LA" else rgba.convert("RGB")
        elif mode in ("P", "CMYK", "YCbCr", "HSV", "LAB", "RGBX"):
            img = img.convert("RGB")
        elif mode == "1":
            img = img.convert("L")
        arr = np.asarray(img)
    except MemoryError:
        raise InputTooLargeError("not enough memory to decode this image.", path=path,
                                 hint="free memory or downsample the image first") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(f"cannot decode the image ({type(e).__name__}: {e}); it is probably truncated.",
                         path=path, hint="copy the file again from its source") from None
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 3 and arr.shape[-1] == 3 and np.array_equal(arr[..., 0], arr[..., 1]) \
            and np.array_equal(arr[..., 0], arr[..., 2]):
        warnings.append("RGB image with identical channels read as grayscale")
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise InputError(f"unsupported image layout {arr.shape} (mode {mode}).", path=path,
                         hint="save it as 8/16-bit grayscale or RGB PNG")
    return np.ascontiguousarray(arr)


def read_image2d(path: Path, *, modality: str | None = None, case_id: str | None = None,
                 max_voxels=None) -> ImageVolume:
    """Read one 2-D image file (see module docstring for the array conventions).

    Raises:
        InputTooLargeError: more pixels than ``max_voxels`` (checked from the header, before decoding).
        InputError: an unreadable, truncated, multi-page or NaN-only image.
    """
    warnings: list[str] = []
    with _open(path, max_voxels) as img:
        arr = _to_array(img, path, warnings)
        mode = img.mode
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).any():
        raise InputError("the image contains no finite values (all NaN or infinite).", path=path)
    return ImageVolume(array=arr, affine=np.eye(4), spacing=(1.0, 1.0), modality=modality or "unknown",
                       case_id=case_id or stem_of(path), kind="image2d",
                       meta={"source_paths": [str(path)], "mode": mode, "warnings": warnings})


class Image2DReader(ImageReader):
    """Reads PNG, JPEG, TIFF and BMP files (Pillow)."""

    kind = "image2d"

    def claims(self, path: Path) -> bool:
        return suffix_of(path) in IMAGE2D_SUFFIXES

    def scan(self, paths: list[Path], root: Path, **options: Any) -> list[Case]:
        cases = []
        for p in paths:
            case = Case(case_id=stem_of(p), kind=self.kind, paths=[p], root=root,
                        options={"modality": options.get("modality"), "max_voxels": options.get("max_voxels")})
            try:
                with _open(p, options.get("max_voxels")) as img:
                    w, h = img.size
                    bands = len(img.getbands())
                    case.info = {"modality": options.get("modality") or "unknown",
                                 "shape": [h, w] + ([3] if bands >= 3 else []), "spacing": [1.0, 1.0],
                                 "mode": img.mode}
                    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
                        case.warnings.append("alpha channel will be dropped")
            except InputError as e:
                case.error = e
            cases.append(case)
        return cases

    def read(self, case: Case) -> ImageVolume:
        vol = read_image2d(case.paths[0], modality=case.options.get("modality"), case_id=case.case_id,
                           max_voxels=case.options.get("max_voxels"))
        for w in vol.meta["warnings"]:
            if w not in case.warnings:
                case.warnings.append(w)
        return vol
