"""Intensity preparation per modality for 2-D foundation models (CLIP, SAM): any image -> float32 in [0, 1].

=========  ===========================================================  ==========================
modality   method                                                       parameters returned
=========  ===========================================================  ==========================
CT         window (preset or custom level/width), clip to [0, 1]        window, level, width
MR         clip to the 0.5-99.5 percentiles of non-zero voxels, scale   percentiles, low, high
US, CXR,   min-max                                                      low, high
CR, DX...
=========  ===========================================================  ==========================

An explicit ``window`` is honoured for any modality (e.g. a NIfTI in HU whose modality is unknown).
The ``params`` dict is meant to go into run.json unchanged; a constant image (e.g. a DICOM
RescaleSlope of 0) sets ``params["constant_image"]`` and adds a line to ``params["warnings"]``.
NaN/inf voxels are replaced by the lowest finite value (logged, counted in ``params["nonfinite_replaced"]``); MONOCHROME1 radiographs
are inverted so that bone is bright (``params["inverted"]``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from medkt.errors import ConfigError, InputError, UnknownNameError

log = logging.getLogger("medkt.io")

#: CT windows as ``(level, width)`` in HU (Radiopaedia "Windowing (CT)"; MedSAM uses 40/400 for soft tissue).
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (50.0, 400.0),
    "soft_tissue": (50.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}
DEFAULT_CT_WINDOW = "abdomen"
DEFAULT_MR_PERCENTILES = (0.5, 99.5)

_ALIASES = {"MRI": "MR", "CXR": "CXR", "XRAY": "XR", "X-RAY": "XR", "ULTRASOUND": "US", "": "UNKNOWN"}


def normalize_modality(modality: str | None) -> str:
    """Upper-case modality with common aliases folded (``"mri"`` -> ``"MR"``); ``None`` -> ``"UNKNOWN"``."""
    m = (modality or "unknown").strip().upper()
    return _ALIASES.get(m, m)


def resolve_window(window) -> tuple[str, float, float]:
    """Turn a window spec into ``(name, level, width)``.

    Accepts a preset name (``"lung"``, ``"mediastinum"``, ``"abdomen"``, ``"brain"``, ``"bone"``,
    ``"soft_tissue"``), ``"LEVEL,WIDTH"`` (e.g. ``"40,400"``), a ``(level, width)`` pair or a dict
    ``{"level": L, "width": W}``.

    Raises:
        UnknownNameError: an unknown preset name (with close matches).
        ConfigError: a malformed spec or a width that is not positive.
    """
    name = "custom"
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key in CT_WINDOWS:
            return key, *CT_WINDOWS[key]
        if "," in key or ":" in key:
            parts = key.replace(":", ",").split(",")
            try:
                level, width = (float(x) for x in parts)
            except ValueError:
                raise ConfigError(f"cannot parse CT window '{window}'.", hint="use LEVEL,WIDTH, e.g. 40,400") from None
        else:
            raise UnknownNameError("CT window", window, CT_WINDOWS, hint="choose a preset or pass LEVEL,WIDTH "
                                   f"(presets: {', '.join(CT_WINDOWS)})")
    elif isinstance(window, dict):
        try:
            level, width = float(window["level"]), float(window["width"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"CT window {window!r} needs numeric 'level' and 'width'.") from None
        name = str(window.get("name", "custom"))
    else:
        try:
            level, width = (float(x) for x in window)
        except (TypeError, ValueError):
            raise ConfigError(f"cannot use {window!r} as a CT window.", hint="use a preset name or (level, width)") from None
    if not width > 0:
        raise ConfigError(f"CT window width must be positive, got {width}.")
    return name, level, width


def _finite(a: np.ndarray, params: dict) -> np.ndarray:
    if a.size == 0:
        raise InputError(f"the image has no pixels (shape {a.shape}).", hint="check the file or the array given")
    if np.iscomplexobj(a):
        raise InputError(f"complex-valued image ({a.dtype}); medkt would silently drop the imaginary part.",
                         hint="pass the magnitude (np.abs) or the real part explicitly")
    if a.dtype.kind not in "biuf":
        raise InputError(f"image data type {a.dtype} is not a real number type.",
                         hint="convert the image to a grayscale or RGB numeric array")
    if not np.issubdtype(a.dtype, np.floating):
        return a  # integers are finite; _scale converts chunk by chunk (no float64 copy of the volume)
    if _all_finite(a):
        return a
    ok = np.isfinite(a)
    if not ok.any():
        raise InputError("the image contains no finite values (all NaN or infinite).",
                         hint="check the conversion that produced this image")
    n = int(a.size - ok.sum())
    lo = float(a[ok].min())
    log.warning("%d NaN/inf voxels replaced by the lowest finite value %g", n, lo)
    params["nonfinite_replaced"] = n
    return np.where(ok, a, lo).astype(np.float64)


#: elements per chunk in the voxel-wise passes: float64 temporaries stay ~32 MB, not volume-sized
_CHUNK = 1 << 22


def _chunks(a: np.ndarray):
    """Index tuples cutting ``a`` into pieces of about ``_CHUNK`` elements along axis 0."""
    if a.ndim == 0 or a.size <= _CHUNK:
        yield (slice(None),)
        return
    step = max(1, _CHUNK // max(1, a.size // a.shape[0]))
    for s in range(0, a.shape[0], step):
        yield (slice(s, s + step),)


def _all_finite(a: np.ndarray) -> bool:
    return all(bool(np.isfinite(a[c]).all()) for c in _chunks(a))


def _scale(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``clip((a - lo) / (hi - lo), 0, 1)`` in float64, stored as float32; computed chunk by chunk
    (same numbers as one pass, without volume-sized float64 temporaries)."""
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)
    out = np.empty(a.shape, dtype=np.float32)
    for c in _chunks(a):
        x = a[c].astype(np.float64)  # one float64 temporary per chunk, updated in place
        x -= lo
        x /= hi - lo
        out[c] = np.clip(x, 0.0, 1.0, out=x)
    return out


def intensity_range(image, modality: str | None = None, window=None, *,
                    percentiles: tuple[float, float] = DEFAULT_MR_PERCENTILES
                    ) -> tuple[np.ndarray, float, float, dict[str, Any]]:
    """The rule half of :func:`prepare_intensity`: ``(finite array, low, high, params)``.

    The array is the input's own when it is already finite (integers are kept as they are; no
    volume-sized float64 copy), else a float64 copy with non-finite voxels replaced.

    ``low``/``high`` are the intensities mapped to 0 and 1 (CT window edges, MR percentiles of
    non-zero voxels, or min/max); ``params`` is :func:`prepare_intensity`'s record without the
    constant-image warning and the MONOCHROME1 inversion.  :class:`medkt.monai.MedktPrepared`
    applies the range with MONAI's ``ScaleIntensityRange``.
    """
    arr = np.asarray(getattr(image, "array", image))
    mod = normalize_modality(modality or getattr(image, "modality", None))
    params: dict[str, Any] = {"modality": mod}
    a = _finite(arr, params)
    if window is not None or mod == "CT":
        name, level, width = resolve_window(window if window is not None else DEFAULT_CT_WINDOW)
        if mod not in ("CT", "UNKNOWN"):
            log.warning("applying CT window '%s' to a %s image as requested", name, mod)
        lo, hi = level - width / 2.0, level + width / 2.0
        params.update(method="ct_window", window=name, level=level, width=width)
    elif mod == "MR":
        nz = a[a != 0]
        sample = (nz if nz.size else a.ravel()).astype(np.float64)
        lo, hi = (float(v) for v in np.percentile(sample, percentiles))
        params.update(method="percentile", percentiles=list(percentiles), nonzero_only=bool(nz.size),
                      low=lo, high=hi)
    else:
        lo, hi = float(a.min()), float(a.max())
        params.update(method="minmax", low=lo, high=hi)
    return a, lo, hi, params


def intensity_warnings(image, a: np.ndarray, out: np.ndarray, lo: float, hi: float, params: dict) -> np.ndarray:
    """Constant-image warning and MONOCHROME1 inversion (the last step of :func:`prepare_intensity`)."""
    _constant_warning(image, a, float(out.flat[0]), lo, hi, params)
    if _inverted(image, params):
        out = (1.0 - out).astype(np.float32)
    return out


def _constant_warning(image, a: np.ndarray, first: float, lo: float, hi: float, params: dict) -> None:
    amin, amax = float(a.min()), float(a.max())
    msg = None
    if amax <= amin:
        msg = (f"the image is constant (every voxel is {amin:g}); the prepared intensities are all "
               f"{first:g} and nothing can be segmented")
    elif hi <= lo:
        msg = f"the {params['method']} range is empty (low = high = {lo:g}); the prepared intensities are all 0"
    if msg:
        params["constant_image"] = True
        params.setdefault("warnings", []).append(msg)
        log.warning("%s%s", f"{image.case_id}: " if hasattr(image, "case_id") else "", msg)


def _inverted(image, params: dict) -> bool:
    meta = getattr(image, "meta", {}) or {}
    if str(meta.get("photometric", "")).upper() == "MONOCHROME1":
        params["inverted"] = True
        return True
    return False


@dataclass
class IntensityMapping:
    """:func:`prepare_intensity`'s mapping, applied to any part of the image on demand.

    ``source`` is the finite input (the image's own array when it is finite: no copy);
    :meth:`apply` maps values by ``clip((x - low) / (high - low), 0, 1)`` (float64, stored
    float32), then ``1 - y`` when ``invert`` (MONOCHROME1).  ``apply(source[idx])`` equals
    ``prepare_intensity(image)[0][idx]`` bit for bit, so a volume can be prepared slice by
    slice without a float32 copy of the whole volume.  ``params`` as :func:`prepare_intensity`'s.
    """

    source: np.ndarray
    low: float
    high: float
    invert: bool
    params: dict[str, Any]

    def apply(self, block) -> np.ndarray:
        """Prepared float32 intensities in [0, 1] of ``block`` (values of :attr:`source`, any shape)."""
        out = _scale(np.asarray(block), self.low, self.high)
        return (1.0 - out).astype(np.float32) if self.invert else out


def intensity_mapping(image, modality: str | None = None, window=None, *,
                      percentiles: tuple[float, float] = DEFAULT_MR_PERCENTILES) -> IntensityMapping:
    """The :class:`IntensityMapping` of ``image`` (arguments as :func:`prepare_intensity`)."""
    a, lo, hi, params = intensity_range(image, modality, window, percentiles=percentiles)
    _constant_warning(image, a, float(_scale(a.reshape(-1)[:1], lo, hi)[0]), lo, hi, params)
    return IntensityMapping(a, lo, hi, _inverted(image, params), params)


def prepare_intensity(image, modality: str | None = None, window=None, *,
                      percentiles: tuple[float, float] = DEFAULT_MR_PERCENTILES) -> tuple[np.ndarray, dict[str, Any]]:
    """Map intensities to float32 ``[0, 1]`` by modality; return ``(array, params)``.

    Args:
        image: an :class:`~medkt.io.types.ImageVolume` or an array (any shape; axis order is kept).
        modality: overrides ``image.modality``; ``"CT"`` -> window, ``"MR"`` -> percentile clip,
            anything else (US, CXR, CR, DX, unknown...) -> min-max.
        window: CT window preset or custom level/width (see :func:`resolve_window`); default
            ``"abdomen"`` for CT.  When given, it is applied whatever the modality.
        percentiles: low/high percentiles for MR, computed over non-zero voxels.

    Returns:
        ``(float32 array of the same shape in [0, 1], params)``; ``params`` records the method and its
        numbers (``method``, ``modality``, ``window``/``level``/``width`` or ``low``/``high``...).
        :func:`intensity_mapping` gives the same numbers a slice at a time.

    Raises:
        InputError: the image has no finite value.
        ConfigError / UnknownNameError: a bad window.
    """
    m = intensity_mapping(image, modality, window, percentiles=percentiles)
    return m.apply(m.source), m.params
