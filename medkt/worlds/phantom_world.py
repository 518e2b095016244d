"""The phantom world: pretraining set (one finding held out) and zero-shot checks.

:data:`HELD_OUT` (``nodule``) never appears in the phantom CLIP's pretraining: no CT
image with a nodule, and the word "nodule" in no caption.  Its description uses only
words learnt elsewhere ("small round bright" from MRI lesions, "lung" from CT / CXR).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medkt.worlds.phantoms import FINDINGS, MODALITIES, phantom_set
from medkt.worlds.phantom_text import DESCRIPTIONS, MODALITY_PHRASES, NORMAL_PHRASES

HELD_OUT = "nodule"
IMAGE_SIZE = 64


@dataclass
class PhantomSet:
    images: np.ndarray  # uint8 [N, S, S]
    masks: np.ndarray  # uint8 [N, S, S]
    cases: list

    def __len__(self) -> int:
        return len(self.images)


# Findings that join pretraining only when asked for (``extra=``); they come last in the mix, so
# the other kinds keep their generator seeds (and the recipe without them its exact data).
OPTIONAL_FINDINGS = ("calcification", "marker", "atelectasis", "ggo", "granuloma")


def world_findings(modality: str, extra: tuple = ()) -> tuple[str, ...]:
    """``FINDINGS[modality]`` without the optional findings not asked for in ``extra``."""
    return tuple(f for f in FINDINGS[modality] if f not in OPTIONAL_FINDINGS or f in extra)


def pretraining_mix(held_out: str | None = HELD_OUT, extra: tuple = ()) -> list[tuple[str, str | None, int]]:
    """``(modality, finding, weight)``: each modality split evenly between normal and its findings.

    ``extra``: optional findings (:data:`OPTIONAL_FINDINGS`, e.g. CT ``calcification``) to add,
    appended after the default kinds.
    """
    from medkt.errors import UnknownNameError
    for f in extra:
        if f not in OPTIONAL_FINDINGS:
            raise UnknownNameError("optional pretraining finding", f, OPTIONAL_FINDINGS)
    mix = []
    for mod in MODALITIES:
        kinds = [None] + [f for f in world_findings(mod) if f != held_out]
        for k in kinds:
            mix.append((mod, k, 1))
    mix += [(mod, f, 1) for mod in MODALITIES for f in FINDINGS[mod] if f in extra and f != held_out]
    return mix


def phantom_pretraining_set(n_per_kind: int = 1200, seed: int = 3, held_out: str | None = HELD_OUT,
                            size: int = IMAGE_SIZE, extra: tuple = ()) -> PhantomSet:
    """Pretraining phantoms (original recipe): every (modality, finding-or-normal) kind
    except the held-out finding, unpaired."""
    ims, masks, cases = [], [], []
    for k, (mod, finding, w) in enumerate(pretraining_mix(held_out, extra)):
        n = n_per_kind * w
        i, m, c = phantom_set(mod, finding, n, seed * 1000 + k, size)
        ims.append(i)
        masks.append(m)
        cases += c
    return PhantomSet(np.concatenate(ims), np.concatenate(masks), cases)


def phantom_pair_set(n_pairs: int = 1000, seed: int = 3, held_out: str | None = HELD_OUT,
                     size: int = IMAGE_SIZE, extra: tuple = ()) -> PhantomSet:
    """Counterfactual pretraining pairs: for every seen finding, ``n_pairs`` phantoms with the
    finding, each followed by its normal twin (same anatomy, deformation and noise).

    ``extra``: optional findings to add (:func:`pretraining_mix`).

    Layout: ``images[2p]`` has the finding, ``images[2p + 1]`` is its twin (mask empty, case
    ``finding=None``); captions come from :func:`~medkt.worlds.phantom_text.pair_captions`
    on ``cases[2p]``.
    """
    from medkt.worlds.phantoms import PhantomCase, counterfactual_set
    ims, masks, cases = [], [], []
    for k, (mod, finding, _) in enumerate(pretraining_mix(held_out, extra)):
        if finding is None:
            continue
        im, tw, m, c = counterfactual_set(mod, finding, n_pairs, seed * 1000 + k, size)
        ims.append(np.stack([im, tw], 1).reshape(-1, size, size))
        masks.append(np.stack([m, np.zeros_like(m)], 1).reshape(-1, size, size))
        cases += [x for case in c for x in (case, PhantomCase(mod, None))]
    return PhantomSet(np.concatenate(ims), np.concatenate(masks), cases)


def phantom_eval_set(modality: str, finding: str | None, n: int = 24, seed: int = 777,
                     size: int = IMAGE_SIZE, distractor: str | None = None) -> PhantomSet:
    """Evaluation phantoms (seeds disjoint from pretraining).

    ``distractor``: a second finding of the same modality (e.g. CT ``marker``) added to the same
    phantoms — the images are ``finding + distractor − normal twin`` (all three share anatomy,
    deformation and noise), clipped to [0, 1]; masks and cases stay the target finding's.
    """
    eval_seed = phantom_eval_seed(modality, finding, seed)
    if distractor is None:
        return PhantomSet(*phantom_set(modality, finding, n, eval_seed, size))
    from medkt.worlds.phantoms import render_phantom
    rng = np.random.default_rng(eval_seed)
    ims, masks, cases = [], [], []
    for _ in range(n):
        other = np.random.default_rng()
        other.bit_generator.state = rng.bit_generator.state  # the same phantom, another finding
        img, mask, case, normal = render_phantom(modality, finding, rng, size, twin=True)
        extra = render_phantom(modality, distractor, other, size)[0]
        ims.append((np.clip(img + extra - normal, 0, 1) * 255).round().astype(np.uint8))
        masks.append(mask)
        cases.append(case)
    return PhantomSet(np.stack(ims), np.stack(masks), cases)


def phantom_eval_seed(modality: str, finding: str | None, seed: int = 777) -> int:
    """Generator seed of :func:`phantom_eval_set` (the same phantoms, with twins, from
    :func:`~medkt.worlds.phantoms.counterfactual_set`)."""
    kinds = [None] + list(FINDINGS[modality])
    return seed * 1000 + MODALITIES.index(modality) * 10 + kinds.index(finding)


def gray_to_rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images[..., None], 3, axis=-1) if images.ndim == 3 else images


@torch.no_grad()
def phantom_zero_shot(model, n: int = 24, seed: int = 777, extra: tuple = ()) -> dict:
    """Per modality, accuracy (%) of normal-vs-finding zero-shot classification (optional
    findings only when in ``extra``).

    Class prompts: ``"<modality phrase> with <normal phrase>"`` and
    ``"<modality phrase> showing <finding description>"``.
    """
    from medkt.worlds.evaluate import image_features, predict, text_classifier
    out = {}
    for mod in MODALITIES:
        kinds = [None] + list(world_findings(mod, extra))
        prompts = []
        for k in kinds:
            mp = MODALITY_PHRASES[mod][0]
            if k is None:
                prompts.append([f"{mp} with {p}" for p in NORMAL_PHRASES[mod]])
            else:
                prompts.append([f"{mp} showing {DESCRIPTIONS[k]}"])
        clf = text_classifier(model, prompts)
        accs = {}
        for j, k in enumerate(kinds):
            s = phantom_eval_set(mod, k, n, seed)
            pred = predict(image_features(model, gray_to_rgb(s.images)), clf)
            accs["normal" if k is None else k] = round(100.0 * float((pred == j).mean()), 1)
        out[mod] = accs
    return out
