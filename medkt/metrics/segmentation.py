"""Per-case segmentation scores: DSC, IoU, NSD, HD95 with an explicit empty-mask policy.

Array conventions
-----------------
* ``pred`` and ``gt``: NumPy arrays or torch tensors of the **same shape**, 2-D ``(H, W)``
  or 3-D ``(D, H, W)`` (any axis order, shared by both and by ``spacing``).
* ``spacing``: one value per array axis, **in the order of** ``array.shape``, in mm.  It
  is needed when ``nsd_units="mm"`` (the default); with ``nsd_units="px"`` it is ignored.
* Binary mode (``classes=None``): foreground is ``value > threshold`` (default 0, so 0/1,
  0/255 and probability maps > 0 all work; MedCLIP-SAMv2 used 200, which reads 0/1 masks
  as empty).  Multi-class mode: ``classes`` is a list of integer labels or a mapping
  ``{name: label}``; class ``c`` is ``value == label`` (no threshold).

NSD and HD95 conventions
------------------------
``nsd_mode`` and ``hd95_mode`` name the convention (:mod:`medkt.metrics.conventions`); the
defaults, ``"deepmind"`` for both, are DeepMind ``surface-distance``'s area-weighted surface
elements, which the segmentation challenges and MedSAM use.  ``nsd_mode="surface"`` /
``hd95_mode="monai"`` are MONAI's boundary-voxel conventions, ``hd95_mode="medpy"`` is medpy's
``hd95``.  Every report states both modes (:meth:`SegMetricConfig.describe`).

Case types and the empty-mask policy
------------------------------------
Each (case, class) is one of ``both_nonempty``, ``both_empty``, ``gt_empty`` (prediction
on an empty ground truth) or ``pred_empty`` (missed object).  Outside ``both_nonempty``
the value of every metric is taken from the policy table, never computed, so nothing
crashes and nothing is silently NaN:

=========  ==========  ========  ==========
metric     both_empty  gt_empty  pred_empty
=========  ==========  ========  ==========
dsc/iou/nsd   1.0        0.0       0.0          ("default")
hd95          0.0        nan       nan          ("default"; nan = excluded, counted)
=========  ==========  ========  ==========

``"monai"`` reproduces MONAI's default (``ignore_empty=True``): any empty ground truth
gives nan (excluded from means).  A dict such as ``{"both_empty": float("nan")}`` or
``{"hd95": {"gt_empty": 100.0}}`` overrides entries of the default table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from medkt.errors import ConfigError, InputError, UnknownNameError
from medkt.metrics.conventions import (DEFAULT_HD95_MODE, DEFAULT_NSD_MODE, HD95_CONVENTIONS,  # noqa: F401
                                       HD95_MODES, NSD_CONVENTIONS, NSD_MODES, check_mode, distance_units)

SEG_METRICS = ("dsc", "iou", "nsd", "hd95")
OVERLAP_METRICS = ("dsc", "iou", "nsd")
CASE_TYPES = ("both_nonempty", "both_empty", "gt_empty", "pred_empty")
NSD_UNITS = ("mm", "px")
NAN = math.nan

_OVERLAP_DEFAULT = {"both_empty": 1.0, "gt_empty": 0.0, "pred_empty": 0.0}
EMPTY_POLICIES: dict[str, dict[str, dict[str, float]]] = {
    "default": {"dsc": dict(_OVERLAP_DEFAULT), "iou": dict(_OVERLAP_DEFAULT),
                "nsd": dict(_OVERLAP_DEFAULT),
                "hd95": {"both_empty": 0.0, "gt_empty": NAN, "pred_empty": NAN}},
    "monai": {m: {"both_empty": NAN, "gt_empty": NAN, "pred_empty": 0.0} for m in OVERLAP_METRICS}
    | {"hd95": {"both_empty": NAN, "gt_empty": NAN, "pred_empty": NAN}},
}


@dataclass
class SegMetricConfig:
    """How segmentation scores are computed; every field is written into the report."""

    nsd_tolerance: float = 2.0          # NSD tolerance, in ``nsd_units``
    nsd_units: str = "mm"               # "mm" (uses spacing) or "px"; HD95 uses the same units
    nsd_mode: str = DEFAULT_NSD_MODE    # "deepmind" (area-weighted), "surface" (boundary count),
                                        # "medclip-samv2" (slab, px); see NSD_CONVENTIONS
    empty_policy: Any = "default"       # preset name ("default", "monai") or override dict
    threshold: float = 0.0              # binary mode: foreground = value > threshold
    classes: Any = None                 # None (binary), [labels] or {name: label}
    metrics: list = field(default_factory=lambda: list(SEG_METRICS))
    hd_percentile: float = 95.0
    hd95_mode: str = DEFAULT_HD95_MODE  # "deepmind", "monai" or "medpy"; see HD95_CONVENTIONS

    def __post_init__(self):
        check_mode("NSD", self.nsd_mode)
        check_mode("HD95", self.hd95_mode)
        if self.nsd_units not in NSD_UNITS:
            raise UnknownNameError("NSD unit", str(self.nsd_units), NSD_UNITS)
        if not (self.nsd_tolerance >= 0 and math.isfinite(self.nsd_tolerance)):
            raise ConfigError(f"nsd_tolerance must be a finite number >= 0, got {self.nsd_tolerance!r}.")
        for m in self.metrics:
            if m not in SEG_METRICS:
                raise UnknownNameError("segmentation metric", str(m), SEG_METRICS)
        resolve_empty_policy(self.empty_policy)  # validate early
        class_table(self.classes)

    @property
    def distance_units(self) -> str:
        """Units of the tolerance and of HD95 (``medclip-samv2`` is always in pixels)."""
        return distance_units(self.nsd_mode, self.nsd_units)

    def describe(self) -> dict:
        """The resolved conventions, as stated in every report."""
        return {"nsd_mode": self.nsd_mode, "nsd_convention": NSD_CONVENTIONS[self.nsd_mode],
                "nsd_tolerance": self.nsd_tolerance,
                "nsd_units": self.distance_units, "hd_units": self.distance_units,
                "hd95_mode": self.hd95_mode, "hd95_convention": HD95_CONVENTIONS[self.hd95_mode],
                "hd_percentile": self.hd_percentile, "threshold": self.threshold,
                "binarisation": (f"foreground = value > {self.threshold}" if self.classes is None
                                 else "class c = (value == label of c)"),
                "classes": class_table(self.classes), "metrics": list(self.metrics),
                "empty_policy": {m: {ct: ("nan (excluded from means)" if math.isnan(v) else v)
                                     for ct, v in cases.items()}
                                 for m, cases in resolve_empty_policy(self.empty_policy).items()
                                 if m in self.metrics},
                "empty_policy_case_types": {
                    "both_empty": "ground truth and prediction both empty",
                    "gt_empty": "prediction on an empty ground truth",
                    "pred_empty": "empty prediction on a non-empty ground truth"},
                "empty_policy_name": self.empty_policy if isinstance(self.empty_policy, str) else "custom"}


def resolve_empty_policy(spec: str | Mapping | None) -> dict[str, dict[str, float]]:
    """Turn a preset name or override dict into the full ``{metric: {case_type: value}}`` table.

    Override dicts are applied on top of ``"default"`` (or of ``spec["base"]``): a key that
    is a case type (``both_empty``, ``gt_empty``, ``pred_empty``) applies to DSC, IoU and
    NSD; a metric key (``"hd95"``) takes a ``{case_type: value}`` dict.  Values are numbers
    or ``"nan"``.
    """
    if spec is None:
        spec = "default"
    if isinstance(spec, str):
        if spec not in EMPTY_POLICIES:
            raise UnknownNameError("empty-mask policy", spec, EMPTY_POLICIES)
        return {m: dict(v) for m, v in EMPTY_POLICIES[spec].items()}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"empty_policy must be a preset name or a mapping, got {spec!r}.",
                          hint=f"use one of {sorted(EMPTY_POLICIES)} or e.g. {{'both_empty': 'nan'}}")
    spec = dict(spec)
    table = resolve_empty_policy(spec.pop("base", "default"))
    for key, value in spec.items():
        if key in CASE_TYPES[1:]:
            for m in OVERLAP_METRICS:
                table[m][key] = _policy_value(value, key)
        elif key in SEG_METRICS and isinstance(value, Mapping):
            for ct, v in value.items():
                if ct not in CASE_TYPES[1:]:
                    raise UnknownNameError("empty-mask case type", str(ct), CASE_TYPES[1:])
                table[key][ct] = _policy_value(v, f"{key}.{ct}")
        else:
            raise UnknownNameError("empty_policy key", str(key), list(CASE_TYPES[1:]) + list(SEG_METRICS))
    return table


def _policy_value(value, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"empty_policy '{where}' must be a number or 'nan', got {value!r}.") from None


def class_table(classes) -> dict[str, int] | None:
    """Normalise ``classes`` to ``{name: label}`` (``None`` = binary mode)."""
    if classes is None:
        return None
    if isinstance(classes, Mapping):
        items = {str(k): v for k, v in classes.items()}
    elif isinstance(classes, (list, tuple)):
        items = {str(c): c for c in classes}
    else:
        raise ConfigError(f"classes must be a list of labels or a {{name: label}} mapping, got {classes!r}.")
    out = {}
    for name, label in items.items():
        try:
            out[name] = int(label)
        except (TypeError, ValueError):
            raise ConfigError(f"class '{name}' needs an integer label, got {label!r}.") from None
    if not out:
        raise ConfigError("classes is empty.", hint="omit it for binary masks")
    return out


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def binarize(mask, threshold: float = 0.0) -> np.ndarray:
    """Boolean foreground ``mask > threshold`` (boolean input is returned as is)."""
    arr = _to_numpy(mask)
    if arr.dtype == bool:
        return arr
    return arr > threshold


def case_type(pred: np.ndarray, gt: np.ndarray) -> str:
    p, g = bool(pred.any()), bool(gt.any())
    return {(True, True): "both_nonempty", (False, False): "both_empty",
            (True, False): "gt_empty", (False, True): "pred_empty"}[(p, g)]


def compute_dice(pred, gt) -> float:
    """Raw DSC ``2|P∩G| / (|P|+|G|)`` on boolean masks; nan when both are empty."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    denom = int(p.sum()) + int(g.sum())
    return NAN if denom == 0 else float(2.0 * np.count_nonzero(p & g) / denom)


def compute_iou(pred, gt) -> float:
    """Raw IoU ``|P∩G| / |P∪G|`` on boolean masks; nan when both are empty."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    union = np.count_nonzero(p | g)
    return NAN if union == 0 else float(np.count_nonzero(p & g) / union)


def binary_scores(pred: np.ndarray, gt: np.ndarray, spacing=None,
                  config: SegMetricConfig | None = None) -> dict:
    """Scores of one boolean mask pair under ``config`` (policy applied)."""
    from medkt.metrics import surface, surfels

    config = config or SegMetricConfig()
    policy = resolve_empty_policy(config.empty_policy)
    ct = case_type(pred, gt)
    row: dict = {}
    dists: dict = {}  # distances computed once per kind ("voxel" boundaries, "surfel" areas)

    def distances(kind: str):
        if kind not in dists:
            sp = _distance_spacing(spacing, config, pred)
            dists[kind] = (surface.surface_distances(pred, gt, sp) if kind == "voxel"
                           else surfels.surfel_distances(pred, gt, sp))
        return dists[kind]

    for m in config.metrics:
        if ct != "both_nonempty":
            row[m] = policy[m][ct]
        elif m == "dsc":
            row[m] = compute_dice(pred, gt)
        elif m == "iou":
            row[m] = compute_iou(pred, gt)
        elif m == "nsd" and config.nsd_mode == "medclip-samv2":
            row[m] = surface.compute_slab_nsd(pred, gt, config.nsd_tolerance)
        elif m == "nsd":
            row[m] = (surfels.surfel_nsd(distances("surfel"), config.nsd_tolerance)
                      if config.nsd_mode == "deepmind"
                      else surface.nsd_from_distances(*distances("voxel"), config.nsd_tolerance))
        elif config.hd95_mode == "deepmind":
            row[m] = surfels.surfel_hd(distances("surfel"), config.hd_percentile)
        else:
            row[m] = surface.hd_from_distances(*distances("voxel"), config.hd_percentile,
                                               mode=config.hd95_mode)
    row["case_type"] = ct
    row["gt_voxels"] = int(gt.sum())
    row["pred_voxels"] = int(pred.sum())
    return row


def _distance_spacing(spacing, config: SegMetricConfig, like: np.ndarray):
    if config.distance_units == "px":
        return None
    if spacing is None:
        raise InputError("NSD/HD95 are requested in mm but no voxel spacing is known for this case.",
                         hint="pass spacing=(...) per array axis, or use nsd_units='px' (CLI: --nsd-units px)")
    from medkt.metrics.surface import _spacing_tuple
    sp = _spacing_tuple(spacing, like.ndim)
    if any(not (s > 0 and math.isfinite(s)) for s in sp):
        raise InputError(f"voxel spacing {sp} is not positive and finite.", hint="fix the image header")
    return sp


def segmentation_scores(pred, gt, spacing: Sequence[float] | None = None,
                        config: SegMetricConfig | None = None, **overrides) -> dict:
    """Score one case.

    Args:
        pred, gt: same-shape arrays/tensors ``(H, W)`` or ``(D, H, W)``.
        spacing: mm per array axis, in ``array.shape`` order (needed for ``nsd_units="mm"``).
        config: a :class:`SegMetricConfig`; ``overrides`` replace its fields
            (``segmentation_scores(p, g, nsd_units="px")``).

    Returns:
        Binary: ``{"dsc", "iou", "nsd", "hd95", "case_type", "gt_voxels", "pred_voxels"}``.
        Multi-class: ``"<metric>/<class>"``, ``"case_type/<class>"``, ``"gt_voxels/<class>"``,
        ``"pred_voxels/<class>"`` per class, plus ``"<metric>"`` = mean over classes (nan
        entries skipped; nan if all are nan).
    """
    if config is None:
        config = SegMetricConfig(**overrides)
    elif overrides:
        import dataclasses
        config = dataclasses.replace(config, **overrides)
    p, g = _to_numpy(pred), _to_numpy(gt)
    if p.shape != g.shape:
        raise InputError(f"prediction shape {p.shape} differs from ground-truth shape {g.shape}.",
                         hint="resample the prediction onto the ground-truth grid first")
    if p.ndim not in (2, 3):
        raise InputError(f"masks must be 2-D (H, W) or 3-D (D, H, W); got shape {p.shape}.",
                         hint="squeeze channel/batch axes before scoring")
    table = class_table(config.classes)
    if table is None:
        return binary_scores(binarize(p, config.threshold), binarize(g, config.threshold), spacing, config)
    row: dict = {}
    per_metric: dict[str, list[float]] = {m: [] for m in config.metrics}
    for name, label in table.items():
        sub = binary_scores(p == label, g == label, spacing, config)
        for k, v in sub.items():
            row[f"{k}/{name}"] = v
        for m in config.metrics:
            per_metric[m].append(sub[m])
    macro = {}
    for m, vals in per_metric.items():
        finite = [v for v in vals if not math.isnan(v)]
        macro[m] = float(np.mean(finite)) if finite else NAN
    return {**macro, **row}
