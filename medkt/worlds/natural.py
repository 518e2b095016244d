"""Datasets of the natural world: pretraining scenes and evaluation sets.

* :func:`pretraining_set` draws scenes for contrastive pretraining: known-class scenes
  and random compositions, never a held-out (novel) composition or object.
* :func:`eval_set` renders ``n`` images per concept with a seed disjoint from pretraining.
* :func:`caption_for` samples one caption per scene (descriptive or, for known-class
  scenes, name-based) — called afresh every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medkt.worlds.captions import describe_scene, named_caption
from medkt.worlds.concepts import WorldClass, World, random_composition
from medkt.worlds.shapes import Composition, render


@dataclass
class SceneSet:
    """Rendered scenes: ``images`` uint8 ``[N, H, W, 3]``, per-scene composition, info and class."""

    images: np.ndarray
    compositions: list
    infos: list
    concepts: list  # WorldClass or None (unnamed composition)

    def __len__(self) -> int:
        return len(self.images)


def pretraining_set(world: World, n: int, seed: int = 1, p_class: float = 0.55) -> SceneSet:
    """``n`` pretraining scenes (deterministic in ``seed``); held-out compositions never appear."""
    rng = np.random.default_rng(seed)
    by_key = world.known_by_key()
    size = world.spec.image_size
    images = np.empty((n, size, size, 3), np.uint8)
    comps, infos, concepts = [], [], []
    for i in range(n):
        if rng.random() < p_class:
            concept = world.known[rng.integers(len(world.known))]
            comp = concept.composition
        else:
            comp = random_composition(rng)
            while not world.allowed_in_pretraining(comp):
                comp = random_composition(rng)
            concept = by_key.get(comp.key())
        img, info = render(comp, rng, size)
        images[i] = img
        comps.append(comp)
        infos.append(info)
        concepts.append(concept)
    return SceneSet(images, comps, infos, concepts)


def caption_for(scene_set: SceneSet, i: int, rng: np.random.Generator, p_named: float = 0.5,
                p_definition: float = 0.5, strong_partial: bool = False) -> str:
    """One caption for scene ``i``: name-based with probability ``p_named`` for known classes
    (definitional with probability ``p_definition``, else name-only)."""
    concept = scene_set.concepts[i]
    if concept is not None and rng.random() < p_named:
        return named_caption(concept, rng, p_definition, strong_partial)
    return describe_scene(scene_set.compositions[i], scene_set.infos[i], rng)


def render_concept(concept: WorldClass | Composition, n: int, seed: int, size: int = 32) -> np.ndarray:
    """``n`` images ``[n, H, W, 3]`` uint8 of one concept (or composition)."""
    comp = concept.composition if isinstance(concept, WorldClass) else concept
    rng = np.random.default_rng(seed)
    return np.stack([render(comp, rng, size)[0] for _ in range(n)])


def eval_set(world: World, concepts: list[WorldClass] | None = None, n_per_class: int = 20,
             seed: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation images and integer labels (index into ``concepts``, default all concepts).

    Seeds are ``seed + class index``, far from the pretraining seeds, so images are new.
    """
    concepts = list(world.concepts) if concepts is None else list(concepts)
    ims, labels = [], []
    for k, c in enumerate(concepts):
        ims.append(render_concept(c, n_per_class, seed + 7919 * (list(world.concepts).index(c) + 1),
                                  world.spec.image_size))
        labels += [k] * n_per_class
    return np.concatenate(ims), np.asarray(labels)
