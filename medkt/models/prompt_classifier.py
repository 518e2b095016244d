"""Zero-shot classification with several prompts per class, for any CONTRASTIVE medkt model.

:class:`PromptClassifier` encodes each image **once**; a class's score is the ``max``
(MedCLIP's default) or ``mean`` (MedCLIP ``ensemble=True``) of that class's
``logit_scale · cos`` similarities.  Prompt sets: e.g.
:func:`medkt.prompts.chexpert.generate_chexpert_class_prompts`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from medkt.errors import ConfigError


class PromptClassifier:
    """Zero-shot classifier over ``{class: [prompts]}`` for any CONTRASTIVE medkt model.

    ``ensemble``: ``"max"`` (MedCLIP's default) or ``"mean"`` (MedCLIP ``ensemble=True``).
    ``__call__(pixels [B, C, S, S] normalised)`` → ``logits [B, n_classes]`` in the order of
    :attr:`class_names`.  Prompt embeddings are computed once at construction; each class's
    prompts are tokenised together (MedCLIP pads per class).
    """

    def __init__(self, model, class_prompts: Mapping[str, Sequence[str]], ensemble: str = "max"):
        if ensemble not in ("max", "mean"):
            raise ConfigError(f"unknown prompt ensemble '{ensemble}'; use 'max' or 'mean'.")
        if not class_prompts or any(len(p) == 0 for p in class_prompts.values()):
            raise ConfigError("every class needs at least one prompt.")
        self.model = model
        self.ensemble = ensemble
        self.class_names = list(class_prompts)
        with torch.no_grad():
            self.text_embeddings = [model.encode_texts(list(class_prompts[c])) for c in self.class_names]

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        img = self.model.encode_image(pixels)  # [B, D], once
        scale = self.model.logit_scale
        scores = []
        for txt in self.text_embeddings:
            sim = scale * img @ txt.to(img.device).T  # [B, P]
            scores.append(sim.max(dim=1).values if self.ensemble == "max" else sim.mean(dim=1))
        return torch.stack(scores, dim=1)

    def predict(self, pixels: torch.Tensor) -> list[str]:
        return [self.class_names[i] for i in self(pixels).argmax(dim=1).tolist()]
