"""The zero-shot classifier: one implementation for ``medkt zeroshot``, ``medkt bench`` and the worlds.

* :func:`prepare_images` — images → normalised model input ``[N, C, S, S]``.  One resize
  rule for every caller: centre crop to the model's square input (bicubic, antialiased;
  for square images this is a plain resize), skipped when the size already matches.
* :func:`image_features` — L2-normalised image embeddings ``[N, D]``.
* :func:`text_embeddings` — per class, the mean of its prompts' normalised embeddings,
  renormalised (CLIP's prompt ensembling): ``[C, D]``.
* :class:`ZeroShotClassifier` — class names + templates → class embeddings (dual
  encoders) or the class prompts (ITM-only models such as ViLT, scored with the match
  head, averaged over templates: the paper's "every possible image-caption pair").
  ``scores`` are cosine similarities (or ITM logits) ``[N, C]``; ``predict`` their argmax.

Accepted images: a uint8 array ``[N, H, W]`` / ``[N, H, W, C]`` (0-255), a float tensor
``[N, C, H, W]`` in [0, 1], or a list of single images (PIL, arrays, ``[C, H, W]`` tensors;
sizes may differ).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medkt.evaluation.prompts import class_prompts, templates_for
from medkt.models.base import CONTRASTIVE, ITM, image_to_unit_tensor, resize_to_square, to_device

RESIZE_MODE = "center_crop"


def _unit_batch(images) -> torch.Tensor | list[torch.Tensor]:
    """Images → float ``[N, C, H, W]`` in [0, 1] (or a list of ``[C, H, W]`` when sizes differ)."""
    if torch.is_tensor(images):
        x = images.float()
        return x[:, None] if x.ndim == 3 else x
    if isinstance(images, np.ndarray) and images.ndim >= 3 and images.dtype != object:
        x = torch.from_numpy(np.ascontiguousarray(images))
        scale = float(np.iinfo(images.dtype).max) if np.issubdtype(images.dtype, np.integer) else 1.0
        x = x.float() / scale if scale != 1.0 else x.float()
        return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return [image_to_unit_tensor(im) for im in images]


def prepare_images(model, images, mode: str = RESIZE_MODE) -> torch.Tensor:
    """Images (see module doc) → normalised ``[N, C, S, S]`` on the model's device."""
    x = _unit_batch(images)
    s = model.image_size
    if isinstance(x, list):
        x = [im if tuple(im.shape[-2:]) == (s, s) else resize_to_square(im[None], s, mode)[0] for im in x]
        c = model.in_channels  # greyscale and colour images may share a batch: grey is repeated to c
        x = [im.expand(c, -1, -1) if im.shape[0] == 1 and c > 1 else im for im in x]
        x = torch.stack(x) if x else torch.empty(0, c, s, s)
    elif tuple(x.shape[-2:]) != (s, s):
        x = resize_to_square(x, s, mode)
    return model.normalize(x.to(model.device))


@torch.no_grad()
def image_features(model, images, batch_size: int = 256, mode: str = RESIZE_MODE) -> torch.Tensor:
    """Normalised image embeddings ``[N, D]`` (float32, on the model's device)."""
    was = model.training
    model.eval()
    feats = []
    try:
        n = len(images)
        for i in range(0, n, batch_size):
            x = prepare_images(model, images[i:i + batch_size], mode)
            feats.append(model.encode_image(x, normalize=True).float())
    finally:
        model.train(was)
    return torch.cat(feats) if feats else torch.empty(0, 0)


@torch.no_grad()
def text_embeddings(model, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """``prompts[c]`` = the texts of class ``c`` → normalised class embeddings ``[C, D]``."""
    model.require(CONTRASTIVE)
    flat = [t for ps in prompts for t in ps]
    emb = model.encode_texts(flat, normalize=True).float()
    out, k = [], 0
    for ps in prompts:
        out.append(F.normalize(emb[k:k + len(ps)].mean(0), dim=-1))
        k += len(ps)
    return torch.stack(out)


def itm_scores(model, pixels: torch.Tensor, texts: Sequence[str], batch: int = 64) -> torch.Tensor:
    """ITM logits ``[B, T]`` of every (preprocessed) image against every text, pairs in chunks."""
    b, t = pixels.shape[0], len(texts)
    out = torch.empty(b, t)
    tokens = model.tokenize(list(texts))
    pairs = [(i, j) for i in range(b) for j in range(t)]
    with torch.no_grad():
        for s in range(0, len(pairs), batch):
            chunk = pairs[s:s + batch]
            ii = torch.tensor([p[0] for p in chunk])
            jj = torch.tensor([p[1] for p in chunk])
            tok = {k: (v[jj] if torch.is_tensor(v) else v) for k, v in tokens.items()}
            scores = model.match_score(pixels[ii.to(pixels.device)], to_device(tok, model.device))
            out[ii, jj] = scores.float().cpu()
    return out


@dataclass
class ZeroShotClassifier:
    """Zero-shot classifier over ``classnames`` (build with :meth:`build`).

    ``prompts[c]``: class ``c``'s prompts (one per template); ``weights``: ``[C, D]``
    normalised class embeddings (``None`` for the ITM scorer); ``templates_label``: how
    the templates were chosen (printed with results).
    """

    classnames: list[str]
    prompts: list[list[str]]
    scorer: str  # "similarity" | "itm"
    weights: torch.Tensor | None = None
    templates: list[str] = field(default_factory=list)
    templates_label: str = ""
    itm_batch: int = 64

    @classmethod
    def build(cls, model, classnames: Sequence[str], templates: str | Sequence[str] | None = None, *,
              prompts: Sequence[Sequence[str]] | None = None, scorer: str = "auto") -> "ZeroShotClassifier":
        """From class names + templates (default: the model's own, see ``prompts.default_template_set``),
        or from explicit per-class ``prompts``.  ``scorer``: ``auto`` | ``similarity`` | ``itm``."""
        scorer = scorer_for(model, scorer)
        if prompts is None:
            label, tpl = templates_for(model, templates)
            prompts = class_prompts(classnames, tpl)
        else:
            label, tpl = "explicit prompts", []
        prompts = [list(p) for p in prompts]
        weights = text_embeddings(model, prompts) if scorer == "similarity" else None
        return cls(list(classnames), prompts, scorer, weights, list(tpl), label)

    def scores_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``[N, C]`` of normalised image features ``[N, D]``."""
        return (feats.float() @ self.weights.to(feats.device).t()).cpu()

    @torch.no_grad()
    def scores(self, model, images, batch_size: int = 256) -> torch.Tensor:
        """``[N, C]`` cosine similarities (or ITM logits averaged over each class's prompts)."""
        if self.scorer == "similarity":
            return self.scores_from_features(image_features(model, images, batch_size))
        was = model.training
        model.eval()
        flat = [p for ps in self.prompts for p in ps]
        sizes = [len(ps) for ps in self.prompts]
        out = []
        try:
            for i in range(0, len(images), batch_size):
                s = itm_scores(model, prepare_images(model, images[i:i + batch_size]), flat, self.itm_batch)
                out.append(torch.stack([c.mean(1) for c in s.split(sizes, dim=1)], dim=1))
        finally:
            model.train(was)
        return torch.cat(out) if out else torch.empty(0, len(self.classnames))

    def predict(self, model, images, batch_size: int = 256) -> torch.Tensor:
        """Predicted class index per image ``[N]`` (long)."""
        return self.scores(model, images, batch_size).argmax(1)


def scorer_for(model, requested: str = "auto") -> str:
    """``similarity`` for dual encoders, ``itm`` for match-score models (``auto`` picks)."""
    if requested == "auto":
        return "similarity" if model.supports(CONTRASTIVE) else "itm"
    model.require(CONTRASTIVE if requested == "similarity" else ITM)
    return requested


def build_classifier(model, classnames: Sequence[str], templates: str | Sequence[str] | None = None,
                     **kw) -> ZeroShotClassifier:
    """Shorthand for :meth:`ZeroShotClassifier.build`."""
    return ZeroShotClassifier.build(model, classnames, templates, **kw)
