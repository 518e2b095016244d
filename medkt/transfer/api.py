"""``learn()``: inversion + ONE fine-tune of a concept set, with outputs, run.json and resume.

The model passed in is left untouched unless ``inplace=True``; the fine-tuned model is
a deep copy in :attr:`TransferResult.model`.  For the paper's protocol (one fine-tune per
concept) and learning-rate sweeps use :func:`medkt.transfer.run`; by hand a sweep is::

    inv = invert(model, concepts, cfg.inversion, seed=cfg.seed)
    for lr in lrs:
        res = learn(model, concepts, cfg, images=inv, lr=lr)

With ``out_dir`` the layout is that of ``medkt transfer`` (:mod:`medkt.transfer.outputs`):
``inversion/`` plus ``concepts/<slug>/lr_<tag>/`` for one concept, or ``joint/lr_<tag>/``
for several.  Resume: finished concepts are loaded from ``inversion/`` (their
done-markers must match the run's fingerprint); a finished fine-tune
(``finetune.json``) is loaded instead of being trained again.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from medkt.config import to_dict
from medkt.runs import RunRecord, prepare_output_dir, seed_everything
from medkt.transfer import augment as A
from medkt.transfer import outputs as O
from medkt.transfer.concepts import inversion_text, load_concepts
from medkt.transfer.config import TransferConfig, load_transfer_config
from medkt.transfer.finetuning import FinetuneResult, finetune
from medkt.transfer.inversion import InversionResult, invert


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


def subset_inversion(inv: InversionResult, names) -> InversionResult:
    """The images of concepts ``names`` only (same tensors, concept order of ``names``)."""
    names = [c.name for c in inv.concepts if c.name in set(names)]
    idx = [i for n in names for i, m in enumerate(inv.concept_names) if m == n]
    pick = lambda t: None if t is None else t[idx]  # noqa: E731
    return InversionResult(images=inv.images[idx], concept_names=[inv.concept_names[i] for i in idx],
                           captions=[inv.captions[i] for i in idx],
                           concepts=[c for c in inv.concepts if c.name in names], layer=inv.layer,
                           score=pick(inv.score), initial_score=pick(inv.initial_score),
                           history={n: inv.history[n] for n in names if n in inv.history},
                           seconds=inv.seconds, resumed=[n for n in inv.resumed if n in names])


def inversion_for(model, cset, cfg, *, images: InversionResult | None, inv_dir: Path | None, resume: bool,
                  progress: bool, subset: bool = False) -> tuple[InversionResult, str]:
    """The images to fine-tune on and their kind: ``images`` as given (``"given"``; only the
    concepts of ``cset`` when ``subset``), the noise control (``"noise_control"``, saved under
    ``inv_dir``), or an inversion of ``cset`` (``"inversion"``, resumable in ``inv_dir``)."""
    if images is not None:
        return (subset_inversion(images, cset.names) if subset else images), "given"
    if cfg.noise_control:
        inv = noise_result(model, cset, cfg)
        if inv_dir is not None and cfg.save_images:
            for c in cset:
                O.save_concept(inv_dir, c.slug, inv.for_concept(c.name), captions=[], layer=None,
                               info={"noise_control": True}, fingerprint="noise")
        return inv, "noise_control"
    from medkt.transfer import inversion  # looked up at call time (tests count the calls)
    return inversion.invert(model, cset, cfg.inversion, seed=cfg.seed, out_dir=inv_dir, resume=resume,
                            progress=progress), "inversion"


def learn(model, concepts, config=None, out_dir=None, *, images: InversionResult | None = None,
          overrides: list[str] | None = None, lr: float | None = None, inplace: bool = False,
          resume: bool = False, overwrite: bool = False, progress: bool = True) -> TransferResult:
    """Invert + ONE fine-tune of the whole set ``concepts`` (for the paper's per-concept
    protocol and sweeps use :func:`medkt.transfer.run`).

    By default ``model`` is left untouched and ``result.model`` is a fine-tuned deep copy
    (``inplace=True`` trains ``model`` itself).  ``images`` reuses an earlier inversion;
    ``lr`` sets ``finetune.lr``.  With ``out_dir``: the layout of ``medkt transfer``
    (inversion, weights, ``run.json``), written atomically; ``resume=True`` continues an
    interrupted run.
    """
    from medkt.transfer import protocol as P
    cfg = copy.deepcopy(load_transfer_config(config, overrides=overrides))  # never the caller's object
    if lr is not None:
        cfg.finetune.lr = float(lr)
    cset = load_concepts(concepts)
    proto = "per-concept" if len(cset) == 1 else "joint"
    out = prepare_output_dir(out_dir, overwrite=overwrite, resume=resume) if out_dir is not None else None
    digest = P.weights_digest(model)
    record = RunRecord("transfer", config=to_dict(cfg), seed=cfg.seed,
                       weights={"model": model.name, "source": getattr(model, "weights", None),
                                "weights_sha256": digest})
    record.extra.update({"protocol": proto, "concept_set": cset.name, "concepts": cset.names,
                         "lrs": [cfg.finetune.lr], "model": model.describe()})
    seed_everything(cfg.seed)
    inv_dir = O.inversion_dir(out) if out is not None else None
    with record.timer("inversion_s"):
        inv, kind = inversion_for(model, cset, cfg, images=images, inv_dir=inv_dir, resume=resume,
                                  progress=progress)
    record.extra["inversion"] = P._inversion_summary(inv, kind, inv_dir)
    target = model if inplace else copy.deepcopy(model)
    fp = P.finetune_fingerprint(model, cfg, cset.names, kind, digest)
    with record.timer("finetune_s"):
        job, ft = P.finetune_job(target, inv, cfg, lr=cfg.finetune.lr, protocol=proto, kind=kind, fingerprint=fp,
                                 out=out, resume=resume, overwrite=overwrite, progress=progress, keep_delta=False)
    if ft is None:  # resumed: the saved weights were loaded into ``target``
        s = job.summary
        ft = FinetuneResult(model=target, delta={}, trained=[], losses=[], steps=s.get("steps", 0),
                            seconds=s.get("seconds", 0.0), config=cfg.finetune)
        record.extra["finetune_resumed"] = True
    record.extra["finetune"] = {**job.summary, "trained": ft.trained, "weights": str(job.path) if job.path else None,
                                "format": job.format}
    record.extra["finetunes"] = [job.row(out)]
    if out is not None:
        record.write(out)
    return TransferResult(model=target, inversion=inv, finetune=ft, config=cfg, out_dir=out,
                          weights_path=job.path, record=record.as_dict())
