"""Knowledge Transfer: teach a vision-language model a concept from its text description.

Two stages (paper §3.1): **inversion** synthesises images from noise whose image
embedding matches the description's text embedding, then **fine-tuning** aligns the
visual encoder to captions "A <name> is <description>" on those images.

The API of ``medkt transfer`` / ``medkt invert`` (same options, by keyword)::

    from medkt.transfer import run, invert
    kt = run("rare", "tiny-clip", preset="paper", lr=[1e-4, 3e-4], out="runs/kt")  # TransferRun
    kt.protocol                  # "per-concept" (paper): one fine-tune per concept and lr
    m = kt.model("Moongate", 3e-4)                       # fine-tuned copy; the base is untouched
    run("rare", "tiny-clip", joint=True, lr=3e-4)        # the whole set into one model
    inv = invert("tiny-clip", "rare", steps=200, out_dir="runs/inv")   # writes run.json too

Building blocks (any :class:`medkt.models.VisionLanguageModel`, including an in-memory
open_clip model wrapped by :func:`medkt.models.from_open_clip`)::

    cfg = load_transfer_config(preset="paper", overrides=["inversion.steps=200"])
    inv = invert(model, concepts, cfg.inversion, seed=0)    # InversionResult (model untouched)
    res = learn(model, concepts, cfg, images=inv, lr=3e-4)  # ONE fine-tune of the set (a copy)
    finetune(model, inv, cfg.finetune)                      # in place

Weights: :func:`state_of` / :func:`restore` snapshots, :func:`apply_delta`,
:func:`load_finetuned` (a file, or a run folder with ``concept=`` / ``lr=``);
:func:`list_finetuned` / :func:`find_finetuned` read a run's layout (``outputs.py``).
Zero-shot helpers: :func:`build_classifier`, :func:`predict`, :func:`evaluate`,
:func:`evaluate_transfer`.

Conventions: images are ``[N, C, H, W]`` float in [0, 1] (the model's ``normalize`` is
applied inside); parameter names are those of ``model.named_parameters()``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medkt._lazy import lazy_exports

_EXPORTS = {
    "AffineConfig": "config", "InversionConfig": "config", "FinetuneConfig": "config", "LoraConfig": "config",
    "TransferConfig": "config", "load_transfer_config": "config", "list_presets": "config",
    "Concept": "concepts", "ConceptSet": "concepts", "load_concepts": "concepts", "list_concept_sets": "concepts",
    "run": "protocol", "invert": "protocol", "TransferRun": "protocol", "Finetune": "protocol",
    "InversionResult": "inversion", "finetune": "finetuning", "FinetuneResult": "finetuning",
    "learn": "api", "TransferResult": "api",
    "state_of": "state", "restore": "state", "apply_delta": "state", "load_finetuned": "state",
    "list_finetuned": "outputs", "find_finetuned": "outputs",
    "build_classifier": "zeroshot", "predict": "zeroshot", "evaluate": "zeroshot", "evaluate_transfer": "zeroshot",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - static tools see the real names
    from medkt.transfer.api import TransferResult, learn
    from medkt.transfer.concepts import Concept, ConceptSet, list_concept_sets, load_concepts
    from medkt.transfer.config import (AffineConfig, FinetuneConfig, InversionConfig, LoraConfig, TransferConfig,
                                       list_presets, load_transfer_config)
    from medkt.transfer.finetuning import FinetuneResult, finetune
    from medkt.transfer.inversion import InversionResult
    from medkt.transfer.outputs import find_finetuned, list_finetuned
    from medkt.transfer.protocol import Finetune, TransferRun, invert, run
    from medkt.transfer.state import apply_delta, load_finetuned, restore, state_of
    from medkt.transfer.zeroshot import build_classifier, evaluate, evaluate_transfer, predict
