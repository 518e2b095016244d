"""Validation of a refiner during ``medkt refine`` (``--val-gt``, ``--val-images``): the refined
mask of each validation case on its own grid (what ``medkt segment --refiner`` writes) and its DSC
against ground truth, beside the DSC of the case's pseudo-label when it has one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medkt.errors import MedktError
from medkt.refinement.config import RefineConfig

log = logging.getLogger("medkt.refine")


def validation_cases(val_gt, volumes: dict, val_images=None, max_voxels: int | None = None) -> dict:
    """``{case_id: (ImageVolume, pseudo-label or None, ground truth bool array)}`` for validation.

    Without ``val_images`` the ground truth of ``val_gt`` is matched to the training cases
    (``volumes``); with it, to the cases of ``val_images`` (a held-out split: the network never
    trains on them; no pseudo-label, so only the refined DSC is reported)."""
    from medkt import io as mio
    from medkt.refinement.data import _read_array
    if val_images is not None:
        pool = {}
        for c in mio.discover_cases(val_images, max_voxels=max_voxels):
            if c.ok:
                pool[c.case_id] = c
    out = {}
    for c in mio.discover_cases(val_gt):
        if not c.ok:
            continue
        if val_images is None and c.case_id in volumes:
            vol, lab = volumes[c.case_id]
        elif val_images is not None and c.case_id in pool:
            try:
                vol, lab = mio.read_case(pool[c.case_id]), None
            except MedktError as e:
                log.warning("validation case %s skipped: %s", c.case_id, e.message)
                continue
        else:
            continue
        out[c.case_id] = (vol, lab, np.asarray(_read_array(Path(c.paths[0]))) > 0)
    if not out:
        log.warning("--val-gt %s: no ground truth matches a %s case id", val_gt,
                    "--val-images" if val_images is not None else "training")
    return out


def case_probability(net, vol, cfg: RefineConfig) -> np.ndarray:
    """Foreground probability (float32 in [0, 1]) of one whole case on its own grid (spatial shape);
    ``net``: one network or a checkpoint ensemble (list); ``cfg.predict.tta`` applies."""
    from medkt import io as mio
    from medkt.refinement.model import predict_probabilities
    img01, _ = mio.prepare_intensity(vol, modality=cfg.modality, window=cfg.window)
    if vol.is_2d:
        return predict_probabilities(net, [img01], cfg.network.image_size, tta=cfg.predict.tta)[0]
    pairs, smap = mio.iter_slices(vol, cfg.plane, array=img01)
    probs = predict_probabilities(net, [s for _, s in pairs], cfg.network.image_size, cfg.train.batch_size,
                                  cfg.predict.tta)
    return mio.reassemble({k: p for (k, _), p in zip(pairs, probs)}, smap, dtype=np.float32)


def case_prediction(net, vol, cfg: RefineConfig) -> np.ndarray:
    """Refined mask of one whole case on its grid (what ``medkt segment --refiner`` writes):
    :func:`case_probability` above ``cfg.labels.threshold``."""
    return case_probability(net, vol, cfg) > cfg.labels.threshold


def _gt2(vol, g):
    g2 = g[..., 0] if g.ndim == 3 and vol.is_2d else g
    return g2 if g2.shape == tuple(vol.spatial_shape) else None


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def calibrate_threshold(net, cases: dict, cfg: RefineConfig) -> tuple[float, dict]:
    """``(threshold, {threshold: mean refined DSC})``: the :data:`THRESHOLDS` value with the best
    mean DSC (percent) over the validation ``cases`` (ties: the one closest to 0.5)."""
    from medkt.metrics.segmentation import compute_dice
    probs = [(case_probability(net, vol, cfg), g2) for vol, _, g in cases.values()
             if (g2 := _gt2(vol, g)) is not None]
    curve = {t: float(np.mean([100 * compute_dice(p > t, g2) for p, g2 in probs])) for t in THRESHOLDS}
    best = max(curve.values())
    return min((t for t in THRESHOLDS if curve[t] == best), key=lambda t: abs(t - 0.5)), curve


def validate(net, cases: dict, cfg: RefineConfig) -> dict:
    """Per case (``cases`` from :func:`validation_cases`): DSC (percent) of the pseudo-label (``nan``
    for held-out cases, which have none) and of the refined mask against ground truth, and their
    ``mean`` (over the cases that have each)."""
    from medkt.metrics.segmentation import compute_dice
    rows = {}
    for cid, (vol, lab, g) in cases.items():
        g2 = _gt2(vol, g)
        if g2 is None:
            continue
        pseudo = float("nan")
        if lab is not None:
            lab = np.asarray(lab)
            lab = lab[..., 0] if lab.ndim == 3 and vol.is_2d else lab
            pseudo = 100 * compute_dice(lab > 0, g2)
        rows[cid] = {"pseudo_dsc": pseudo, "refined_dsc": 100 * compute_dice(case_prediction(net, vol, cfg), g2)}
    if rows:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan pseudo column of a held-out split
            rows["mean"] = {k: float(np.nanmean([r[k] for r in rows.values()])) for k in ("pseudo_dsc", "refined_dsc")}
    return rows
