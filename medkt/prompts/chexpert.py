"""CheXpert class prompts (MedCLIP's): the vocabulary and a seeded generator.

* :data:`CHEXPERT_CLASS_PROMPTS` — MedCLIP's prompt vocabulary for the five CheXpert
  competition classes (``RyanWangZf/MedCLIP`` ``constants.py``; spelling kept as published,
  e.g. "apperance", "presistent", "uppper", so prompts match the paper's).
* :func:`generate_chexpert_class_prompts` ``(n=None, seed=0)`` — every ``"{a} {b} {c}"``
  combination of a class's first three fields in their stored order (severity × subtype
  × location; for Pleural Effusion severity × location × subtype, as in MedCLIP), then a
  *seeded* sample of ``n`` (MedCLIP's ``random.sample`` was unseeded).  Empty fields leave
  double spaces, also as in MedCLIP.

Use them with :class:`medkt.models.prompt_classifier.PromptClassifier` (any contrastive model).
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

from medkt.errors import ConfigError

CHEXPERT_COMPETITION_TASKS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]

CHEXPERT_CLASS_PROMPTS: dict[str, dict[str, list[str]]] = {
    "Atelectasis": {
        "severity": ["", "mild", "minimal"],
        "subtype": ["subsegmental atelectasis", "linear atelectasis", "trace atelectasis",
                    "bibasilar atelectasis", "retrocardiac atelectasis", "bandlike atelectasis",
                    "residual atelectasis"],
        "location": ["at the mid lung zone", "at the upper lung zone", "at the right lung zone",
                     "at the left lung zone", "at the lung bases", "at the right lung base",
                     "at the left lung base", "at the bilateral lung bases", "at the left lower lobe",
                     "at the right lower lobe"],
    },
    "Cardiomegaly": {
        "severity": [""],
        "subtype": ["cardiac silhouette size is upper limits of normal", "cardiomegaly which is unchanged",
                    "mildly prominent cardiac silhouette",
                    "portable view of the chest demonstrates stable cardiomegaly",
                    "portable view of the chest demonstrates mild cardiomegaly",
                    "persistent severe cardiomegaly", "heart size is borderline enlarged",
                    "cardiomegaly unchanged", "heart size is at the upper limits of normal",
                    "redemonstration of cardiomegaly",
                    "ap erect chest radiograph demonstrates the heart size is the upper limits of normal",
                    "cardiac silhouette size is mildly enlarged",
                    "mildly enlarged cardiac silhouette, likely left ventricular enlargement. "
                    "other chambers are less prominent",
                    "heart size remains at mildly enlarged",
                    "persistent cardiomegaly with prominent upper lobe vessels"],
        "location": [""],
    },
    "Consolidation": {
        "severity": ["", "increased", "improved", "apperance of"],
        "subtype": ["bilateral consolidation", "reticular consolidation", "retrocardiac consolidation",
                    "patchy consolidation", "airspace consolidation", "partial consolidation"],
        "location": ["at the lower lung zone", "at the upper lung zone", "at the left lower lobe",
                     "at the right lower lobe", "at the left upper lobe", "at the right uppper lobe",
                     "at the right lung base", "at the left lung base"],
    },
    "Edema": {
        "severity": ["", "mild", "improvement in", "presistent", "moderate", "decreased"],
        "subtype": ["pulmonary edema", "trace interstitial edema", "pulmonary interstitial edema"],
        "location": [""],
    },
    "Pleural Effusion": {
        "severity": ["", "small", "stable", "large", "decreased", "increased"],
        "location": ["left", "right", "tiny"],
        "subtype": ["bilateral pleural effusion", "subpulmonic pleural effusion", "bilateral pleural effusion"],
    },
}


def class_prompt_combinations(table: Mapping[str, Sequence[str]]) -> list[str]:
    """All ``"{a} {b} {c}"`` strings over the first three fields of ``table`` (stored order)."""
    keys = list(table)[:3]
    if len(keys) != 3:
        raise ConfigError(f"a class prompt table needs three fields, got {keys}.")
    return [f"{a} {b} {c}" for a in table[keys[0]] for b in table[keys[1]] for c in table[keys[2]]]


def generate_chexpert_class_prompts(n: int | None = None, seed: int = 0,
                                    classes: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{class: prompts}``; ``n`` prompts per class sampled with ``random.Random(seed)``."""
    rng = random.Random(seed)
    out = {}
    for cls in classes or CHEXPERT_COMPETITION_TASKS:
        if cls not in CHEXPERT_CLASS_PROMPTS:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("CheXpert class", cls, CHEXPERT_CLASS_PROMPTS)
        prompts = class_prompt_combinations(CHEXPERT_CLASS_PROMPTS[cls])
        out[cls] = rng.sample(prompts, n) if n is not None and n < len(prompts) else prompts
    return out
