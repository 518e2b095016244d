"""Score a folder (or file) of predicted masks against ground truth: ``medkt evaluate``.

Cases are matched by **case id**, never by listing order.  A case present on one side
only is reported (``status`` = ``missing_prediction`` / ``missing_gt``), never dropped: a
missing prediction is scored as an empty prediction by default (``missing_prediction=
"empty"``, the worst case for a non-empty ground truth) or left unscored (``"skip"``); a
prediction without ground truth cannot be scored and is only listed.  A case that cannot
be read, or whose shapes differ, is listed as ``failed`` with the reason.

Masks are read through :mod:`medkt.io` (``discover_cases`` / ``read_case``) when that layer
is available, else by a small internal reader (``.npy``, ``.npz``, NIfTI, PNG/JPEG/TIFF/BMP);
``.npy``/``.npz`` are always read here.  Singleton axes are squeezed (a ``(H, W, 1)`` NIfTI
slice is scored as 2-D, so its top and bottom faces are not counted as boundary), with
their spacing entries.  Spacing is taken from the ground truth.

Outputs (``out`` folder): ``per_case.csv`` (one row per case id), ``summary.json``
(statistics, bootstrap CI, per class, case-type counts, the empty policy and every
convention), ``run.json``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medkt.errors import ConfigError, InputError, MedktError
from medkt.metrics.aggregate import summarize_segmentation
from medkt.metrics.segmentation import SegMetricConfig, segmentation_scores

__all__ = ["evaluate", "EvaluationReport", "discover_masks", "read_mask"]

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_NIFTI_EXT = (".nii.gz", ".nii")
_NUMPY_EXT = (".npy", ".npz")
_ALL_EXT = _NIFTI_EXT + _NUMPY_EXT + _IMAGE_EXT + (".dcm",)
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
def _case_id(path: Path) -> str:
    name = path.name
    for ext in _ALL_EXT:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _io_layer():
    try:
        from medkt.io import discover_cases, read_case  # noqa: F401
        return discover_cases, read_case
    except ImportError:
        return None


def discover_masks(path: str | Path) -> dict[str, Any]:
    """``{case_id: source}`` for a mask file or a folder of masks (ids must be unique).

    ``.npy``/``.npz`` files are listed here; everything else through
    ``medkt.io.discover_cases`` when the I/O layer is importable, else by file name.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("mask path does not exist.", path=str(path), hint="check the PRED/GT arguments")
    io = _io_layer()
    found: dict[str, Any] = {}
    numpy_files = ([path] if path.is_file() else sorted(path.iterdir()))
    numpy_files = [f for f in numpy_files if f.is_file() and not f.name.startswith(".")
                   and f.name.lower().endswith(_NUMPY_EXT)]
    for f in numpy_files:
        _add(found, _case_id(f), f, path)
    if path.is_file() and numpy_files:
        return found
    if io is not None:
        try:
            cases = list(io[0](path))
        except InputError:
            if found:  # a folder of .npy masks only
                return found
            raise
        for case in cases:
            paths = [Path(p) for p in getattr(case, "paths", [])]
            if paths and all(p.name.lower().endswith(_NUMPY_EXT) for p in paths):
                continue  # already listed above
            _add(found, str(getattr(case, "case_id", case)), case, path)
        return found
    if path.is_file():
        return {_case_id(path): path}
    for f in sorted(path.iterdir()):
        if f.name.startswith("."):
            continue
        if f.is_file() and f.name.lower().endswith(_ALL_EXT) and not f.name.lower().endswith(_NUMPY_EXT):
            _add(found, _case_id(f), f, path)
        elif f.is_dir() and any(f.glob("*.dcm")):
            _add(found, f.name, f, path)
    return found


def _add(found: dict, cid: str, source, folder: Path) -> None:
    if cid in found:
        raise InputError(f"two masks share the case id '{cid}': {found[cid]} and {source}.",
                         path=str(folder), hint="keep one file per case id in each folder")
    found[cid] = source


def read_mask(source) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """``(array, spacing)`` of one mask; spacing per array axis (None if unknown).

    2-D images (PNG/JPEG/...) carry no physical spacing, so theirs is None; RGB masks are
    reduced to one channel by the channel maximum.
    """
    if isinstance(source, Path) and source.name.lower().endswith(_NUMPY_EXT):
        return _read_numpy(source), None
    io = _io_layer()
    if io is not None and not isinstance(source, Path):
        vol = io[1](source)
        arr = np.asarray(vol.array)
        spacing = getattr(vol, "spacing", None)
        if getattr(vol, "kind", "") == "image2d":
            spacing = None  # the I/O layer uses 1 mm when a 2-D image has no spacing
            if arr.ndim == 3 and arr.shape[-1] in (3, 4):
                arr = arr[..., :3].max(axis=-1)
        return arr, (tuple(float(s) for s in spacing) if spacing is not None else None)
    return _read_fallback(Path(source))


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


def _read_fallback(path: Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
    name = path.name.lower()
    try:
        if name.endswith(_NIFTI_EXT):
            import nibabel as nib
            img = nib.load(str(path))
            arr = np.asarray(img.dataobj)
            return arr, tuple(float(z) for z in img.header.get_zooms()[: arr.ndim])
        if name.endswith(_IMAGE_EXT):
            from PIL import Image
            with Image.open(path) as im:
                arr = np.asarray(im)
            if arr.ndim == 3 and arr.shape[-1] in (3, 4):
                arr = arr[..., :3].max(axis=-1)
            return arr, None
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot read mask: {type(e).__name__}: {e}", path=str(path)) from None
    raise InputError("this mask format needs the medkt I/O layer (DICOM), which is not available.",
                     path=str(path), hint="convert the masks to NIfTI, PNG or .npy")


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


def _load(source) -> tuple[np.ndarray, tuple[float, ...] | None]:
    if isinstance(source, tuple) and len(source) == 2:  # in-memory (array, spacing)
        return np.asarray(source[0]), (tuple(source[1]) if source[1] is not None else None)
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        return np.asarray(source.detach().cpu() if hasattr(source, "detach") else source), None
    return read_mask(Path(source) if isinstance(source, str) else source)


# ----------------------------------------------------------------------------- scoring
def _config_from(config: SegMetricConfig | None, options: dict) -> SegMetricConfig:
    names = {f.name for f in fields(SegMetricConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        from medkt.errors import UnknownNameError
        raise UnknownNameError("evaluate option", unknown[0], sorted(names) + ["spacing", "seed", "n_boot"])
    if config is None:
        return SegMetricConfig(**options)
    import dataclasses
    return dataclasses.replace(config, **options) if options else config


def evaluate(pred, gt, out: str | Path | None = None, *, config: SegMetricConfig | None = None,
             spacing=None, missing_prediction: str = "empty", seed: int = 0, n_boot: int = 2000,
             overwrite: bool = False, **options) -> EvaluationReport:
    """Score predicted masks against ground truth, matched by case id.

    Args:
        pred, gt: a mask file, a folder of masks, or a ``{case_id: array | (array, spacing)}``
            mapping.
        out: folder for ``per_case.csv``, ``summary.json`` and ``run.json`` (nothing written
            when None).  It must not lie inside an input folder.
        config / options: a :class:`SegMetricConfig` and/or its fields (``nsd_tolerance``,
            ``nsd_units``, ``nsd_mode``, ``empty_policy``, ``threshold``, ``classes``, ``metrics``).
        spacing: mm per array axis, used when the ground truth carries none (e.g. PNG).
        missing_prediction: ``"empty"`` (score as an empty prediction) or ``"skip"``.
        seed, n_boot: bootstrap settings of the summary.
    """
    cfg = _config_from(config, options)
    if missing_prediction not in MISSING_PREDICTION:
        from medkt.errors import UnknownNameError
        raise UnknownNameError("missing-prediction handling", missing_prediction, MISSING_PREDICTION)
    pred_map, gt_map = _as_source_map(pred), _as_source_map(gt)
    if not gt_map:
        raise InputError("no ground-truth masks found.", path=None if isinstance(gt, Mapping) else str(gt),
                         hint="point GT at a mask file or a folder of masks")
    rows: list[dict] = []
    for cid in sorted(set(pred_map) | set(gt_map)):
        rows.append(_score_case(cid, pred_map.get(cid), gt_map.get(cid), cfg, spacing, missing_prediction))
    summary = summarize_segmentation(rows, cfg, seed=seed, n_boot=n_boot)
    summary["missing"] = {"prediction": sorted(r["case_id"] for r in rows if r["status"] == "missing_prediction"),
                          "ground_truth": sorted(r["case_id"] for r in rows if r["status"] == "missing_gt"),
                          "missing_prediction_scored_as": missing_prediction}
    summary["failed"] = {r["case_id"]: r["reason"] for r in rows if r["status"] == "failed"}
    summary["reader"] = "medkt.io" if _io_layer() is not None else "medkt.metrics.evaluate internal reader"
    report = EvaluationReport(rows, summary, cfg)
    if out is not None:
        report.files = _write(report, out, pred, gt, overwrite, seed, n_boot, missing_prediction)
    return report


def _score_case(cid, psrc, gsrc, cfg: SegMetricConfig, spacing, missing_prediction: str) -> dict:
    row: dict = {"case_id": cid, "status": "ok", "reason": ""}
    if gsrc is None:
        return row | {"status": "missing_gt", "reason": "prediction has no ground truth; not scored"}
    try:
        g, g_sp = _load(gsrc)
        g_sp = g_sp if g_sp is not None else spacing
        if psrc is None:
            if missing_prediction == "skip":
                return row | {"status": "missing_prediction", "reason": "no prediction; not scored"}
            p = np.zeros(g.shape, dtype=bool)
            row |= {"status": "missing_prediction", "reason": "no prediction; scored as empty"}
        else:
            p, _ = _load(psrc)
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
    lead = ["case_id", "status", "reason", "shape", "spacing"]
    metric_cols = [c for c in _columns(report.rows) if c not in lead]
    csv_path = write_csv(out_dir / "per_case.csv", report.rows, lead + metric_cols)
    json_path = atomic_write_json(out_dir / "summary.json", _jsonable(report.summary))
    rec = RunRecord("evaluate", config=to_dict(report.config), seed=seed,
                    cases=[{"case_id": r["case_id"], "status": r["status"]} for r in report.rows],
                    failures=[{"case_id": k, "reason": v} for k, v in report.summary["failed"].items()],
                    extra={"inputs": {"pred": str(pred) if inputs else "<in-memory>",
                                      "gt": str(gt) if inputs else "<in-memory>"},
                           "n_boot": n_boot, "missing_prediction": missing_prediction})
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
