"""The natural-image world: coloured shapes on a noisy background, rendered procedurally.

Primitives are shapes (:data:`SHAPES`), colours (:data:`COLOURS`), sizes (small / large),
positions (left, right, top, bottom, center) and relations between two objects
(``inside``, ``next to``, ``above``).  A :class:`Composition` is one object or two
objects in a relation; a *class* (see :mod:`medkt.worlds.concepts`) binds a name to a
composition.  Size and position are nuisance variables: they vary inside a class.

Rendering is NumPy only, deterministic for a given ``numpy.random.Generator``, 2x
supersampled for anti-aliased edges, and returns ``uint8`` ``H x W x 3`` images::

    rng = np.random.default_rng(0)
    comp = Composition(Obj("circle", "yellow"))
    img, info = render(comp, rng, size=32)      # info: size word, position word
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "bar")
COLOURS = {
    "red": (225, 40, 40), "green": (40, 190, 70), "blue": (50, 90, 240), "yellow": (245, 225, 45),
    "purple": (165, 65, 215), "white": (238, 238, 238), "cyan": (50, 210, 230), "pink": (250, 130, 190),
}
RELATIONS = ("inside", "next to", "above")
CONTAINERS = ("circle", "square", "diamond", "ring")  # shapes that can hold another inside
POSITIONS = ("left", "right", "top", "bottom", "center")


@dataclass(frozen=True)
class Obj:
    """One coloured shape."""

    shape: str
    colour: str

    def describe(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Composition:
    """``a`` alone, or ``a <relation> b`` (``inside``: a is inside b; ``above``: a is above b)."""

    a: Obj
    relation: str | None = None
    b: Obj | None = None

    @property
    def is_pair(self) -> bool:
        return self.relation is not None

    def objects(self) -> tuple[Obj, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def key(self) -> str:
        """Canonical identity (``next to`` is symmetric)."""
        if not self.is_pair:
            return self.a.describe()
        a, b = self.a.describe(), self.b.describe()
        if self.relation == "next to" and b < a:
            a, b = b, a
        return f"{a} {self.relation} {b}"

    def describe(self) -> str:
        """Full description without article on the first object: ``red cross inside a white ring``."""
        if not self.is_pair:
            return self.a.describe()
        return f"{self.a.describe()} {self.relation} {article(self.b.describe())}"


def article(phrase: str) -> str:
    """``'apple'`` → ``'an apple'``; ``'red circle'`` → ``'a red circle'``."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


# ----------------------------------------------------------------------------- shape masks
def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` on normalised coordinates (object radius = 1, y down)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if shape == "triangle":  # apex up
        return (v <= 0.8) & (np.abs(u) <= (v + 1.0) / 1.8 * 1.05)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.52 ** 2)
    if shape == "star":
        theta = np.arctan2(u, -v)
        r = np.sqrt(u * u + v * v)
        edge = 0.42 + 0.58 * np.abs(np.cos(2.5 * theta)) ** 2.2
        return r <= edge
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.38)
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(15, 75) + rng.uniform(-12, 12, size=3)
    low = rng.normal(0, 1, size=(4, 4, 3))
    ys = np.linspace(0, 3, size)
    yi = np.clip(ys.astype(int), 0, 2)
    fy = ys - yi
    # bilinear upsampling of a 4x4 field: smooth blotches
    rows = low[yi] * (1 - fy)[:, None, None] + low[yi + 1] * fy[:, None, None]
    field = rows[:, yi] * (1 - fy)[None, :, None] + rows[:, yi + 1] * fy[None, :, None]
    img = base + 12 * field + rng.normal(0, 9, size=(size, size, 3))
    return img


def _paint(img: np.ndarray, obj: Obj, cx: float, cy: float, radius: float, rng: np.random.Generator,
           ss: int = 2) -> np.ndarray:
    """Alpha-blend ``obj`` (centre/radius in pixels) into ``img``; returns the coverage map."""
    size = img.shape[0]
    g = (np.arange(size * ss) + 0.5) / ss
    u = (g[None, :] - cx) / radius
    v = (g[:, None] - cy) / radius
    m = shape_mask(obj.shape, u, v).astype(np.float32)
    alpha = m.reshape(size, ss, size, ss).mean(axis=(1, 3))
    colour = np.asarray(COLOURS[obj.colour], dtype=np.float32) + rng.normal(0, 10, size=3)
    shade = colour[None, None, :] + rng.normal(0, 6, size=(size, size, 3))
    img[:] = img * (1 - alpha[..., None]) + shade * alpha[..., None]
    return alpha


def _position_word(cx: float, cy: float, size: int) -> str:
    dx, dy = cx / size - 0.5, cy / size - 0.5
    if max(abs(dx), abs(dy)) < 0.12:
        return "center"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def render(comp: Composition, rng: np.random.Generator, size: int = 32,
           return_mask: bool = False):
    """Render ``comp`` → ``(uint8 image HxWx3, info dict)``.

    ``info`` holds ``size`` (``small``/``large``, single objects only), ``position`` (word)
    and, with ``return_mask``, ``mask`` (float coverage of all objects, ``H x W``).
    """
    img = _background(rng, size)
    info: dict = {}
    cover = np.zeros((size, size), np.float32)
    if not comp.is_pair:
        large = rng.random() < 0.5
        r = size * (rng.uniform(0.27, 0.34) if large else rng.uniform(0.15, 0.2))
        cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
        cover += _paint(img, comp.a, cx, cy, r, rng)
        info.update(size="large" if large else "small", position=_position_word(cx, cy, size))
    elif comp.relation == "inside":
        ro = size * rng.uniform(0.36, 0.42)
        ri = ro * rng.uniform(0.36, 0.42)
        cx, cy = size / 2 + rng.uniform(-2, 2, size=2)
        cover += _paint(img, comp.b, cx, cy, ro, rng)
        cover += _paint(img, comp.a, cx, cy, ri, rng)
        info.update(position="center")
    else:
        r = size * rng.uniform(0.17, 0.21)
        gap = r * rng.uniform(2.1, 2.5)
        c0 = size / 2 + rng.uniform(-2, 2, size=2)
        if comp.relation == "next to":
            first, second = (comp.a, comp.b) if rng.random() < 0.5 else (comp.b, comp.a)
            p1, p2 = (c0[0] - gap / 2, c0[1]), (c0[0] + gap / 2, c0[1])
        elif comp.relation == "above":
            first, second = comp.a, comp.b
            p1, p2 = (c0[0], c0[1] - gap / 2), (c0[0], c0[1] + gap / 2)
        else:
            raise ValueError(f"unknown relation {comp.relation!r}")
        cover += _paint(img, first, p1[0], p1[1], r, rng)
        cover += _paint(img, second, p2[0], p2[1], r, rng)
        info.update(position="center")
    out = np.clip(img, 0, 255).astype(np.uint8)
    if return_mask:
        info["mask"] = np.clip(cover, 0, 1)
    return out, info


def all_objects() -> list[Obj]:
    return [Obj(s, c) for s in SHAPES for c in COLOURS]
