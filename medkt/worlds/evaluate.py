"""Zero-shot evaluation on the worlds, through the :class:`VisionLanguageModel` interface.

* :func:`text_classifier` — prompt-ensemble class embeddings ``[C, D]``;
* :func:`image_features` — L2-normalised image embeddings of uint8 images
  (both from the one zero-shot classifier, :mod:`medkt.evaluation.classifier`).
* :func:`natural_zero_shot` — the three numbers of the natural world's premise: accuracy
  on known names, on novel names and on novel *descriptions* (all against the full label
  set of known + novel classes).
* :func:`caption_diagnostic` — is the fine-tuning caption's embedding nearest to the
  concept's own class prompt?  (predicts whether visual-only KT can work.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medkt.worlds.captions import class_prompts
from medkt.worlds.concepts import World


def text_classifier(model, prompts: list[list[str]]) -> torch.Tensor:
    """``prompts[c]`` = list of texts for class ``c`` → normalised class embeddings ``[C, D]``
    (:func:`medkt.evaluation.classifier.text_embeddings`, the shared zero-shot classifier)."""
    from medkt.evaluation.classifier import text_embeddings
    return text_embeddings(model, prompts)


def image_features(model, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` → normalised embeddings ``[N, D]``
    (:func:`medkt.evaluation.classifier.image_features`: the shared resize rule)."""
    from medkt.evaluation.classifier import image_features as _features
    return _features(model, images, batch_size)


def predict(feats: torch.Tensor, classifier: torch.Tensor) -> np.ndarray:
    return (feats @ classifier.t()).argmax(1).cpu().numpy()


@dataclass
class NaturalEval:
    """Images and labels reused across many evaluations (render once)."""

    world: World
    images: np.ndarray
    labels: np.ndarray  # index into world.concepts
    n_per_class: int

    @classmethod
    def build(cls, world: World, n_per_class: int = 20, n_per_novel: int | None = None, seed: int = 10_000):
        from medkt.worlds.natural import eval_set
        ims_k, lab_k = eval_set(world, list(world.known), n_per_class, seed)
        ims_n, lab_n = eval_set(world, list(world.novel), n_per_novel or n_per_class, seed)
        return cls(world, np.concatenate([ims_k, ims_n]),
                   np.concatenate([lab_k, lab_n + len(world.known)]), n_per_class)


@torch.no_grad()
def natural_zero_shot(model, ev: NaturalEval, feats: torch.Tensor | None = None,
                      classifier: torch.Tensor | None = None) -> dict:
    """Zero-shot accuracies (%) of ``model`` on the natural world.

    ``known_acc``: known-class images over all class names (known + novel);
    ``novel_name_acc[name]``: novel images classified by name;
    ``novel_desc_acc[name]``: novel images, novel classes prompted by their descriptions.
    """
    w = ev.world
    feats = image_features(model, ev.images) if feats is None else feats
    names = [c.name for c in w.concepts]
    clf = text_classifier(model, class_prompts(names)) if classifier is None else classifier
    pred = predict(feats, clf)
    nk = len(w.known)
    known_mask = ev.labels < nk
    out = {"known_acc": 100.0 * float((pred[known_mask] == ev.labels[known_mask]).mean())}
    desc = [c.name for c in w.known] + [c.description for c in w.novel]
    pred_d = predict(feats, text_classifier(model, class_prompts(desc)))
    out["novel_name_acc"], out["novel_desc_acc"] = {}, {}
    for j, c in enumerate(w.novel):
        m = ev.labels == nk + j
        out["novel_name_acc"][c.name] = 100.0 * float((pred[m] == nk + j).mean())
        out["novel_desc_acc"][c.name] = 100.0 * float((pred_d[m] == nk + j).mean())
    out["novel_name_mean"] = float(np.mean(list(out["novel_name_acc"].values())))
    out["novel_desc_mean"] = float(np.mean(list(out["novel_desc_acc"].values())))
    return out


@torch.no_grad()
def caption_diagnostic(model, world: World, concept_name: str, caption: str | None = None) -> dict:
    """Rank of the concept's own class prompt among all class prompts, seen from its KT caption.

    Returns ``{"caption", "nearest", "rank" (1 = nearest), "margin"}`` (cosine of own
    prompt minus best other).
    """
    c = world.concept(concept_name)
    caption = caption or c.kt_caption
    names = [x.name for x in world.concepts]
    clf = text_classifier(model, class_prompts(names))
    q = model.encode_texts([caption], normalize=True)[0]
    sims = (clf @ q).cpu().numpy()
    own = names.index(concept_name)
    order = np.argsort(-sims)
    others = np.delete(sims, own)
    return {"caption": caption, "nearest": names[int(order[0])],
            "rank": int(np.where(order == own)[0][0]) + 1, "margin": float(sims[own] - others.max())}


# Real rare words used as stand-in novel names for the name-binding index (never world names).
PROBE_WORDS = ("abacus sextant orrery sundial periscope metronome chronometer kaleidoscope hygrometer barometer "
               "odometer astrolabe armillary gnomon theremin ocarina harpsichord dulcimer zither sitar lute "
               "bagpipe tuba oboe piccolo marimba xylophone glockenspiel tambourine castanet kazoo balalaika "
               "mandolin ukulele").split()


@torch.no_grad()
def name_binding_index(model, world: World, words=PROBE_WORDS) -> dict:
    """How often a *fresh* name would be bound by visual-only KT, estimated from text alone.

    For every probe word ``w`` and novel description ``D``: is ``"A w is D"`` nearer to
    ``w``'s own class prompt than to every known class prompt?  Visual-only KT pulls the
    concept's images onto the caption embedding, so this is (close to) its success rate.
    Returns ``{"p_bound": fraction, "mean_margin": cosine margin, "n": pairs}``.
    """
    known = text_classifier(model, class_prompts([c.name for c in world.known]))
    own = text_classifier(model, class_prompts(list(words)))
    bound, margins = [], []
    for j, w in enumerate(words):
        caps = model.encode_texts([f"A {w} is {c.description}" for c in world.novel], normalize=True)
        m = (caps @ own[j]) - (caps @ known.t()).max(1).values
        margins += m.tolist()
        bound += (m > 0).tolist()
    return {"p_bound": float(np.mean(bound)), "mean_margin": float(np.mean(margins)), "n": len(bound)}
