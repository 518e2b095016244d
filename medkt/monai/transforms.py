"""medkt's segmentation stages as MONAI dictionary transforms.

Each transform reads one key of a MONAI data dict and writes another, so the zero-shot
pipeline drops into a ``monai.transforms.Compose`` after MONAI's loading transforms::

    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd
    from medkt.io.monai_reader import MedktReader
    from medkt.monai import segment_transforms
    pipe = Compose([LoadImaged("image", reader=MedktReader()), EnsureChannelFirstd("image"),
                    Orientationd("image", axcodes="RAS"),          # 3-D only
                    *segment_transforms("tiny", prompt="a tumour")])
    d = pipe({"image": "case.nii.gz"})      # d["saliency"], d["coarse"], d["mask"]: MetaTensors

Data conventions:

* Images are channel-first ``MetaTensor`` (or array) data: ``[C, H, W]`` for 2-D images
  (``C`` = 1 grey or 3 RGB; ``H`` rows, ``W`` columns, as :class:`~medkt.io.MedktReader` gives
  them) or ``[1, I, J, K]`` for volumes with a voxel → RAS+ mm ``affine``.
* A volume is cut into display slices with :func:`medkt.io.iter_slices` along ``plane``
  (default axial) using the MetaTensor's affine, exactly as :func:`medkt.segment` does, so
  ``Orientationd`` before these transforms changes the storage grid, not the slices seen.
* Outputs are on the input's grid with its affine and meta data (a copy): ``saliency``
  ``[1, ...]`` float32 in [0, 1], ``coarse`` and ``mask`` ``[1, ...]`` uint8 0/1.  Prompts are
  a :class:`SlicePrompts` (XYXY boxes / ``(x, y)`` points in pixels of each display slice).

The stages are the ones :class:`medkt.segmentation.Segmenter` runs (same engines, same
seeds), so a ``Compose`` of them gives :func:`medkt.segment`'s masks
(``tests/test_monai_transforms.py``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ScaleIntensityRange

from medkt.errors import ConfigError, InputError


# ----------------------------------------------------------------------------- grid helpers
def _affine(x) -> np.ndarray:
    aff = np.asarray(x.affine if isinstance(x, MetaTensor) else np.eye(4), dtype=np.float64)
    if aff.shape == (3, 3):  # a 2-D affine: embed in 4x4
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = aff[:2, :2], aff[:2, 2]
        aff = full
    return aff


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_volume(x, modality: str | None = None, key: Hashable = "image"):
    """Channel-first image ``[C, H, W]`` / ``[1, I, J, K]`` → :class:`medkt.io.ImageVolume`
    (``(H, W)``, ``(H, W, C)`` or ``(I, J, K)``) with the MetaTensor's affine."""
    from medkt.io import volume_from_array
    a = _numpy(x)
    if a.ndim == 3:
        arr = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    elif a.ndim == 4:
        if a.shape[0] != 1:
            raise InputError(f"'{key}' has {a.shape[0]} channels; medkt segments one-channel volumes.",
                             hint="select one channel (e.g. monai SplitDimd) before the medkt transforms")
        arr = a[0]
    else:
        raise InputError(f"'{key}' has shape {tuple(a.shape)}; expected channel-first [C, H, W] or [1, I, J, K].",
                         hint="add EnsureChannelFirstd after LoadImaged")
    meta = x.meta if isinstance(x, MetaTensor) else {}
    mod = modality or meta.get("modality") or "unknown"
    return volume_from_array(arr, _affine(x), modality=str(mod), rgb=a.ndim == 3 and a.shape[0] > 1)


def slices_of(vol, data: np.ndarray | None, plane: str) -> tuple[list[tuple[int, np.ndarray]], Any]:
    """``([(k, 2-D slice)], slice_map)``; 2-D images are one slice and ``slice_map`` is ``None``."""
    from medkt.io import iter_slices
    arr = vol.array if data is None else data
    if vol.is_2d:
        return [(0, arr)], None
    return iter_slices(vol, plane, array=arr)


def from_slices(x, per_slice: dict[int, np.ndarray], smap, dtype) -> MetaTensor:
    """Per-slice 2-D results → channel-first MetaTensor on ``x``'s grid with a copy of its meta data."""
    from medkt.io import reassemble
    arr = per_slice[0] if smap is None else reassemble(per_slice, smap)
    out = torch.as_tensor(np.ascontiguousarray(arr[None]).astype(dtype))
    return _like(x, out)


def _like(x, data: torch.Tensor) -> MetaTensor:
    """``data`` as a MetaTensor with a copy of ``x``'s meta data (affine included)."""
    if isinstance(x, MetaTensor):
        return MetaTensor(data, meta=copy.deepcopy(dict(x.meta)))
    return MetaTensor(data)


class _Stage(MapTransform):
    """A stage reading ``keys`` (one key) and writing ``output_key``."""

    def __init__(self, keys: KeysCollection, output_key: str, plane: str = "axial", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ConfigError(f"{type(self).__name__} takes one key, got {list(self.keys)}.")
        self.output_key, self.plane = output_key, plane

    def key_iterator(self, data: Mapping, *extra):
        for key in self.keys:
            if key not in data and not self.allow_missing_keys:
                self._get(data, key)
        yield from super().key_iterator(data, *extra)

    def _get(self, d: Mapping, key: Hashable):
        if key not in d:
            raise InputError(f"{type(self).__name__}: key '{key}' is missing from the data dict "
                             f"(has {', '.join(map(str, d))}).", hint="run the earlier medkt stage first")
        return d[key]


def _model(model, what: str):
    if isinstance(model, str):
        from medkt.models import create_model
        return create_model(model)
    if model is None:
        raise ConfigError(f"{what} needs a model (a registered name or a model object).")
    return model


# ----------------------------------------------------------------------------- intensities
class MedktPrepared(_Stage):
    """medkt's intensity preparation (:func:`medkt.io.prepare_intensity`) as a transform.

    The range comes from medkt's rules (:func:`medkt.io.intensity.intensity_range`: CT window,
    MR 0.5-99.5 percentiles of non-zero voxels, else min-max) and is applied with MONAI's
    ``ScaleIntensityRange(low, high, 0, 1, clip=True)`` in float64, then cast to float32: the
    same numbers as ``prepare_intensity``.  The record goes to ``meta["medkt_intensity"]``.
    Writes in place unless ``output_key`` is given.
    """

    def __init__(self, keys: KeysCollection = "image", modality: str | None = None, window=None,
                 output_key: str | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, output_key or "", allow_missing_keys=allow_missing_keys)
        self.modality, self.window = modality, window

    def __call__(self, data: Mapping) -> dict:
        from medkt.io.intensity import intensity_range, intensity_warnings
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            vol = to_volume(x, self.modality, key)
            a, lo, hi, params = intensity_range(vol, self.modality, self.window)
            if hi > lo:
                out = np.asarray(ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True, dtype=np.float64)(a))
            else:
                out = np.zeros(a.shape, np.float64)
            out = intensity_warnings(vol, a, out.astype(np.float32), lo, hi, params)
            cf = out[None] if out.ndim == len(vol.spatial_shape) else np.moveaxis(out, -1, 0)
            res = _like(x, torch.as_tensor(np.ascontiguousarray(cf)))
            res.meta["medkt_intensity"] = params
            d[self.output_key or key] = res
        return d


# ----------------------------------------------------------------------------- stages
class M2IBSaliencyd(_Stage):
    """M2IB saliency of the prepared image (``keys``, [0, 1]) for ``prompt`` → ``saliency_key``.

    ``model``: a CLIP-family model object or registered name, or a ready
    :class:`~medkt.segmentation.SaliencyEngine`; ``config``: :class:`~medkt.segmentation.M2IBConfig`.
    Slices are processed ``config.batch_size`` at a time, each with the noise seed ``config.seed``
    (so the map of a slice does not depend on its batch).
    """

    def __init__(self, keys: KeysCollection = "image", model=None, prompt: str | None = None, config=None,
                 saliency_key: str = "saliency", plane: str = "axial", allow_missing_keys: bool = False):
        super().__init__(keys, saliency_key, plane, allow_missing_keys)
        from medkt.segmentation.saliency import SaliencyEngine
        if not prompt or not str(prompt).strip():
            raise ConfigError("M2IBSaliencyd needs a text prompt (prompt='...').")
        self.prompt = prompt
        self._model, self._config, self._engine = model, config, model if isinstance(model, SaliencyEngine) else None

    @property
    def engine(self):
        if self._engine is None:
            from medkt.segmentation.saliency import SaliencyEngine
            self._engine = SaliencyEngine(_model(self._model, "M2IBSaliencyd"), self._config)
        return self._engine

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            x = self._get(d, key)
            vol = to_volume(x, key=key)
            pairs, smap = slices_of(vol, None, self.plane)
            res = self.engine([s for _, s in pairs], self.prompt)
            d[self.output_key] = from_slices(x, {k: r.map for (k, _), r in zip(pairs, res)}, smap, np.float32)
        return d


class CoarseMaskd(_Stage):
    """Saliency (``keys``) → coarse mask (``coarse_key``) with :func:`medkt.segmentation.postprocess.postprocess`
    (k-means / Otsu / percentile / threshold, top-K components...).  ``image_key`` feeds the
    optional dense CRF."""

    def __init__(self, keys: KeysCollection = "saliency", config=None, coarse_key: str = "coarse",
                 image_key: str | None = "image", plane: str = "axial", allow_missing_keys: bool = False):
        super().__init__(keys, coarse_key, plane, allow_missing_keys)
        from medkt.segmentation.postprocess import PostprocessConfig
        self.config = (config or PostprocessConfig()).validate()
        self.image_key = image_key

    def __call__(self, data: Mapping) -> dict:
        from medkt.segmentation.postprocess import postprocess
        d = dict(data)
        for key in self.key_iterator(d):
            x = self._get(d, key)
            vol = to_volume(x, key=key)
            pairs, smap = slices_of(vol, None, self.plane)
            images = [None] * len(pairs)
            if self.image_key is not None and self.image_key in d:
                ivol = to_volume(d[self.image_key], key=self.image_key)
                images = [s for _, s in slices_of(ivol, None, self.plane)[0]]
            out = {k: postprocess(s, self.config, image=im) for (k, s), im in zip(pairs, images)}
            d[self.output_key] = from_slices(x, out, smap, np.uint8)
        return d


@dataclass
class SlicePrompts:
    """SAM prompts of every display slice: ``prompts[i]`` belongs to slice ``indices[i]``."""

    indices: list[int]
    prompts: list = field(default_factory=list)
    plane: str = "axial"


class SamPromptsd(_Stage):
    """Coarse mask (``keys``) → :class:`SlicePrompts` (``prompts_key``) with
    :func:`medkt.segmentation.prompts.make_prompts` (boxes / points, empty-mask policy)."""

    def __init__(self, keys: KeysCollection = "coarse", config=None, prompts_key: str = "prompts",
                 plane: str = "axial", allow_missing_keys: bool = False):
        super().__init__(keys, prompts_key, plane, allow_missing_keys)
        from medkt.segmentation.prompts import PromptConfig
        self.config = (config or PromptConfig()).validate()

    def __call__(self, data: Mapping) -> dict:
        from medkt.segmentation.prompts import make_prompts
        d = dict(data)
        for key in self.key_iterator(d):
            vol = to_volume(self._get(d, key), key=key)
            pairs, _ = slices_of(vol, None, self.plane)
            d[self.output_key] = SlicePrompts([k for k, _ in pairs],
                                              [make_prompts(c.astype(bool), self.config, name=f"slice {k}")
                                               for k, c in pairs], self.plane)
        return d


class SamSegmentd(_Stage):
    """Prepared image (``keys``) + :class:`SlicePrompts` (``prompts_key``) → SAM mask (``mask_key``).

    ``sam``: a SAM-kind model object or registered name, or a ready
    :class:`~medkt.segmentation.SamSegmenter`; ``config``: :class:`~medkt.segmentation.SamConfig`.
    One embedding per slice; slices whose prompts say skip / empty are not encoded.
    """

    def __init__(self, keys: KeysCollection = "image", sam=None, config=None, prompts_key: str = "prompts",
                 mask_key: str = "mask", plane: str = "axial", allow_missing_keys: bool = False):
        super().__init__(keys, mask_key, plane, allow_missing_keys)
        from medkt.segmentation.sam_segmenter import SamSegmenter
        self.prompts_key = prompts_key
        self._sam, self._config = sam, config
        self._segmenter = sam if isinstance(sam, SamSegmenter) else None

    @property
    def segmenter(self):
        if self._segmenter is None:
            from medkt.segmentation.sam_segmenter import SamSegmenter
            self._segmenter = SamSegmenter(_model(self._sam, "SamSegmentd"), self._config)
        return self._segmenter

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            x = self._get(d, key)
            sp = self._get(d, self.prompts_key)
            vol = to_volume(x, key=key)
            pairs, smap = slices_of(vol, None, self.plane)
            if [k for k, _ in pairs] != list(sp.indices):
                raise InputError(f"SamSegmentd: '{self.prompts_key}' holds prompts for {len(sp.indices)} slices, "
                                 f"'{key}' has {len(pairs)}.", hint="use the same plane and image for every stage")
            outs = self.segmenter.segment([s for _, s in pairs], sp.prompts)
            masks = {k: (o.mask if o.mask is not None else np.zeros(s.shape[:2], bool))
                     for (k, s), o in zip(pairs, outs)}
            d[self.output_key] = from_slices(x, masks, smap, np.uint8)
        return d


# ----------------------------------------------------------------------------- builder
def segment_transforms(config=None, prompt: str | None = None, *, overrides: Sequence[str] | None = None,
                       model=None, sam_model=None, image_key: str = "image", modality: str | None = None,
                       window: str | None = None, prepare: bool = True, segmenter=None) -> list[MapTransform]:
    """The five transforms of :func:`medkt.segment` for a ``SegmentConfig`` (preset name, YAML path,
    dict or object): ``[MedktPrepared, M2IBSaliencyd, CoarseMaskd, SamPromptsd, SamSegmentd]``
    (without ``MedktPrepared`` when ``prepare=False``).  Both models are built once here (or
    taken from ``segmenter``, a :class:`~medkt.segmentation.Segmenter`), and shared."""
    from medkt.segmentation.api import _resolve_config
    from medkt.segmentation.pipeline import Segmenter
    cfg = _resolve_config(config, overrides, model=None if model is None or not isinstance(model, str) else model,
                          prompt=prompt, modality=modality, window=window, seed=None, sam=None, mask_format=None,
                          diagnostics=None, max_voxels=None)
    if not cfg.prompt:
        raise ConfigError("segment_transforms needs a text prompt (prompt='...' or the config's prompt).")
    seg = segmenter or Segmenter(cfg, model=None if isinstance(model, str) else model, sam_model=sam_model)
    plane = cfg.plane
    out: list[MapTransform] = []
    if prepare:
        out.append(MedktPrepared(image_key, modality=cfg.modality, window=cfg.window))
    out += [M2IBSaliencyd(image_key, seg.saliency, cfg.prompt, plane=plane),
            CoarseMaskd("saliency", cfg.postprocess, image_key=image_key, plane=plane),
            SamPromptsd("coarse", cfg.prompts, plane=plane),
            SamSegmentd(image_key, seg.sam, plane=plane)]
    return out
