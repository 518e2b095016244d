"""Prompt-sensitivity diagnostic: does the saliency map depend on the prompt?

Users of MedCLIP-SAMv2 reported maps that look the same for "brain tumor", "normal" and
random characters.  :func:`prompt_sensitivity` computes, for each image, the M2IB map for
the real prompt, a neutral prompt and ``n_random`` random-character prompts — all under
the *same* noise seed, so differences come from the prompt alone (M2IB maps of untrained
models vary a lot between seeds) — and reports per alternative prompt:

* ``pearson``: Pearson correlation of the two ``H×W`` maps (1 = same pattern);
* ``mad``: mean absolute difference of the min-max-normalised maps (0 = identical);
* ``top_iou``: IoU of the top-``top_fraction`` pixels of each map (1 = same hot spot).

A map that ignores the prompt shows pearson ≈ 1, mad ≈ 0 and top_iou ≈ 1 for every
alternative.  The diagnostic itself never fails a run; it only reports.
"""
from __future__ import annotations

import string
from typing import Sequence

import numpy as np


def random_prompt(seed: int, length: int = 12) -> str:
    """A seeded random lower-case string with spaces (a nonsense prompt)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list(string.ascii_lowercase + "  "))
    return "".join(rng.choice(alphabet, size=length)).strip() or "x"


def compare_maps(a: np.ndarray, b: np.ndarray, top_fraction: float = 0.1) -> dict:
    """Agreement of two ``H×W`` maps: pearson, mad, top_iou (see module docstring)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    sa, sb = a.std(), b.std()
    pearson = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else float("nan")

    def norm(x):
        r = x.max() - x.min()
        return (x - x.min()) / r if r > 0 else np.zeros_like(x)
    mad = float(np.abs(norm(a) - norm(b)).mean())
    k = max(1, int(round(top_fraction * a.size)))
    ta = np.zeros(a.size, bool)
    tb = np.zeros(a.size, bool)
    ta[np.argsort(-a, kind="stable")[:k]] = True
    tb[np.argsort(-b, kind="stable")[:k]] = True
    top_iou = float((ta & tb).sum() / (ta | tb).sum())
    return {"pearson": pearson, "mad": mad, "top_iou": top_iou}


def alternative_prompts(neutral_prompt: str = "a medical image", n_random: int = 1, random_length: int = 12,
                        seed: int = 0) -> list[tuple[str, str]]:
    """``[(key, text)]``: the neutral prompt, then ``n_random`` random ones (``random1``...)."""
    return [("neutral", neutral_prompt)] + [(f"random{i + 1}", random_prompt(seed + i, random_length))
                                            for i in range(n_random)]


def prompt_sensitivity(engine, images: Sequence, prompt: str, *, neutral_prompt: str = "a medical image",
                       n_random: int = 1, random_length: int = 12, seed: int = 0,
                       top_fraction: float = 0.1, names: Sequence[str] | None = None) -> list[dict]:
    """Per-image rows comparing the real prompt's map with neutral and random prompts.

    ``engine``: a :class:`~medkt.segmentation.saliency.SaliencyEngine`; ``images`` as it takes.
    Every prompt uses noise seed ``engine.cfg.seed`` for every image.  Each row has
    ``image``, ``prompt`` and, per alternative ``alt`` (``neutral``, ``random1``...),
    ``<alt>_prompt``, ``<alt>_pearson``, ``<alt>_mad``, ``<alt>_top_iou``.
    """
    images = list(images)
    names = list(names) if names is not None else [str(i) for i in range(len(images))]
    alts = alternative_prompts(neutral_prompt, n_random, random_length, seed)
    real = engine(images, prompt)
    rows = [{"image": nm, "prompt": prompt} for nm in names]
    for key, text in alts:
        other = engine(images, text)
        for row, r, o in zip(rows, real, other):
            row[f"{key}_prompt"] = text
            for m, v in compare_maps(r.map, o.map, top_fraction).items():
                row[f"{key}_{m}"] = v
    return rows


def summarize_sensitivity(rows: Sequence[dict]) -> dict:
    """Mean of every numeric ``*_pearson`` / ``*_mad`` / ``*_top_iou`` column."""
    out: dict[str, float] = {}
    keys = [k for k in (rows[0] if rows else {}) if k.endswith(("_pearson", "_mad", "_top_iou"))]
    for k in keys:
        vals = np.array([r[k] for r in rows], dtype=np.float64)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return out
