"""``learn()``: inversion + fine-tuning, with outputs, run.json and resume.

The model passed in is left untouched unless ``inplace=True``; the fine-tuned model is
a deep copy in :attr:`TransferResult.model`.  So a learning-rate sweep is::

    inv = invert(model, concepts, cfg.inversion, seed=cfg.seed)
    for lr in lrs:
        res = learn(model, concepts, cfg, images=inv, overrides=[f"finetune.lr={lr}"])

Resume: finished concepts are loaded from ``images/`` (their done-markers must match
the run's fingerprint); a finished fine-tune (``.medkt/done/finetune.json``) is loaded
from ``weights/`` instead of being trained again.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from medkt.config import to_dict
from medkt.errors import ConfigError
from medkt.runs import RunRecord, atomic_write_json, prepare_output_dir, seed_everything
from medkt.transfer import augment as A
from medkt.transfer import outputs as O
from medkt.transfer.concepts import inversion_text, load_concepts
from medkt.transfer.config import TransferConfig, load_transfer_config
from medkt.transfer.finetuning import FinetuneResult, finetune
from medkt.transfer.inversion import InversionResult, invert
from medkt.transfer.state import load_finetuned


@dataclass
class TransferResult:
    """``model``: the fine-tuned model (a copy unless ``inplace``); ``inversion`` / ``finetune``:
    the stage results; ``weights_path``: saved weights (with ``out_dir``); ``record``: run.json."""

    model: object
    inversion: InversionResult
    finetune: FinetuneResult
    config: TransferConfig
    out_dir: Path | None = None
    weights_path: Path | None = None
    record: dict = field(default_factory=dict)


def noise_result(model, concepts, cfg: TransferConfig) -> InversionResult:
    """Noise control: the inversion's starting noise (same seeds, shapes), not optimised."""
    inv = cfg.inversion
    n = inv.images_per_concept
    seeds = [A.image_seed(cfg.seed, c.name, k) for c in concepts for k in range(n)]
    imgs = A.noise_images(len(seeds), model.in_channels, model.image_size, seeds)
    return InversionResult(images=imgs.to(model.device), concept_names=[c.name for c in concepts for _ in range(n)],
                           captions=[inversion_text(c, inv.caption, k) for c in concepts for k in range(n)],
                           concepts=list(concepts), layer=None)


def _weights_format(cfg: TransferConfig) -> str:
    fmt = cfg.weights_format
    if fmt == "auto":
        return "lora" if cfg.finetune.lora.enabled else "delta"
    if fmt == "lora" and not cfg.finetune.lora.enabled:
        raise ConfigError("weights_format=lora needs finetune.lora.enabled=true.",
                          hint="set finetune.lora.enabled=true or weights_format=delta")
    if fmt not in ("delta", "full", "lora"):
        raise ConfigError(f"unknown weights_format '{fmt}'; use auto, delta, full or lora.")
    return fmt


def _fingerprint(model, cfg: TransferConfig, concepts) -> str:
    blob = json.dumps({"cfg": to_dict(cfg), "model": model.name, "concepts": [c.name for c in concepts]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def learn(model, concepts, config=None, out_dir=None, *, images: InversionResult | None = None,
          overrides: list[str] | None = None, inplace: bool = False, resume: bool = False,
          overwrite: bool = False, progress: bool = True) -> TransferResult:
    """See :func:`medkt.transfer.learn`."""
    cfg = load_transfer_config(config, overrides=overrides)
    cset = load_concepts(concepts)
    fmt = _weights_format(cfg)
    out = prepare_output_dir(out_dir, overwrite=overwrite, resume=resume) if out_dir is not None else None
    record = RunRecord("transfer", config=to_dict(cfg), seed=cfg.seed,
                       weights={"model": model.name, "source": getattr(model, "weights", None)})
    record.extra.update({"concept_set": cset.name, "concepts": cset.names, "model": model.describe()})
    seed_everything(cfg.seed)
    with record.timer("inversion_s"):
        if images is not None:
            inv, kind = images, "given"
        elif cfg.noise_control:
            inv, kind = noise_result(model, cset, cfg), "noise_control"
        else:
            inv, kind = invert(model, cset, cfg.inversion, seed=cfg.seed, out_dir=out, resume=resume,
                               progress=progress), "inversion"
    if out is not None and kind == "noise_control" and cfg.save_images:
        for c in cset:
            O.save_concept(out, c.slug, inv.for_concept(c.name), captions=[], layer=None,
                           info={"noise_control": True}, fingerprint="noise")
    record.extra["inversion"] = {"kind": kind, "resumed": inv.resumed, "per_concept": inv.summary(),
                                 "history": inv.history, "seconds": inv.seconds}
    target = model if inplace else copy.deepcopy(model)
    fp = _fingerprint(model, cfg, cset)
    weights_path = out / "weights" / f"finetuned-{fmt}.safetensors" if out is not None else None
    marker = O.marker_path(out, "finetune", "all") if out is not None else None
    ft = None
    if resume and marker is not None and marker.exists() and weights_path.exists():
        info = json.loads(marker.read_text())
        if info.get("fingerprint") == fp:
            load_finetuned(target, weights_path)
            ft = FinetuneResult(model=target, delta={}, trained=info.get("trained", []),
                                losses=info.get("losses", []), steps=info.get("steps", 0),
                                seconds=info.get("seconds", 0.0), config=cfg.finetune)
            record.extra["finetune_resumed"] = True
    if ft is None:
        with record.timer("finetune_s"):
            ft = finetune(target, inv, config=cfg.finetune, seed=cfg.seed, progress=progress)
        if out is not None:
            ft.save(weights_path, fmt, {"concepts": cset.names, "config": to_dict(cfg.finetune),
                                        "seed": cfg.seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
            atomic_write_json(marker, {"fingerprint": fp, "trained": ft.trained, "losses": ft.losses,
                                       "steps": ft.steps, "seconds": ft.seconds})
    record.extra["finetune"] = {**ft.summary(), "trained": ft.trained, "parts": ft.parts,
                                "weights": str(weights_path) if weights_path else None, "format": fmt}
    if out is not None:
        record.write(out)
    return TransferResult(model=target, inversion=inv, finetune=ft, config=cfg, out_dir=out,
                          weights_path=weights_path, record=record.as_dict())


def learn_many(model, concepts, config=None, *, lrs, images=None, progress=False) -> list[TransferResult]:
    """Convenience sweep: one inversion, then ``learn`` per learning rate (model untouched)."""
    cfg = load_transfer_config(config)
    cset = load_concepts(concepts)
    inv = images or invert(model, cset, cfg.inversion, seed=cfg.seed, progress=progress)
    return [learn(model, cset, cfg, images=inv, overrides=[f"finetune.lr={lr}"], progress=progress)
            for lr in lrs]

