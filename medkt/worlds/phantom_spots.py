"""Optional findings that ground parts of the held-out nodule's description ("a small round
bright spot in the lung") without showing a CT nodule.

* CXR ``granuloma`` (:func:`cxr_granuloma`): a small round bright calcified granuloma *inside a
  chest-radiograph lung field* — the description's visual words on dark lung background, in
  another modality.  Its radius (2–4 px at 64 px), lobulated margin and brightness (0.75–0.9)
  are the CT nodule's; the CT nodule itself (its name and its CT appearance) stays unseen.
* CT ``atelectasis`` (:func:`ct_atelectasis`): plate-like atelectasis, a thin bright *band*
  inside a CT lung — "bright ... in the lung" in CT, with a shape that is never round, so the
  nodule's composition (small, round, bright, in a CT lung) stays held out.

The renderers take the finding generator ``frng`` only (anatomy comes from the caller's
generator), so the phantom's counterfactual twin keeps the same anatomy.
"""
from __future__ import annotations

import numpy as np


def cxr_granuloma(x: np.ndarray, y: np.ndarray, s: int, frng: np.random.Generator,
                  lungs: list[np.ndarray], heart: np.ndarray) -> tuple[np.ndarray, float, int, int]:
    """A nodule-sized bright spot in one CXR lung field (never on the heart).

    ``x, y``: the ``[S, S]`` coordinate grids in [-1, 1]; ``lungs``: the two lung fields (bool
    ``[S, S]``, image left first).  Returns ``(mask bool [S, S], intensity in [0.75, 0.9],
    side 0 | 1, level 0 = upper | 1 = lower)``; the mask lies inside ``lungs[side] & ~heart``.
    """
    from scipy.ndimage import binary_erosion
    from medkt.worlds.phantoms import _irregular
    side = int(frng.integers(2))
    level = int(frng.integers(2))
    field = lungs[side] & ~heart
    r = frng.uniform(0.06, 0.12)
    cy = np.median(y[field])
    half = (y < cy) if level == 0 else (y >= cy)
    core = np.zeros_like(field)
    for it in range(int(np.ceil(r * 1.2 * s / 2)) + 1, 0, -1):  # centres with room for the whole spot
        core = binary_erosion(field, iterations=it) & half
        if core.any():
            break
    ys, xs = np.nonzero(core)
    i = frng.integers(len(xs))
    m = _irregular(x, y, x[ys[i], xs[i]], y[ys[i], xs[i]], r, frng, amp=0.08) & field
    return m, float(frng.uniform(0.75, 0.9)), side, level


def ct_atelectasis(x: np.ndarray, y: np.ndarray, s: int, frng: np.random.Generator,
                   lungs: list[np.ndarray], heart: np.ndarray) -> tuple[np.ndarray, float, int, int]:
    """Plate-like atelectasis: a thin bright band (about 2 px wide, 9–16 px long, within 35° of
    horizontal) inside one CT lung — bright in the lung, but a band, never a round spot.

    Same inputs as :func:`cxr_granuloma`; returns ``(mask bool [S, S], intensity in [0.6, 0.85],
    side, level)``; the mask lies inside ``lungs[side] & ~heart``.
    """
    from scipy.ndimage import binary_erosion
    side = int(frng.integers(2))
    level = int(frng.integers(2))
    field = lungs[side] & ~heart
    half_len = frng.uniform(9, 16) / s  # in [-1, 1] units: length 9-16 px
    half_w = frng.uniform(0.9, 1.3) / s
    th = frng.uniform(-0.6, 0.6)
    cy = np.median(y[field])
    half = (y < cy) if level == 0 else (y >= cy)
    core = binary_erosion(field, iterations=3) & half
    if not core.any():
        core = binary_erosion(field, iterations=3)
    ys, xs = np.nonzero(core)
    i = frng.integers(len(xs))
    cx, cyy = x[ys[i], xs[i]], y[ys[i], xs[i]]
    u = (x - cx) * np.cos(th) + (y - cyy) * np.sin(th)  # along the band
    v = -(x - cx) * np.sin(th) + (y - cyy) * np.cos(th)  # across it
    m = (np.abs(u) <= half_len) & (np.abs(v) <= half_w) & field
    return m, float(frng.uniform(0.6, 0.85)), side, level


def ct_ground_glass(x: np.ndarray, y: np.ndarray, s: int, frng: np.random.Generator,
                    lungs: list[np.ndarray], heart: np.ndarray) -> tuple[np.ndarray, float, int, int]:
    """A small round ground-glass opacity in one CT lung: the nodule's size and margin, but
    *fainter* (0.35–0.55 on lung at 0.07, where the nodule is 0.75–0.9: soft-tissue density, as
    the vessels) — round and in the lung, never bright.  (At 0.2–0.35 the encoder did not learn it.)

    Same inputs and outputs as :func:`cxr_granuloma` (intensity in [0.35, 0.55]).
    """
    m, _, side, level = cxr_granuloma(x, y, s, frng, lungs, heart)
    return m, float(frng.uniform(0.35, 0.55)), side, level
