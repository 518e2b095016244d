"""Aggregation of per-case scores: mean, SD, median, quartiles and a seeded bootstrap CI.

Conventions:

* One row per case (a dict, e.g. from :func:`medkt.metrics.segmentation_scores`); a metric
  is a column.  Values that are nan (undefined under the empty-mask policy, or missing)
  are **excluded** from every statistic and counted in ``n_nan``; nothing is pooled
  across cases.
* ``sd`` is the sample SD (``ddof=1``; nan for fewer than 2 values).
* The CI is a percentile bootstrap of the **mean** over cases: ``n_boot`` resamples of
  the cases with replacement from ``numpy.random.default_rng(seed)``, re-seeded for each
  metric, so a summary is identical for the same rows, seed and ``n_boot``.
* Multi-class: statistics per class over cases, then ``macro`` = unweighted mean of the
  per-class means (Metrics Reloaded's recommended order).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "describe", "summarize", "summarize_segmentation"]

_CHUNK = 1 << 22  # resampled values per chunk (bounded memory)


def _finite(values: Iterable) -> tuple[np.ndarray, int]:
    vals, n_nan = [], 0
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            n_nan += 1
            continue
        if math.isnan(f):
            n_nan += 1
        else:
            vals.append(f)
    return np.asarray(vals, dtype=np.float64), n_nan


def bootstrap_ci(values: Sequence[float], seed: int = 0, n_boot: int = 2000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (nan values dropped first).

    Returns ``(nan, nan)`` for no values and ``(v, v)`` for a single value.
    """
    vals, _ = _finite(values)
    n = vals.size
    if n == 0:
        return math.nan, math.nan
    if n == 1 or n_boot <= 0:
        return float(vals[0]), float(vals[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    step = max(1, _CHUNK // n)
    for start in range(0, n_boot, step):
        stop = min(start + step, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = vals[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def describe(values: Sequence[float], seed: int = 0, n_boot: int = 2000, level: float = 0.95) -> dict:
    """``{n, n_nan, mean, sd, median, q1, q3, min, max, ci_low, ci_high}`` over the non-nan values.

    ``inf`` values (e.g. a custom empty policy) are kept; their mean/SD are then inf/nan.
    """
    vals, n_nan = _finite(values)
    out = {"n": int(vals.size), "n_nan": int(n_nan)}
    if vals.size == 0:
        return out | {k: math.nan for k in ("mean", "sd", "median", "q1", "q3", "min", "max",
                                             "ci_low", "ci_high")}
    with np.errstate(invalid="ignore"):
        lo, hi = bootstrap_ci(vals, seed=seed, n_boot=n_boot, level=level)
        return out | {
            "mean": float(vals.mean()),
            "sd": float(vals.std(ddof=1)) if vals.size > 1 else math.nan,
            "median": float(np.median(vals)),
            "q1": float(np.quantile(vals, 0.25)),
            "q3": float(np.quantile(vals, 0.75)),
            "min": float(vals.min()),
            "max": float(vals.max()),
            "ci_low": lo,
            "ci_high": hi,
        }


def summarize(rows: Sequence[dict], metrics: Sequence[str] | None = None, seed: int = 0,
              n_boot: int = 2000, level: float = 0.95) -> dict:
    """Statistics of each metric column over ``rows``: ``{metric: describe(...)}``.

    ``metrics=None`` takes every column holding at least one number (bools excluded).
    A row without a metric counts as nan for it.
    """
    if metrics is None:
        metrics = []
        for r in rows:
            for k, v in r.items():
                if k not in metrics and isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                    metrics.append(k)
    return {m: describe([r.get(m, math.nan) for r in rows], seed=seed, n_boot=n_boot, level=level)
            for m in metrics}


def summarize_segmentation(rows: Sequence[dict], config=None, seed: int = 0, n_boot: int = 2000,
                           level: float = 0.95) -> dict:
    """Summary of per-case :func:`segmentation_scores` rows, stating every convention.

    Rows with a ``status`` other than ``"ok"`` / ``"missing_prediction"`` (e.g. a case with
    no ground truth, or one that failed to read), and rows without scores, are counted
    under ``cases`` but excluded from the statistics.

    Returns ``{"n_cases", "cases", "conventions", "bootstrap", "metrics", "case_types"}``
    and, for multi-class configs, ``"per_class"`` and ``"macro"``.
    """
    from medkt.metrics.segmentation import SegMetricConfig, class_table

    config = config or SegMetricConfig()
    status = Counter(str(r.get("status", "ok")) for r in rows)
    table = class_table(config.classes)
    first = config.metrics[0] if table is None else f"{config.metrics[0]}/{next(iter(table))}"
    scored = [r for r in rows if r.get("status", "ok") in ("ok", "missing_prediction") and first in r]
    out: dict = {
        "n_cases": len(rows),
        "n_scored": len(scored),
        "cases": dict(sorted(status.items())),
        "conventions": config.describe(),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": level,
                      "method": "percentile bootstrap of the mean, resampling cases"},
        "aggregation": "nan values are excluded and counted in n_nan; sd uses ddof=1",
    }
    metrics = list(config.metrics)
    if table is None:
        out["metrics"] = summarize(scored, metrics, seed=seed, n_boot=n_boot, level=level)
        out["case_types"] = dict(sorted(Counter(r.get("case_type", "") for r in scored).items()))
        return out
    per_class, case_types = {}, {}
    for name in table:
        per_class[name] = {m: describe([r.get(f"{m}/{name}", math.nan) for r in scored],
                                       seed=seed, n_boot=n_boot, level=level) for m in metrics}
        case_types[name] = dict(sorted(Counter(r.get(f"case_type/{name}", "") for r in scored).items()))
    out["per_class"] = per_class
    out["case_types"] = case_types
    macro = {}
    for m in metrics:
        means = [per_class[c][m]["mean"] for c in table if not math.isnan(per_class[c][m]["mean"])]
        macro[m] = float(np.mean(means)) if means else math.nan
    out["macro"] = macro
    out["metrics"] = summarize(scored, metrics, seed=seed, n_boot=n_boot, level=level)
    out["metrics_note"] = ("'metrics' describes the per-case mean over classes; 'macro' is the mean "
                           "over classes of the per-class means")
    return out
