"""Score a folder (or file) of predicted masks against ground truth: ``medkt evaluate``.

Cases are matched by **case id**, never by listing order.  A case present on one side
only is reported (``status`` = ``missing_prediction`` / ``missing_gt``), never dropped: a
missing prediction is scored as an empty prediction by default (``missing_prediction=
"empty"``, the worst case for a non-empty ground truth) or left unscored (``"skip"``); a
prediction without ground truth cannot be scored and is only listed.  A case that cannot
be read, or whose shapes differ, is listed as ``failed`` with the reason.

Masks are found and read through :mod:`medkt.io` (``discover_cases`` / ``read_case``), which
also makes the case ids (the pairing keys): NIfTI, DICOM, PNG/JPEG/TIFF/BMP.  ``medkt.io`` does
not read NumPy files, so ``.npy``/``.npz`` masks (no geometry) are read here, with the file name
without its extension as case id.  Singleton axes are squeezed (a ``(H, W, 1)`` NIfTI slice is
scored as 2-D, so its top and bottom faces are not counted as boundary), with their spacing
entries.  Spacing is taken from the ground truth.

Grids: when both masks are volumes with an affine (NIfTI, DICOM), prediction and ground truth
must share the voxel grid (shape, spacing, axis directions, origin; :mod:`medkt.metrics.grids`).
A mismatch fails the case with an error naming both files, unless ``resample_pred=True``
(``--resample-pred``), which resamples the prediction onto the ground-truth grid by nearest
neighbour.  Each row's ``geometry`` column and the summary's ``geometry`` entry say which
happened.

Outputs (``out`` folder): ``per_case.csv`` (one row per case id), ``summary.json``
(statistics, bootstrap CI, per class, case-type counts, the empty policy and every
convention), ``run.json``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from medkt.errors import ConfigError, GeometryError, InputError, MedktError
from medkt.metrics.aggregate import summarize_segmentation
from medkt.metrics.segmentation import SegMetricConfig, segmentation_scores

__all__ = ["evaluate", "EvaluationReport", "Mask", "discover_masks", "read_mask"]

_NUMPY_EXT = (".npy", ".npz")
MISSING_PREDICTION = ("empty", "skip")


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate`: per-case ``rows``, the ``summary`` dict, written files."""

    rows: list[dict]
    summary: dict
    config: SegMetricConfig
    files: dict = field(default_factory=dict)

    def __getitem__(self, key):  # convenience: report["metrics"]["dsc"]["mean"]
        return self.summary[key]


# ----------------------------------------------------------------------------- reading
class Mask(NamedTuple):
    """One mask as read: ``array``, ``spacing`` (mm per array axis, or None), ``affine`` (4x4 voxel
    -> world mm for volumes, None for 2-D images and NumPy files) and ``path`` (for messages)."""

    array: np.ndarray
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None = None
    path: str = "<in-memory>"


def _is_numpy(path: Path) -> bool:
    return path.name.lower().endswith(_NUMPY_EXT)


def _numpy_id(path: Path) -> str:
    name = path.name
    return name[: -len(".npy")] if name.lower().endswith(".npy") else name[: -len(".npz")]


def discover_masks(path: str | Path) -> dict[str, Any]:
    """``{case_id: source}`` for a mask file or a folder of masks (ids must be unique).

    Case ids come from :func:`medkt.io.discover_cases`; ``.npy``/``.npz`` files (which
    ``medkt.io`` does not read) are keyed by their name without the extension.
    """
    from medkt.io import discover_cases
    path = Path(path)
    if not path.exists():
        raise InputError("mask path does not exist.", path=str(path), hint="check the PRED/GT arguments")
    found: dict[str, Any] = {}
    candidates = [path] if path.is_file() else sorted(path.iterdir())
    for f in candidates:
        if f.is_file() and not f.name.startswith(".") and _is_numpy(f):
            _add(found, _numpy_id(f), f, path)
    if path.is_file() and found:
        return found
    try:
        cases = discover_cases(path)
    except InputError:
        if found:  # a folder of NumPy masks only
            return found
        raise
    for case in cases:
        _add(found, case.case_id, case, path)
    return found


def _add(found: dict, cid: str, source, folder: Path) -> None:
    if cid in found:
        raise InputError(f"two masks share the case id '{cid}': {_name(found[cid])} and {_name(source)}.",
                         path=str(folder), hint="keep one file per case id in each folder")
    found[cid] = source


def _name(source) -> str:
    paths = getattr(source, "paths", None)
    if paths:
        return str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    return str(source)


def read_mask(source) -> Mask:
    """Read one mask: a ``.npy``/``.npz`` path, or a :class:`medkt.io.Case` (any other file).

    2-D images (PNG/JPEG/...) carry no physical spacing, so theirs is None; RGB masks are
    reduced to one channel by the channel maximum.
    """
    if isinstance(source, (str, Path)):
        source = Path(source)
        if _is_numpy(source):
            return Mask(_read_numpy(source), None, None, str(source))
        from medkt.io import discover_cases
        found = discover_cases(source)
        if len(found) != 1:
            raise InputError(f"expected one mask, found {len(found)} cases.", path=str(source))
        source = found[0]
    from medkt.io import read_case
    vol = read_case(source)
    arr = np.asarray(vol.array)
    if vol.kind == "image2d":  # the I/O layer uses 1 mm when a 2-D image has no spacing
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = arr[..., :3].max(axis=-1)
        return Mask(arr, None, None, _name(source))
    return Mask(arr, tuple(float(s) for s in vol.spacing), np.asarray(vol.affine, float), _name(source))


def _read_numpy(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot read NumPy mask: {e}", path=str(path)) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if len(keys) != 1:
            raise InputError(f".npz must hold exactly one array, found {keys}.", path=str(path))
        return data[keys[0]]
    return data


def _squeeze(arr: np.ndarray, spacing):
    keep = [i for i, n in enumerate(arr.shape) if n != 1]
    if len(keep) == arr.ndim:
        return arr, spacing
    sp = tuple(spacing[i] for i in keep) if spacing is not None and len(spacing) == arr.ndim else spacing
    return arr.reshape([arr.shape[i] for i in keep]), sp


def _as_source_map(x) -> dict[str, Any]:
    if isinstance(x, Mapping):
        return {str(k): v for k, v in x.items()}
    return discover_masks(x)


def _load(source) -> Mask:
    if isinstance(source, Mask):
        return source
    if isinstance(source, tuple) and len(source) == 2:  # in-memory (array, spacing)
        return Mask(np.asarray(source[0]), tuple(source[1]) if source[1] is not None else None)
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        return Mask(np.asarray(source.detach().cpu() if hasattr(source, "detach") else source), None)
    return read_mask(source)


# ----------------------------------------------------------------------------- scoring
def _config_from(config: SegMetricConfig | None, options: dict) -> SegMetricConfig:
    names = {f.name for f in fields(SegMetricConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        from medkt.errors import UnknownNameError
        raise UnknownNameError("evaluate option", unknown[0], sorted(names) + [
            "spacing", "missing_prediction", "seed", "n_boot", "overwrite", "resample_pred", "grid_tolerance"])
    if config is None:
        return SegMetricConfig(**options)
    import dataclasses
    return dataclasses.replace(config, **options) if options else config


def evaluate(pred, gt, out: str | Path | None = None, *, config: SegMetricConfig | None = None,
             spacing=None, missing_prediction: str = "empty", seed: int = 0, n_boot: int = 2000,
             overwrite: bool = False, resample_pred: bool = False, grid_tolerance: float = 0.01,
             **options) -> EvaluationReport:
    """Score predicted masks against ground truth, matched by case id.

    Args:
        pred, gt: a mask file, a folder of masks, or a ``{case_id: array | (array, spacing)}``
            mapping.
        out: folder for ``per_case.csv``, ``summary.json`` and ``run.json`` (nothing written
            when None).  It must not lie inside an input folder.
        config / options: a :class:`SegMetricConfig` and/or its fields (``nsd_tolerance``,
            ``nsd_units``, ``nsd_mode``, ``hd95_mode``, ``empty_policy``, ``threshold``,
            ``classes``, ``metrics``).
        spacing: mm per array axis, used when the ground truth carries none (e.g. PNG).
        missing_prediction: ``"empty"`` (score as an empty prediction) or ``"skip"``.
        seed, n_boot: bootstrap settings of the summary.
        resample_pred: when a prediction volume's grid differs from its ground truth's, resample
            it onto the ground-truth grid (nearest neighbour) instead of failing the case.
        grid_tolerance: how far (in ground-truth voxels) the grids' corners may differ and still
            count as the same grid (absorbs float32 header rounding).
    """
    cfg = _config_from(config, options)
    if missing_prediction not in MISSING_PREDICTION:
        from medkt.errors import UnknownNameError
        raise UnknownNameError("missing-prediction handling", missing_prediction, MISSING_PREDICTION)
    pred_map, gt_map = _as_source_map(pred), _as_source_map(gt)
    if not gt_map:
        raise InputError("no ground-truth masks found.", path=None if isinstance(gt, Mapping) else str(gt),
                         hint="point GT at a mask file or a folder of masks")
    if not (isinstance(grid_tolerance, (int, float)) and 0 <= grid_tolerance < math.inf):
        raise ConfigError(f"grid_tolerance must be a finite number >= 0 (GT voxels), got {grid_tolerance!r}.")
    grids = {"resample_pred": bool(resample_pred), "tolerance_voxels": float(grid_tolerance)}
    rows: list[dict] = []
    for cid in sorted(set(pred_map) | set(gt_map)):
        rows.append(_score_case(cid, pred_map.get(cid), gt_map.get(cid), cfg, spacing, missing_prediction, grids))
    summary = summarize_segmentation(rows, cfg, seed=seed, n_boot=n_boot)
    summary["missing"] = {"prediction": sorted(r["case_id"] for r in rows if r["status"] == "missing_prediction"),
                          "ground_truth": sorted(r["case_id"] for r in rows if r["status"] == "missing_gt"),
                          "missing_prediction_scored_as": missing_prediction}
    summary["failed"] = {r["case_id"]: r["reason"] for r in rows if r["status"] == "failed"}
    summary["geometry"] = grids | {
        "resampled": [r["case_id"] for r in rows if r.get("geometry", "").startswith("resampled")],
        "refused": [r["case_id"] for r in rows if r.get("geometry", "").startswith("refused")],
        "rule": "volumes with an affine must share the ground truth's grid (shape, spacing, axis "
                "directions, origin); " + ("a differing prediction is resampled onto it (nearest neighbour)"
                                           if resample_pred else "a differing case fails (--resample-pred)")}
    summary["reader"] = "medkt.io (NumPy masks: numpy.load)"
    report = EvaluationReport(rows, summary, cfg)
    if out is not None:
        report.files = _write(report, out, pred, gt, overwrite, seed, n_boot, missing_prediction)
    return report


def _match_grid(p: Mask, g: Mask, grids: dict) -> tuple[np.ndarray, str]:
    """The prediction's array on the ground truth's grid, and what was done (the ``geometry`` column)."""
    from medkt.metrics.grids import grid_mismatch, resample_nearest
    if p.affine is None or g.affine is None:
        which = "either mask" if p.affine is None and g.affine is None else (
            "the prediction" if p.affine is None else "the ground truth")
        return p.array, f"not compared ({which} has no affine: 2-D image, NumPy or in-memory)"
    if p.array.ndim != 3 or g.array.ndim != 3:
        return p.array, "not compared (not 3-D volumes)"
    mismatch = grid_mismatch(p.array.shape, p.affine, g.array.shape, g.affine, grids["tolerance_voxels"])
    if mismatch is None:
        return p.array, "same grid"
    if grids["resample_pred"]:
        return (resample_nearest(p.array, p.affine, g.array.shape, g.affine),
                f"resampled onto the GT grid (nearest neighbour): {mismatch}")
    raise GeometryError(f"prediction and ground truth lie on different voxel grids ({mismatch}); "
                        f"prediction: {p.path}; ground truth: {g.path}.",
                        hint="resample the prediction onto the ground-truth grid with --resample-pred "
                             "(Python: resample_pred=True; nearest neighbour), or export the prediction "
                             "on the ground truth's grid")


def _score_case(cid, psrc, gsrc, cfg: SegMetricConfig, spacing, missing_prediction: str, grids: dict) -> dict:
    row: dict = {"case_id": cid, "status": "ok", "reason": ""}
    if gsrc is None:
        return row | {"status": "missing_gt", "reason": "prediction has no ground truth; not scored"}
    try:
        gm = _load(gsrc)
        g, g_sp = gm.array, gm.spacing if gm.spacing is not None else spacing
        if psrc is None:
            if missing_prediction == "skip":
                return row | {"status": "missing_prediction", "reason": "no prediction; not scored"}
            p = np.zeros(g.shape, dtype=bool)
            row |= {"status": "missing_prediction", "reason": "no prediction; scored as empty"}
        else:
            try:
                p, row["geometry"] = _match_grid(_load(psrc), gm, grids)
            except GeometryError:
                row["geometry"] = "refused: grids differ"
                raise
        p, _ = _squeeze(p, None)
        g, g_sp = _squeeze(g, g_sp)
        if p.shape != g.shape:
            raise InputError(f"prediction shape {p.shape} differs from ground-truth shape {g.shape}.",
                             hint="resample predictions onto the ground-truth grid (medkt never resizes silently)")
        if cfg.distance_units == "mm" and g_sp is None and any(m in cfg.metrics for m in ("nsd", "hd95")):
            raise ConfigError(f"case '{cid}': NSD/HD95 tolerance is in mm but the ground truth has no "
                              "voxel spacing (PNG/NumPy masks carry none).",
                              hint="pass --nsd-units px (tolerance in pixels), or spacing=... in Python")
        scores = segmentation_scores(p, g, spacing=g_sp, config=cfg)
        row |= {"spacing": "x".join(f"{s:g}" for s in g_sp) if g_sp else "", "shape": "x".join(map(str, g.shape))}
        return row | {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in scores.items()}
    except ConfigError:
        raise
    except MedktError as e:
        return row | {"status": "failed", "reason": e.format()}
    except Exception as e:  # noqa: BLE001 - one bad case never stops the evaluation
        return row | {"status": "failed", "reason": f"{type(e).__name__}: {e}"}


def _write(report: EvaluationReport, out, pred, gt, overwrite, seed, n_boot, missing_prediction) -> dict:
    from medkt.config import to_dict
    from medkt.runs import RunRecord, atomic_write_json, prepare_output_dir, write_csv
    inputs = [x for x in (pred, gt) if isinstance(x, (str, Path))]
    out_dir = prepare_output_dir(out, inputs, overwrite=overwrite)
    lead = ["case_id", "status", "reason", "shape", "spacing", "geometry"]
    metric_cols = [c for c in _columns(report.rows) if c not in lead]
    csv_path = write_csv(out_dir / "per_case.csv", report.rows, lead + metric_cols)
    json_path = atomic_write_json(out_dir / "summary.json", _jsonable(report.summary))
    rec = RunRecord("evaluate", config=to_dict(report.config), seed=seed,
                    cases=[{"case_id": r["case_id"], "status": r["status"]} for r in report.rows],
                    failures=[{"case_id": k, "reason": v} for k, v in report.summary["failed"].items()],
                    extra={"inputs": {"pred": str(pred) if inputs else "<in-memory>",
                                      "gt": str(gt) if inputs else "<in-memory>"},
                           "n_boot": n_boot, "missing_prediction": missing_prediction,
                           "conventions": {k: report.summary["conventions"][k] for k in
                                           ("nsd_mode", "nsd_convention", "hd95_mode", "hd95_convention")},
                           "geometry": report.summary["geometry"]})
    run_path = rec.write(out_dir)
    return {"per_case": csv_path, "summary": json_path, "run": run_path}


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def _jsonable(obj):
    """nan/inf → None so that summary.json is strict JSON (None = undefined, see n_nan)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
