"""Radiology-style captions for the phantoms, finding descriptions and segmentation prompts.

Captions combine a modality phrase with a finding phrase (or a normal phrase), with
side / level words from the :class:`~medkt.worlds.phantoms.PhantomCase`.  The vocabulary is
shared across findings on purpose: "small round bright" is learnt from MRI lesions (and,
when the optional findings are in pretraining, from CT spots outside the lungs and, with the
CXR ``granuloma``, "small round bright spot in the lung" on radiographs), "lung" from CT and
CXR, so a held-out finding (``nodule``, never named in pretraining text) can be described
with known words — the premise of Knowledge Transfer.
"""
from __future__ import annotations

import numpy as np

from medkt.worlds.phantoms import PhantomCase

MODALITY_PHRASES = {
    "ct": ("axial chest ct", "chest ct scan", "ct of the chest"),
    "cxr": ("frontal chest x-ray", "chest radiograph", "chest x-ray"),
    "us": ("breast ultrasound", "ultrasound of the breast", "breast sonogram"),
    "mri": ("axial brain mri", "brain mri", "mri of the brain"),
}
NORMAL_PHRASES = {
    "ct": ("clear lungs", "no focal lung abnormality", "normal lungs and mediastinum"),
    "cxr": ("clear lungs", "normal lung markings", "no acute abnormality"),
    "us": ("normal fibroglandular tissue", "no focal mass", "normal breast tissue"),
    "mri": ("a normal brain", "no focal lesion", "normal ventricles and no mass"),
}
FINDING_PHRASES = {
    "nodule": ("a small round bright nodule in the {side} {level} lung",
               "a solid pulmonary nodule in the {side} lung", "a small round nodule in the lung"),
    "calcification": ("a small round bright calcification in the {level}",
                      "a small round bright spot beside the {side} lung", "a calcification in the {level}"),
    "marker": ("a small round bright skin marker on the {level} chest wall",
               "a small round bright spot outside the {side} chest wall", "a skin marker"),
    "atelectasis": ("a thin bright band of plate-like atelectasis in the {side} {level} lung",
                    "a linear bright band in the {side} lung", "plate-like atelectasis"),
    "ggo": ("a small round hazy ground-glass opacity in the {side} {level} lung",
            "a small round faint opacity in the {side} lung", "a ground-glass opacity"),
    "granuloma": ("a small round bright calcified granuloma in the {side} {level} lung",
                  "a small round bright spot in the {side} lung", "a calcified granuloma in the {side} lung"),
    "effusion": ("a {side} pleural effusion", "dependent pleural fluid at the {side} lung base",
                 "a layering pleural effusion with a meniscus"),
    "pneumothorax": ("a {side} pneumothorax", "a dark area of air without lung markings at the {side} apex",
                     "a pneumothorax with a visible pleural line and absent lung markings"),
    "mass": ("an irregular hypoechoic mass with posterior acoustic shadowing",
             "an irregular dark mass with spiculated margins", "a suspicious irregular mass with shadowing"),
    "cyst": ("a round anechoic cyst with smooth margins", "a simple cyst with posterior enhancement",
             "a round dark cyst"),
    "tumour": ("an irregular bright tumour surrounded by oedema in the {side} hemisphere",
               "a large bright mass with surrounding oedema", "a glioma with peritumoral oedema"),
    "lesion": ("a small round bright lesion in the {side} hemisphere",
               "a small bright spot in the {side} white matter", "a small round lesion"),
}
# Descriptions used for Knowledge Transfer and as zero-shot class prompts (paper Table 4 P1-P4 analogues).
DESCRIPTIONS = {
    "nodule": "a small round bright spot in the lung",
    "effusion": "dependent pleural fluid at the lung base",
    "calcification": "a small round bright spot in the chest wall or mediastinum",
    "marker": "a small round bright spot outside the chest wall",
    "atelectasis": "a thin bright band in the lung",
    "ggo": "a small round faint hazy opacity in the lung",
    "granuloma": "a small round bright calcified granuloma in the lung",
    "pneumothorax": "a dark area of air without lung markings at the apex",
    "mass": "an irregular hypoechoic mass with posterior acoustic shadowing",
    "tumour": "an irregular bright tumour surrounded by oedema",
    "cyst": "a round anechoic cyst with smooth margins",
    "lesion": "a small round bright lesion",
}
# Segmentation prompts of the four seen target findings (phantoms.TARGET_FINDING).
SEGMENT_PROMPTS = {
    "ct": "a chest ct showing a pleural effusion, dependent fluid at the lung base",
    "cxr": "a chest x-ray showing a pneumothorax, a dark area of air without lung markings",
    "us": "a breast ultrasound showing an irregular hypoechoic mass with posterior acoustic shadowing",
    "mri": "a brain mri showing an irregular bright tumour surrounded by oedema",
}


def phantom_caption(case: PhantomCase, rng: np.random.Generator) -> str:
    """One radiology-style caption for ``case`` (normal or abnormal)."""
    mod = MODALITY_PHRASES[case.modality][rng.integers(3)]
    if case.finding is None:
        r = rng.integers(3)
        normal = NORMAL_PHRASES[case.modality][rng.integers(3)]
        return (f"{mod} with {normal}", f"normal {mod}", f"{mod}: {normal}")[r]
    phrase = FINDING_PHRASES[case.finding][rng.integers(3)]
    phrase = phrase.format(side=case.side or "right", level=case.level or "upper")
    r = rng.integers(3)
    return (f"{mod} showing {phrase}", f"{phrase} on {mod}", f"{mod}: {phrase}")[r]


def pair_captions(case: PhantomCase, rng: np.random.Generator) -> tuple[str, str]:
    """Captions of a counterfactual pair (``case`` and its normal twin) that differ only in
    the finding phrase: same modality phrase, same template."""
    mod = MODALITY_PHRASES[case.modality][rng.integers(3)]
    phrase = FINDING_PHRASES[case.finding][rng.integers(3)].format(side=case.side or "right",
                                                                   level=case.level or "upper")
    normal = NORMAL_PHRASES[case.modality][rng.integers(3)]
    template = ("{m} showing {p}", "{p} on {m}", "{m}: {p}")[rng.integers(3)]
    return template.format(m=mod, p=phrase), template.format(m=mod, p=normal)


def used_words(texts) -> set[str]:
    return {w.strip(",.:").lower() for t in texts for w in t.split()}

# The held-out finding's segmentation prompts (Table 4 in miniature: before / after KT).  The
# name prompt is the paper-faithful one for "KT teaches the name": it holds no description word,
# so the baseline cannot find the nodule through them.  The description prompt shows what the
# description alone does without KT.
HELD_OUT_PROMPT = "a chest ct showing a small round bright nodule in the lung"
HELD_OUT_NAME_PROMPT = "a chest ct showing a nodule in the lung"
HELD_OUT_PROMPTS = {"description": HELD_OUT_PROMPT, "name": HELD_OUT_NAME_PROMPT}
