"""Templated captions for the natural world: descriptive, name-only and definitional.

:func:`describe_scene` writes a description of what is drawn (with size/position words
for single objects and relation paraphrases for pairs); :func:`named_caption` writes the
captions that bind a known name to its class (``a photo of a lemon``, ``a lemon is a
yellow circle`` or, for *partial* classes, ``a lemon is a circle``).  Prompts used at
evaluation time are the template set ``world`` of :mod:`medkt.evaluation.prompts`
(:func:`class_prompts`).
"""
from __future__ import annotations

import numpy as np

from medkt.worlds.concepts import WorldClass
from medkt.worlds.shapes import Composition, Obj, article

PREFIXES = ("", "a photo of ", "an image of ", "a picture of ")
NAME_ONLY = ("a photo of {n}", "{n}", "an image of {n}", "a picture of {n}")


def _obj(o: Obj, drop: str | None = None) -> str:
    if drop == "both":
        return "shape"
    if drop == "colour":
        return o.shape
    if drop == "shape":
        return f"{o.colour} shape"
    return o.describe()


def _pair_text(comp: Composition, rng: np.random.Generator, drop: tuple[int, str] | None = None) -> str:
    da = drop[1] if drop and drop[0] == 0 else None
    db = drop[1] if drop and drop[0] == 1 else None
    a, b = article(_obj(comp.a, da)), article(_obj(comp.b, db))
    r = rng.random()
    if comp.relation == "inside":
        return f"{a} inside {b}" if r < 0.7 else f"{b} with {a} inside"
    if comp.relation == "above":
        return f"{a} above {b}" if r < 0.7 else f"{b} below {a}"
    return f"{a} next to {b}" if r < 0.5 else f"{b} next to {a}"


def describe_scene(comp: Composition, info: dict, rng: np.random.Generator) -> str:
    """A description of a rendered scene (``info`` from :func:`medkt.worlds.shapes.render`)."""
    if comp.is_pair:
        body = _pair_text(comp, rng)
    else:
        d = comp.a.describe()
        if rng.random() < 0.4 and "size" in info:
            d = f"{info['size']} {d}"
        body = article(d)
        if rng.random() < 0.35 and "position" in info:
            pos = info["position"]
            body += " in the center" if pos == "center" else f" on the {pos}"
    return PREFIXES[rng.integers(len(PREFIXES))] + body


def partial_definition(comp: Composition, rng: np.random.Generator, strong: bool = False) -> str:
    """A definition missing one attribute (a colour or a shape); ``strong``: a pair loses a whole object."""
    what = "colour" if rng.random() < 0.5 else "shape"
    if strong and comp.is_pair:
        what = "both"
    if not comp.is_pair:
        return article(_obj(comp.a, what))
    return _pair_text(comp, rng, drop=(int(rng.integers(2)), what))


def definition(concept: WorldClass, rng: np.random.Generator, strong: bool = False) -> str:
    comp = concept.composition
    if concept.partial:
        return partial_definition(comp, rng, strong)
    return _pair_text(comp, rng) if comp.is_pair else article(comp.a.describe())


def named_caption(concept: WorldClass, rng: np.random.Generator, p_definition: float = 0.5,
                  strong_partial: bool = False) -> str:
    """A caption that uses the class name: definitional (``p_definition``) or name-only."""
    names = (concept.name,) + tuple(concept.aliases)
    n = article(names[rng.integers(len(names))] if len(names) > 1 else concept.name)
    if rng.random() < 1.0 - p_definition:
        return NAME_ONLY[rng.integers(len(NAME_ONLY))].format(n=n)
    d = definition(concept, rng, strong_partial)
    form = rng.integers(3)
    if form == 0:
        return f"{n} is {d}"
    if form == 1:
        return f"a photo of {n}, {d}"
    return f"{d}, {n}"


def class_prompts(names_or_descriptions: list[str]) -> list[list[str]]:
    """Prompt ensemble per class: ``[['a photo of a lemon', 'an image of a lemon'], ...]``.

    The world models' template set ``world`` through the shared class-prompt definition
    (:func:`medkt.evaluation.prompts.class_prompts`): items starting with an article are
    used as is (descriptions); bare names get one.
    """
    from medkt.evaluation.prompts import class_prompts as _prompts
    from medkt.evaluation.prompts import resolve_templates
    return _prompts(names_or_descriptions, resolve_templates("world"))
