"""Knowledge Transfer: teach a vision-language model a concept from its text description.

Two stages (paper §3.1): **inversion** synthesises images from noise whose image
embedding matches the description's text embedding, then **fine-tuning** aligns the
visual encoder to captions "A <name> is <description>" on those images.

Public API (all work on any :class:`medkt.models.VisionLanguageModel`, including a
wrapped in-memory open_clip model from :func:`medkt.models.from_open_clip`)::

    from medkt.transfer import load_concepts, load_transfer_config, invert, finetune, learn
    concepts = load_concepts("rare")                        # shipped set, or a YAML path
    cfg = load_transfer_config(preset="paper", overrides=["inversion.steps=200"])
    inv = invert(model, concepts, cfg.inversion, seed=0)    # InversionResult (model untouched)
    res = learn(model, concepts, cfg, out_dir="runs/kt")    # TransferResult; model untouched,
    res.model                                               #   res.model is a fine-tuned copy

Learning-rate sweeps (invert once, fine-tune many times, original weights restored)::

    snap = state_of(model)                  # or rely on learn(..., inplace=False) (default)
    for lr in (1e-5, 2e-5, 5e-5):
        r = learn(model, concepts, cfg, images=inv, overrides=[f"finetune.lr={lr}"])
        ...evaluate(r.model, ...)

Zero-shot helpers: :func:`build_classifier`, :func:`predict`, :func:`evaluate`,
:func:`evaluate_transfer` (before/after, forgetting, specificity).

Conventions: images are ``[N, C, H, W]`` float in [0, 1] (the model's
``normalize`` is applied inside); parameter names are those of
``model.named_parameters()``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from medkt.transfer.config import (AffineConfig, FinetuneConfig, InversionConfig, LoraConfig,
                                   TransferConfig, list_presets, load_transfer_config)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from medkt.models.base import VisionLanguageModel
    from medkt.transfer.concepts import Concept, ConceptSet
    from medkt.transfer.inversion import InversionResult
    from medkt.transfer.finetuning import FinetuneResult
    from medkt.transfer.api import TransferResult

__all__ = [
    "AffineConfig", "InversionConfig", "FinetuneConfig", "LoraConfig", "TransferConfig",
    "load_transfer_config", "list_presets",
    "Concept", "ConceptSet", "load_concepts", "list_concept_sets",
    "invert", "InversionResult", "finetune", "FinetuneResult", "learn", "TransferResult",
    "state_of", "restore", "apply_delta", "load_finetuned",
    "build_classifier", "predict", "evaluate", "evaluate_transfer",
]


def load_concepts(source) -> "ConceptSet":
    """Load a concept set: a shipped name (``"rare"``, ``"jsrt"``, ``"chexpert"``,
    ``"segmentation"``, ``"mscoco"``), a YAML path, or a list of dicts/Concepts."""
    from medkt.transfer.concepts import load_concepts as _f
    return _f(source)


def list_concept_sets() -> list[str]:
    """Names of the concept sets shipped in ``configs/concepts/``."""
    from medkt.transfer.concepts import list_concept_sets as _f
    return _f()


def invert(model: "VisionLanguageModel", concepts, config: InversionConfig | dict | None = None, *,
           seed: int = 0, out_dir=None, resume: bool = False, progress: bool = True,
           reference_images: "torch.Tensor | None" = None) -> "InversionResult":
    """Invert ``config.images_per_concept`` images per concept, all concepts in one batch.

    Model weights are frozen during inversion and left unchanged.  Each image has its own
    seed (derived from ``seed``, concept name and index), so its result does not depend on
    which other concepts share the batch.  With ``out_dir`` the images (PNG + safetensors)
    and done-markers are written per concept; ``resume=True`` skips finished concepts.
    ``reference_images`` ([R, C, H, W] in [0, 1]) feed the relaxed-inversion style term.
    Returns :class:`InversionResult` (``images`` [N, C, H, W] in [0, 1], or tokens
    [N, T, D] for relaxed inversion, with per-image ``concept_names`` and ``captions``).
    """
    from medkt.transfer.inversion import invert as _f
    return _f(model, concepts, config, seed=seed, out_dir=out_dir, resume=resume, progress=progress,
              reference_images=reference_images)


def finetune(model: "VisionLanguageModel", images, captions: Sequence[str] | None = None,
             config: FinetuneConfig | dict | None = None, *, concept_names: Sequence[str] | None = None,
             bank: Sequence[str] = (), seed: int = 0, progress: bool = True) -> "FinetuneResult":
    """Fine-tune ``model`` **in place** on (image, caption) pairs; returns :class:`FinetuneResult`.

    ``images``: ``[N, C, H, W]`` in [0, 1], or an :class:`InversionResult` (its images,
    captions built from its concepts with ``config.caption``, and relaxed tokens handled).
    ``captions``: one per image (required for raw tensors).  ``concept_names`` (per image)
    is needed by CoCa targets and clip_bank negatives.  ``bank``: extra negative captions.
    Only ``config.train`` groups (or LoRA adapters) receive gradients; everything else is
    bitwise unchanged.  ``result.delta`` holds trained-minus-original tensors.
    """
    from medkt.transfer.finetuning import finetune as _f
    return _f(model, images, captions, config, concept_names=concept_names, bank=bank, seed=seed,
              progress=progress)


def learn(model: "VisionLanguageModel", concepts, config: TransferConfig | dict | str | None = None,
          out_dir=None, *, images: "InversionResult | None" = None, overrides: list[str] | None = None,
          inplace: bool = False, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> "TransferResult":
    """Invert + fine-tune.  By default ``model`` is left untouched and ``result.model`` is a
    fine-tuned deep copy (``inplace=True`` trains ``model`` itself).  ``images`` reuses an
    earlier inversion (sweeps).  With ``out_dir``: images, weights (safetensors) and
    ``run.json`` are written atomically; ``resume=True`` continues an interrupted run.
    """
    from medkt.transfer.api import learn as _f
    return _f(model, concepts, config, out_dir, images=images, overrides=overrides, inplace=inplace,
              resume=resume, overwrite=overwrite, progress=progress)


def state_of(model, groups: Sequence[str] = ("all",)) -> dict:
    """Cloned ``{name: tensor}`` of the parameters in ``groups`` (restore with :func:`restore`)."""
    from medkt.transfer.state import state_of as _f
    return _f(model, groups)


def restore(model, snapshot: dict) -> None:
    """Copy a :func:`state_of` snapshot back into ``model`` (in place, no graph)."""
    from medkt.transfer.state import restore as _f
    _f(model, snapshot)


def apply_delta(model, delta: dict, scale: float = 1.0) -> None:
    """Add ``scale * delta[name]`` to the named parameters of ``model`` (in place)."""
    from medkt.transfer.state import apply_delta as _f
    _f(model, delta, scale)


def load_finetuned(model, path) -> dict:
    """Apply saved fine-tuned weights (delta, LoRA adapter or full; a file or a run folder)
    to ``model`` in place; returns the file's metadata."""
    from medkt.transfer.state import load_finetuned as _f
    return _f(model, path)


def build_classifier(model, classnames: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",)
                     ) -> "torch.Tensor":
    """Zero-shot weights ``[D, C]``: per class the mean of normalised template embeddings, renormalised."""
    from medkt.transfer.zeroshot import build_classifier as _f
    return _f(model, classnames, templates)


def predict(model, images, classifier: "torch.Tensor", batch_size: int = 64) -> "torch.Tensor":
    """Logits ``[N, C]`` for images ``[N, C, H, W]`` in [0, 1] (any size; resized to the model)."""
    from medkt.transfer.zeroshot import predict as _f
    return _f(model, images, classifier, batch_size)


def evaluate(model, data, classnames: Sequence[str] | None = None, **kw) -> dict:
    """Zero-shot accuracy on a folder-per-class image set (or ``(images, labels)``); see zeroshot.py."""
    from medkt.transfer.zeroshot import evaluate as _f
    return _f(model, data, classnames, **kw)


def evaluate_transfer(before, after, concepts, *, target, reference=None, ood=None, **kw) -> dict:
    """Before/after report: target accuracy, reference accuracy (forgetting), specificity."""
    from medkt.transfer.zeroshot import evaluate_transfer as _f
    return _f(before, after, concepts, target=target, reference=reference, ood=ood, **kw)


def __getattr__(name):  # lazy access to the result/concept classes
    table = {"Concept": "concepts", "ConceptSet": "concepts", "InversionResult": "inversion",
             "FinetuneResult": "finetuning", "TransferResult": "api"}
    if name in table:
        import importlib
        return getattr(importlib.import_module(f"medkt.transfer.{table[name]}"), name)
    raise AttributeError(f"module 'medkt.transfer' has no attribute '{name}'")
