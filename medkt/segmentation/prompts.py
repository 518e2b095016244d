"""Coarse mask → SAM prompts.

Coordinates are pixels of the ORIGINAL image: boxes ``XYXY`` (x = column, y = row,
inclusive pixel extents, ``x1 = max column + 1`` so a one-pixel component has width 1),
points ``(x, y)`` at pixel centres, labels 1 = foreground / 0 = background.

Modes (registry :data:`PROMPT_MODES`):

* ``box``: one box around the union of all components (MedCLIP-SAMv2 default);
* ``boxes``: one box per connected component (MedCLIP-SAMv2 ``--multicontour``);
* ``points``: ``num_points`` positive points drawn from the coarse foreground, plus
  ``num_negative`` background points when ``negative``; seeded (``seed``), unlike
  MedCLIP-SAMv2;
* ``box+points``: each box of ``box`` (or of ``boxes`` when ``per_component``) with the
  same points.

Empty coarse mask (``empty`` policy), always logged:

* ``skip``: no prompt; SAM is not run and the image gets no prediction (``skipped``);
* ``empty``: no prompt; the prediction is an all-zero mask;
* ``full_image``: one box covering the whole image.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medkt.errors import ConfigError, look_up

log = logging.getLogger("medkt.segmentation")

PROMPT_MODES = {"box": "box", "boxes": "boxes", "points": "points", "box+points": "box+points"}
EMPTY_POLICIES = {"skip": "skip", "empty": "empty", "full_image": "full_image"}


@dataclass
class PromptConfig:
    """Prompt construction (defaults = MedCLIP-SAMv2: one union box; empty masks skipped)."""

    mode: str = "box"
    per_component: bool = False
    num_points: int = 10
    negative: bool = False
    num_negative: int = 10
    box_margin: int = 0
    empty: str = "skip"
    seed: int = 0

    def validate(self) -> "PromptConfig":
        look_up("prompt mode", self.mode, PROMPT_MODES)
        look_up("empty-mask policy", self.empty, EMPTY_POLICIES)
        if self.num_points < 0 or self.num_negative < 0 or self.box_margin < 0:
            raise ConfigError("prompts.num_points, num_negative and box_margin must be ≥ 0.")
        if self.mode in ("points", "box+points") and self.num_points == 0:
            raise ConfigError(f"prompt mode '{self.mode}' needs prompts.num_points ≥ 1.")
        return self


@dataclass
class Prompts:
    """Prompts for one image: ``N`` prompts, each a box and/or ``P`` points.

    ``boxes`` ``[N, 4]`` float XYXY or ``None``; ``points`` ``[N, P, 2]`` float (x, y) or
    ``None``; ``labels`` ``[N, P]`` int (1 fg / 0 bg).  ``status``: ``ok``, ``skip``,
    ``empty`` or ``full_image`` (the empty-mask policy that applied).  ``n_components``
    counts the coarse mask's connected components.
    """

    boxes: np.ndarray | None
    points: np.ndarray | None
    labels: np.ndarray | None
    status: str = "ok"
    n_components: int = 0
    info: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        if self.boxes is not None:
            return int(self.boxes.shape[0])
        if self.points is not None:
            return int(self.points.shape[0])
        return 0


def mask_box(mask: np.ndarray, margin: int = 0) -> np.ndarray:
    """XYXY box ``[4]`` of a non-empty bool mask (``x1``/``y1`` exclusive), grown by ``margin``."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    x0, x1 = max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)
    y0, y1 = max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def component_boxes(mask: np.ndarray, margin: int = 0) -> np.ndarray:
    """One XYXY box per 8-connected component, ordered by raster order of first pixel."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        (r, c) = sl
        boxes.append([max(0, c.start - margin), max(0, r.start - margin),
                      min(mask.shape[1], c.stop + margin), min(mask.shape[0], r.stop + margin)])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def sample_points(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` (x, y) pixel centres drawn uniformly from ``mask`` (with replacement only if
    the mask has fewer than ``n`` pixels); ``[n, 2]`` float, empty if the mask is empty."""
    ys, xs = np.nonzero(mask)
    if n == 0 or ys.size == 0:
        return np.zeros((0, 2), np.float32)
    idx = rng.choice(ys.size, size=n, replace=ys.size < n)
    return np.stack([xs[idx], ys[idx]], axis=1).astype(np.float32) + 0.5


def make_prompts(coarse: np.ndarray, cfg: PromptConfig | None = None, *, seed: int | None = None,
                 name: str = "") -> Prompts:
    """Build prompts from a bool coarse mask ``H×W``; ``seed`` overrides ``cfg.seed``."""
    cfg = (cfg or PromptConfig()).validate()
    mask = np.asarray(coarse).astype(bool)
    if mask.ndim != 2:
        raise ConfigError(f"make_prompts expects a 2-D mask, got shape {mask.shape}.")
    h, w = mask.shape
    _, n_comp = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if not mask.any():
        log.warning("empty coarse mask%s: policy '%s'", f" ({name})" if name else "", cfg.empty)
        if cfg.empty == "full_image":
            box = np.array([[0, 0, w, h]], np.float32)
            return Prompts(box, None, None, status="full_image", n_components=0)
        return Prompts(None, None, None, status=cfg.empty, n_components=0)
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    boxes = None
    if cfg.mode == "box" or (cfg.mode == "box+points" and not cfg.per_component):
        boxes = mask_box(mask, cfg.box_margin)[None]
    elif cfg.mode == "boxes" or cfg.mode == "box+points":
        boxes = component_boxes(mask, cfg.box_margin)
    points = labels = None
    if cfg.mode in ("points", "box+points"):
        pos = sample_points(mask, cfg.num_points, rng)
        neg = sample_points(~mask, cfg.num_negative, rng) if cfg.negative else np.zeros((0, 2), np.float32)
        pts = np.concatenate([pos, neg])
        lab = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
        n = 1 if boxes is None else boxes.shape[0]
        points = np.repeat(pts[None], n, axis=0)
        labels = np.repeat(lab[None], n, axis=0)
    return Prompts(boxes, points, labels, status="ok", n_components=int(n_comp))
