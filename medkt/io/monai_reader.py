"""MONAI interop: use medkt's checked readers inside MONAI pipelines (``LoadImage(reader=MedktReader())``).

MONAI's own readers load a DICOM folder or NIfTI file but do not refuse gantry tilt, irregular
spacing, mixed series or missing decoders the way medkt does.  This adapter gives MONAI the medkt
array and metadata in MONAI's conventions: the array is the medkt array (``(I, J, K)``, NIfTI voxel
order; 2-D: ``(H, W)`` / ``(H, W, 3)`` with channel last), ``affine``/``original_affine`` are the
RAS affine, ``space`` is ``"RAS"``, ``spatial_shape`` and ``original_channel_dim`` are set, and
``modality`` is added.  To write masks back, rebuild the reference with
``medkt.io.volume_from_array(array, meta["affine"])`` or read the path with :func:`medkt.io.read_image`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.data import ImageReader as _MonaiImageReader
from monai.utils import MetaKeys, SpaceKeys

from medkt.io._fs import DICOM_SUFFIXES, IMAGE2D_SUFFIXES, NIFTI_SUFFIXES, suffix_of


class MedktReader(_MonaiImageReader):
    """A ``monai.data.ImageReader`` backed by :func:`medkt.io.read_image` (one case per path).

    Args:
        nifti_volume: volume index for 4-D NIfTI input.
        modality: modality override passed to medkt.
        max_voxels: size limit per image, checked from headers (default 2**28 elements).
    """

    def __init__(self, nifti_volume: int | None = None, modality: str | None = None,
                 max_voxels: int | None = None):
        super().__init__()
        self.nifti_volume = nifti_volume
        self.modality = modality
        self.max_voxels = max_voxels

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        names = [filename] if isinstance(filename, (str, Path)) else list(filename)
        ok = NIFTI_SUFFIXES + IMAGE2D_SUFFIXES + DICOM_SUFFIXES
        return all(Path(n).is_dir() or suffix_of(Path(n)) in ok for n in names)

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any):
        from medkt.io.readers import read_image
        names = [data] if isinstance(data, (str, Path)) else list(data)
        vols = [read_image(n, nifti_volume=self.nifti_volume, modality=self.modality, max_voxels=self.max_voxels)
                for n in names]
        return vols if len(vols) > 1 else vols[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        vols = img if isinstance(img, (list, tuple)) else [img]
        arrays, meta = [], {}
        for vol in vols:
            arrays.append(vol.array)
            meta = {MetaKeys.AFFINE: vol.affine.copy(), MetaKeys.ORIGINAL_AFFINE: vol.affine.copy(),
                    MetaKeys.SPATIAL_SHAPE: np.asarray(vol.spatial_shape), MetaKeys.SPACE: SpaceKeys.RAS,
                    MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if vol.array.ndim > vol.ndim_spatial else float("nan"),
                    MetaKeys.PIXDIM: np.asarray([1.0, *vol.spacing]), "modality": vol.modality,
                    "medkt_kind": vol.kind, "filename_or_obj": str(vol.meta.get("source_paths", [""])[0])}
        if len(arrays) > 1:
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
            return np.stack(arrays, axis=0), meta
        return arrays[0], meta
