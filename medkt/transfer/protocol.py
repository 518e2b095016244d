"""``run()`` and ``invert()``: the Python API that ``medkt transfer`` / ``medkt invert`` mirror.

Both take the CLI's options by keyword (``lr`` as a number or a list), so no caller
formats ``"finetune.lr=..."`` strings::

    from medkt.transfer import run
    kt = run("rare", "clip-vit-b32", preset="paper", lr=[1e-5, 2e-5, 5e-5], out="runs/rare")
    kt.protocol                      # "per-concept": one fine-tune per concept and lr
    m = kt.model("Moongate", 2e-5)   # the base model + that fine-tune's weights (a copy)

Protocol (paper Table 1): ONE inversion of the whole set (images are independent of the
batch), then by default one fine-tune **from the original weights** per concept and lr,
each saved as its own weight delta; ``joint=True`` fine-tunes the whole set into one
model per lr.  Output layout: :mod:`medkt.transfer.outputs`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from medkt.config import to_dict
from medkt.errors import ConfigError, ResumeMismatchError
from medkt.runs import RunRecord, atomic_write_json, prepare_output_dir, seed_everything
from medkt.transfer import outputs as O
from medkt.transfer.concepts import ConceptSet, load_concepts
from medkt.transfer.config import InversionConfig, TransferConfig, load_transfer_config
from medkt.transfer.finetuning import FinetuneResult, finetune
from medkt.transfer.inversion import InversionResult, weights_digest
from medkt.transfer.state import restore, state_of

SHORTCUTS = {  # keyword -> config key (the CLI's shortcut flags)
    "seed": "seed", "steps": "inversion.steps", "images_per_concept": "inversion.images_per_concept",
    "batch_images": "inversion.batch_images", "epochs": "finetune.epochs", "batch_size": "finetune.batch_size",
    "loss": "finetune.loss", "caption": "finetune.caption", "sampling": "finetune.sampling",
    "weights_format": "weights_format",
}


# ---------------------------------------------------------------------- option resolution
def resolve_config(config=None, *, preset: str | None = None, overrides: Sequence[str] = (), lora: bool = False,
                   noise_control: bool = False, **shortcuts) -> TransferConfig:
    """A :class:`TransferConfig` from ``preset``, ``config`` (YAML path, dict or config), ``overrides``
    (``key=value``) and the CLI's shortcut keywords (``seed``, ``steps``, ``images_per_concept``,
    ``batch_images``, ``epochs``, ``batch_size``, ``loss``, ``caption``, ``sampling``, ``weights_format``;
    ``None`` = keep the config's value)."""
    unknown = sorted(set(shortcuts) - set(SHORTCUTS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}.",
                          hint="choose from: " + ", ".join(sorted(SHORTCUTS)) + ", or pass overrides=['key=value']")
    ov = list(overrides or [])
    ov += [f"{SHORTCUTS[k]}={v}" for k, v in shortcuts.items() if v is not None]
    if lora:
        ov.append("finetune.lora.enabled=true")
    if noise_control:
        ov.append("noise_control=true")
    if isinstance(config, TransferConfig):
        if preset:
            raise ConfigError("give either a TransferConfig or a preset, not both.")
        return load_transfer_config(copy.deepcopy(config), overrides=ov)
    return load_transfer_config(config, preset=preset, overrides=ov)


# A joint fine-tune's defaults (docs/transfer.md "Joint fine-tuning that keeps up"): every batch
# holds batch_size images of EVERY concept (the other concepts are real negatives of the contrastive
# loss), so a set takes as many steps as one concept alone instead of n_concepts times more.
JOINT_DEFAULTS = {"sampling": ("random", "balanced")}
JOINT_PRESET = "joint"  # the recipe of `--joint` without --preset/--config (configs/transfer/joint.yaml)
# The recipe of `medkt transfer` without --preset/--config: the paper's recipe with the caption
# ensemble (the paper's "A <name> is <description>" alternating with the zero-shot class prompt).
# Measured on the natural world (docs/transfer.md "Which recipe by default"): per-concept, seeds
# 0-2, lr chosen by --max-forgetting 2, mean target ~63 % with it against ~23 % with the paper's
# caption alone.  `--preset paper` is the paper's recipe exactly.
DEFAULT_PRESET = "name-prompts"


def joint_config(cfg: TransferConfig, explicit: Sequence[str] = ()) -> tuple[TransferConfig, dict]:
    """``cfg`` with :data:`JOINT_DEFAULTS` applied where the field still holds the per-concept
    default and was not set explicitly (``explicit``: field names such as ``"loss"``).
    Returns the config and the changes made (recorded in run.json)."""
    cfg = copy.deepcopy(cfg)
    changed = {}
    for key, (per_concept, joint) in JOINT_DEFAULTS.items():
        if key not in explicit and getattr(cfg.finetune, key) == per_concept:
            setattr(cfg.finetune, key, joint)
            changed[f"finetune.{key}"] = joint
    return cfg, changed


def _explicit(overrides: Sequence[str], **kw) -> set[str]:
    keys = {k for k, v in kw.items() if v is not None}
    keys |= {o.split("=", 1)[0].strip().split(".")[-1] for o in overrides or () if o.strip().startswith("finetune.")}
    return keys


def resolve_model(model, *, weights=None, device=None):
    """A model object as is (``weights`` must be ``None``), or a name/spec through ``create_model``."""
    if isinstance(model, (str, Path)):
        from medkt.models import create_model
        return create_model(str(model), weights=weights, device=device or "cpu")
    if weights is not None:
        raise ConfigError("weights= is for a model given by name; this model object is already loaded.")
    return model


def resolve_lrs(lr, default: float) -> list[float]:
    """``None`` → ``[default]``; a number; a list; or a string ``"1e-4,3e-4"``. Sorted, unique, > 0."""
    if lr is None:
        vals = [default]
    elif isinstance(lr, str):
        try:
            vals = [float(v) for v in lr.replace(" ", "").split(",") if v]
        except ValueError:
            raise ConfigError(f"cannot read learning rate(s) '{lr}'.",
                              hint="give numbers separated by commas, e.g. 1e-4,3e-4,5e-4") from None
    elif isinstance(lr, (int, float)):
        vals = [float(lr)]
    else:
        vals = [float(v) for v in lr]
    if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
        raise ConfigError(f"learning rates must be positive numbers, got {lr!r}.")
    return sorted(dict.fromkeys(vals))


def _concept_set(concepts, only) -> ConceptSet:
    cset = load_concepts(concepts)
    return cset.subset(list(only)) if only else cset


# ---------------------------------------------------------------------- invert
def invert(model, concepts, config=None, *, seed: int | None = None, out_dir=None, resume: bool = False,
           overwrite: bool = False, progress: bool = True, reference_images=None, preset: str | None = None,
           overrides: Sequence[str] = (), only: Sequence[str] | None = None, weights=None, device=None,
           steps: int | None = None, images_per_concept: int | None = None,
           batch_images: int | None = None) -> InversionResult:
    """Invert ``images_per_concept`` images per concept, all concepts in one batch (``medkt invert``).

    ``model``: a model object, or a name/spec (loaded with ``weights`` on ``device``).
    ``concepts``: a shipped set name, a YAML path, a list of dicts, or a ConceptSet
    (``only`` picks names).  ``config``: an :class:`InversionConfig` (or a dict of its
    fields), or a TransferConfig / YAML path / dict combined with ``preset``, ``overrides``
    (``"key=value"``) and the shortcuts ``steps``, ``images_per_concept``,
    ``batch_images``, ``seed``.  Weights are frozen during inversion and left unchanged;
    each image has its own seed, so its result does not depend on the batch.  With
    ``out_dir``: images (PNG + safetensors), done-markers and ``run.json`` are written
    (``resume`` skips finished concepts, ``overwrite`` allows a non-empty folder).
    ``reference_images`` ([R, C, H, W] in [0, 1]) feed the relaxed-inversion style term.
    Returns :class:`InversionResult` (``images`` [N, C, H, W] in [0, 1], or tokens [N, T, D]
    for relaxed inversion, with per-image ``concept_names`` and ``captions``).
    """
    from medkt.transfer.budget import applies, small_model_config, small_model_default
    from medkt.transfer.inversion import invert as _invert
    model = resolve_model(model, weights=weights, device=device)
    small = small_model_default(model) if applies(preset, config, steps, overrides) else None
    if small:
        config = small_model_config()  # no recipe given and a small model: the short recipe (budget.py)
    cset = _concept_set(concepts, only)
    if _is_inversion_config(config) and not (preset or overrides or steps or images_per_concept
                                              or batch_images is not None):
        inv_cfg, run_seed, full = config, 0 if seed is None else seed, None
    else:
        full = resolve_config(config, preset=preset, overrides=overrides, seed=seed, steps=steps,
                              images_per_concept=images_per_concept, batch_images=batch_images)
        inv_cfg, run_seed = full.inversion, full.seed
    out = prepare_output_dir(out_dir, overwrite=overwrite, resume=resume) if out_dir is not None else None
    record = RunRecord("invert", config=to_dict(full) if full else {"inversion": to_dict(inv_cfg)},
                       seed=run_seed, weights={"model": model.name, "source": getattr(model, "weights", None)})
    with record.timer("inversion_s"):
        res = _invert(model, cset, inv_cfg, seed=run_seed, out_dir=out, resume=resume, progress=progress,
                      reference_images=reference_images)
    if out is not None:
        record.extra.update({"concept_set": cset.name, "concepts": cset.names, "model": model.describe(),
                             "preset": preset, "small_model_default": small,
                             "inversion": _inversion_summary(res, "inversion", out)})
        record.write(out)
    return res


def _is_inversion_config(config) -> bool:
    """An :class:`InversionConfig` or a dict of its fields (not of a TransferConfig)."""
    from dataclasses import fields
    if isinstance(config, InversionConfig):
        return True
    return isinstance(config, dict) and bool(config) and set(config) <= {f.name for f in fields(InversionConfig)}


def _inversion_summary(inv: InversionResult, kind: str, where: Path | None) -> dict:
    return {"kind": kind, "resumed": inv.resumed, "reused_from": str(where) if inv.resumed and where else None,
            "per_concept": inv.summary(), "history": inv.history, "seconds": inv.seconds}


# ---------------------------------------------------------------------- run
@dataclass
class Finetune:
    """One fine-tune of a :class:`TransferRun`: ``concepts`` (one name per-concept, all names
    joint), ``lr``, the saved ``path`` (with an output folder), the in-memory ``delta``
    (without one), ``summary`` (steps, seconds, loss means over the first / last 10 % of
    steps) and ``resumed`` (loaded from a finished earlier run)."""

    concepts: list[str]
    lr: float
    path: Path | None = None
    delta: dict | None = None
    summary: dict = field(default_factory=dict)
    resumed: bool = False
    format: str = "delta"

    def row(self, out_dir: Path | None = None) -> dict:
        path = self.path
        if path is not None and out_dir is not None:
            path = path.relative_to(out_dir)
        return {"concepts": self.concepts, "lr": self.lr, "weights": str(path) if path else None,
                "format": self.format, "resumed": self.resumed,
                **{k: self.summary.get(k) for k in ("steps", "seconds", "loss_first", "loss_last")}}


@dataclass
class TransferRun:
    """Result of :func:`run`.  ``base_model`` is untouched; :meth:`model` builds a fine-tuned copy."""

    protocol: str
    concepts: ConceptSet
    lrs: list[float]
    config: TransferConfig
    inversion: InversionResult
    inversion_kind: str
    finetunes: list[Finetune]
    base_model: object
    out_dir: Path | None = None
    record: dict = field(default_factory=dict)

    def finetuned(self, concept: str | None = None, lr: float | None = None) -> Finetune:
        """The one fine-tune for ``concept`` (any concept of a joint run) and ``lr`` (each may be
        omitted when there is a single choice)."""
        from medkt.transfer.concepts import slugify
        fts = self.finetunes
        if concept is not None:
            fts = [f for f in fts if slugify(concept) in {slugify(c) for c in f.concepts}]
        if lr is not None:
            fts = [f for f in fts if math.isclose(f.lr, float(lr), rel_tol=1e-6)]
        if len(fts) != 1:
            raise ConfigError(f"{len(fts)} fine-tunes match concept={concept!r}, lr={lr!r}.",
                              hint=f"concepts {self.concepts.names}, lrs {self.lrs}")
        return fts[0]

    def model(self, concept: str | None = None, lr: float | None = None):
        """A copy of the base model with the chosen fine-tune applied."""
        from medkt.transfer.state import apply_delta, load_finetuned
        ft = self.finetuned(concept, lr)
        m = copy.deepcopy(self.base_model)
        if ft.delta is not None:
            apply_delta(m, ft.delta)
        else:
            load_finetuned(m, ft.path)
        return m.eval()


def finetune_fingerprint(model, cfg: TransferConfig, names: Sequence[str], kind: str,
                         weights_sha256: str | None = None) -> str:
    """Hash of what one fine-tune depends on: config (lr included), model name and weights
    (sha256 of the starting weights; ``weights_sha256`` when already computed), concepts and
    image source.  Fine-tunes made from other weights are therefore never resumed."""
    digest = weights_sha256 or weights_digest(model)
    blob = json.dumps({"cfg": to_dict(cfg), "model": model.name, "weights_sha256": digest,
                       "concepts": list(names), "images": kind}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def weights_format(cfg: TransferConfig) -> str:
    fmt = cfg.weights_format
    if fmt == "auto":
        return "lora" if cfg.finetune.lora.enabled else "delta"
    if fmt == "lora" and not cfg.finetune.lora.enabled:
        raise ConfigError("weights_format=lora needs finetune.lora.enabled=true.",
                          hint="set finetune.lora.enabled=true or weights_format=delta")
    if fmt not in ("delta", "full", "lora"):
        raise ConfigError(f"unknown weights_format '{fmt}'; use auto, delta, full or lora.")
    return fmt


def finetune_job(target, inv: InversionResult, cfg: TransferConfig, *, lr: float, protocol: str, kind: str,
                 fingerprint: str, out: Path | None, resume: bool, overwrite: bool, progress: bool,
                 keep_delta: bool, load_resumed: bool = True) -> tuple[Finetune, FinetuneResult | None]:
    """Fine-tune ``target`` in place on ``inv`` at ``lr``; save and mark it done under ``out``.

    With ``resume`` a finished fine-tune of the same fingerprint is reused instead (loaded
    into ``target`` if ``load_resumed``; the returned FinetuneResult is then ``None``).
    """
    from medkt.transfer.state import load_finetuned
    names = [c.name for c in inv.concepts]
    fmt = weights_format(cfg)
    slug = inv.concepts[0].slug if protocol == "per-concept" else None
    d = O.finetune_dir(out, lr, slug) if out is not None else None
    done = d / O.DONE if d is not None else None
    if done is not None and done.exists() and not overwrite:
        info = json.loads(done.read_text())
        if info.get("fingerprint") != fingerprint:
            raise ResumeMismatchError(f"cannot resume: the fine-tune in {d} was made with different settings "
                                      "(config, seed, model weights or concepts).", path=str(done),
                                      hint="rerun with the original model and settings, or pass --overwrite "
                                           "to redo it")
        if resume:
            path = d / info["weights"]
            if load_resumed:
                load_finetuned(target, path)
            return Finetune(names, lr, path, None, info.get("summary", {}), True, fmt), None
    ft_cfg = copy.deepcopy(cfg.finetune)
    ft_cfg.lr = float(lr)
    label = names[0] if protocol == "per-concept" else f"{len(names)} concepts"
    res = finetune(target, inv, config=ft_cfg, seed=cfg.seed, progress=progress,
                   desc=f"fine-tune {label} lr {lr:g}")
    summary = {k: v for k, v in res.summary().items() if k != "losses"}
    path = None
    if d is not None:
        path = res.save(d / f"{fmt}.safetensors", fmt,
                        {"concepts": names, "lr": repr(float(lr)), "protocol": protocol, "seed": cfg.seed,
                         "config": to_dict(ft_cfg), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        atomic_write_json(done, {"concepts": names, "lr": float(lr), "protocol": protocol, "format": fmt,
                                 "weights": path.name, "fingerprint": fingerprint, "summary": summary,
                                 "trained": res.trained, "losses": res.losses, "parts": res.parts})
    delta = {k: v for k, v in res.delta.items()} if keep_delta else None
    return Finetune(names, lr, path, delta, summary, False, fmt), res


def concept_job(base, cset: ConceptSet, *, cfg: TransferConfig, lrs: Sequence[float], protocol: str,
                images: InversionResult | None, digest: str, out: Path | None, resume: bool, overwrite: bool,
                progress: bool) -> tuple[InversionResult, str, list[Finetune], dict]:
    """One inversion of ``cset`` (or its share of ``images``, or the noise control), then its
    fine-tunes: per concept and lr from the original weights, or (``protocol="joint"``) one per lr.

    ``base`` is trained in place and restored after every fine-tune.  Returns the inversion,
    its kind (``"inversion"``, ``"given"`` or ``"noise_control"``), the fine-tunes and the
    stage seconds (``inversion_s``, ``finetune_s``).  :func:`run` calls it once for the whole
    set; ``--executor ray`` calls it once per concept on the workers.
    """
    from medkt.transfer.api import inversion_for, subset_inversion
    t0 = time.perf_counter()
    inv, kind = inversion_for(base, cset, cfg, images=images, inv_dir=O.inversion_dir(out) if out is not None else None,
                              resume=resume, progress=progress, subset=True)
    t1 = time.perf_counter()
    groups = [[c] for c in cset] if protocol == "per-concept" else [list(cset)]
    fts = []
    # every fine-tune starts from the original weights: train the base model in place and put the
    # trained groups back afterwards (exact, and no deep copy of a large model per fine-tune);
    # LoRA adds modules, so it trains a copy instead
    lora = cfg.finetune.lora.enabled
    snap = None if lora else state_of(base, cfg.finetune.train)
    try:
        for group in groups:
            sub = subset_inversion(inv, [c.name for c in group])
            for value in lrs:
                cfg_lr = copy.deepcopy(cfg)
                cfg_lr.finetune.lr = float(value)
                fp = finetune_fingerprint(base, cfg_lr, [c.name for c in group], kind, digest)
                target = copy.deepcopy(base) if lora else base
                ft, _res = finetune_job(target, sub, cfg, lr=value, protocol=protocol, kind=kind,
                                        fingerprint=fp, out=out, resume=resume, overwrite=overwrite,
                                        progress=progress, keep_delta=out is None, load_resumed=False)
                del target, _res
                if snap is not None:
                    restore(base, snap)
                fts.append(ft)
    finally:
        if snap is not None:
            restore(base, snap)
    return inv, kind, fts, {"inversion_s": t1 - t0, "finetune_s": time.perf_counter() - t1}


def run(concepts, model, *, out=None, lr=None, joint: bool = False, preset: str | None = None, config=None,
        overrides: Sequence[str] = (), only: Sequence[str] | None = None, seed: int | None = None,
        steps: int | None = None, images_per_concept: int | None = None, batch_images: int | None = None,
        epochs: int | None = None, batch_size: int | None = None, loss: str | None = None,
        caption: str | None = None, sampling: str | None = None, lora: bool = False,
        noise_control: bool = False, weights_format: str | None = None, weights=None, device=None,
        images: InversionResult | None = None, resume: bool = False, overwrite: bool = False,
        progress: bool = True, executor: str = "local", ray_address: str | None = None, workers: int = 2,
        gpus_per_worker: float = 0.0) -> TransferRun:
    """Knowledge Transfer of a concept set, as ``medkt transfer`` runs it → :class:`TransferRun`.

    One inversion of the whole set (or ``images``, or the noise control), then per lr in
    ``lr`` (a number, a list, or ``"1e-4,3e-4"``; default the config's ``finetune.lr``):
    one fine-tune from the original weights per concept (default, the paper's protocol)
    or, with ``joint=True``, one of the whole set.  ``model`` is never modified (name/spec
    or object; ``weights``/``device`` as in ``create_model``).  Config: ``preset``,
    ``config`` (YAML path, dict or TransferConfig), ``overrides`` (``"key=value"``) and the
    CLI's shortcuts (``seed``, ``steps``, ``images_per_concept``, ``batch_images``,
    ``epochs``, ``batch_size``, ``loss``, ``caption``, ``sampling``, ``lora``,
    ``noise_control``, ``weights_format``).  With ``out``: the layout of
    :mod:`medkt.transfer.outputs` and ``run.json`` (``"protocol"``, ``"lrs"``, one row per
    fine-tune); ``resume`` reuses finished inversions and fine-tunes, ``overwrite`` redoes
    them.  Without ``out`` the weight deltas stay in memory (one per fine-tune).
    ``executor="ray"`` runs each concept (its inversion and fine-tunes) on Ray actors
    (:mod:`medkt.transfer.distributed`; ``ray_address``, ``workers``, ``gpus_per_worker``).
    """
    from medkt.transfer.budget import applies, small_model_config, small_model_default
    base = resolve_model(model, weights=weights, device=device)
    small = None
    if not joint and not noise_control and images is None and applies(preset, config, steps, overrides):
        small = small_model_default(base)
    if preset is None and config is None:  # no recipe named: the measured defaults
        preset = JOINT_PRESET if joint else DEFAULT_PRESET
    if small:  # no recipe given and a small model: the short inversion (budget.py), over the preset
        config = small_model_config()
    cfg = resolve_config(config, preset=preset, overrides=overrides, lora=lora, noise_control=noise_control,
                         seed=seed, steps=steps, images_per_concept=images_per_concept, batch_images=batch_images,
                         epochs=epochs, batch_size=batch_size, loss=loss, caption=caption, sampling=sampling,
                         weights_format=weights_format)
    cset = _concept_set(concepts, only)
    lrs = resolve_lrs(lr, cfg.finetune.lr)
    protocol = "joint" if joint else "per-concept"
    joint_changes = {}
    if joint and len(cset) > 1:
        cfg, joint_changes = joint_config(cfg, _explicit(overrides, loss=loss, sampling=sampling))
    out = prepare_output_dir(out, overwrite=overwrite, resume=resume) if out is not None else None
    digest = weights_digest(base)  # the starting weights of every fine-tune (restored after each)
    record = RunRecord("transfer", config=to_dict(cfg), seed=cfg.seed,
                       weights={"model": base.name, "source": getattr(base, "weights", None),
                                "weights_sha256": digest})
    record.extra.update({"protocol": protocol, "concept_set": cset.name, "concepts": cset.names, "lrs": lrs,
                         "preset": preset, "joint_defaults": joint_changes, "small_model_default": small,
                         "model": base.describe()})
    seed_everything(cfg.seed)
    job = dict(cfg=cfg, lrs=lrs, protocol=protocol, images=images, digest=digest, out=out, resume=resume,
               overwrite=overwrite, progress=progress)
    if executor == "ray":
        from medkt.transfer.distributed import run_on_ray
        inv, kind, fts, timings = run_on_ray(model if isinstance(model, (str, Path)) else base, cset, job,
                                             weights=weights, device=device, address=ray_address, workers=workers,
                                             gpus_per_worker=gpus_per_worker)
        record.extra["executor"] = {"executor": "ray", "workers": workers, "address": ray_address}
    elif executor == "local":
        inv, kind, fts, timings = concept_job(base, cset, **job)
    else:
        raise ConfigError(f"unknown executor '{executor}'; use local or ray.")
    record.timings.update(timings)
    record.extra["inversion"] = _inversion_summary(inv, kind, O.inversion_dir(out) if out is not None else None)
    if out is not None:
        inv_rec = RunRecord("invert", config=to_dict(cfg), seed=cfg.seed, weights=record.weights)
        inv_rec.extra.update({"concept_set": cset.name, "concepts": cset.names, "model": base.describe(),
                              "inversion": record.extra["inversion"]})
        inv_rec.write(O.inversion_dir(out))
    record.extra["finetunes"] = [f.row(out) for f in fts]
    if out is not None:
        record.write(out)
    return TransferRun(protocol=protocol, concepts=cset, lrs=lrs, config=cfg, inversion=inv, inversion_kind=kind,
                       finetunes=fts, base_model=base, out_dir=out, record=record.as_dict())
