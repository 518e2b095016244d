"""``medkt.refine(...)`` — the Python API behind ``medkt refine``: train a MONAI 2-D network on
``medkt segment``'s pseudo-labels (MedCLIP-SAMv2's weakly supervised stage).

Loop (MONAI style): ``CacheDataset`` of all slices (``Resized`` cached, ``RandAffined`` per
draw) → ``monai.data.DataLoader`` (shuffled by a generator seeded with ``seed + epoch``, which
also seeds the random transforms) → network → loss → Adam step → cosine learning rate per step.
Loss: pixel-weighted binary cross-entropy + MONAI ``DiceLoss`` over the pixels whose weight is
not 0 (weights from :func:`medkt.refinement.data.confidence`).  Every ``checkpoint_every`` epochs
``checkpoint.pt`` (weights, optimiser, scheduler, history) is replaced atomically; ``resume=True``
continues from it and, because each epoch is seeded by its number, ends with the same weights as
an uninterrupted run (deterministic CPU kernels, same thread count).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from medkt.errors import InputError, MedktError, ResumeMismatchError
from medkt.refinement.config import RefineConfig, load_refine_config

log = logging.getLogger("medkt.refine")

CHECKPOINT = "checkpoint.pt"


@dataclass
class RefineResult:
    """What :func:`refine` returns: the model folder, per-epoch ``history`` (loss, lr, seconds, val
    DSC), ``validation`` (pseudo-label vs refined DSC per case, with ``val_gt``), the cases used and
    the ones that failed, and the ``record`` written as ``run.json``."""

    model_dir: Path | None
    history: list[dict] = field(default_factory=list)
    validation: dict = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    n_slices: int = 0
    record: dict = field(default_factory=dict)
    nnunet: dict | None = None

    def refiner(self):
        from medkt.refinement.model import Refiner
        return Refiner.load(self.model_dir)


# ----------------------------------------------------------------------------- data
def load_training_data(images, pseudo_masks, cfg: RefineConfig, *, max_voxels: int | None = None):
    """Read every case with a pseudo-label → ``(samples, volumes, failures)``.

    ``samples``: per-slice dicts (:func:`medkt.refinement.data.case_slices`); ``volumes``:
    ``{case_id: (ImageVolume, label array)}``; ``failures``: ``[{"case_id", "reason"}]`` for cases
    without a pseudo-label or that cannot be read (the others go on)."""
    from medkt import io as mio
    from medkt.refinement.data import _read_array, case_slices, paired_cases
    pairs, failures, orphans = paired_cases(images, pseudo_masks, max_voxels)
    samples, volumes = [], {}
    for case, lf in pairs:
        try:
            vol = mio.read_case(case)
            lab = _read_array(lf.mask)
            sal = _read_array(lf.saliency) if lf.saliency is not None and cfg.labels.confidence != "none" else None
            samples += case_slices(vol, lab, sal, cfg, case.case_id, lf.mask)
            volumes[case.case_id] = (vol, lab)
        except MedktError as e:
            failures.append({"case_id": case.case_id, "reason": " ".join(e.format().split())})
            log.warning("case %s skipped: %s", case.case_id, e.message)
    for cid in orphans:
        failures.append({"case_id": cid, "reason": "pseudo-label without an image"})
    if not samples:
        raise InputError("no training slices: no image could be paired with a pseudo-label.", path=str(images),
                         hint="pass the images `medkt segment` read and its output folder; "
                              + "; ".join(f"{f['case_id']}: {f['reason']}" for f in failures[:3]))
    return samples, volumes, failures


# ----------------------------------------------------------------------------- loss
def make_loss(name: str = "bce+dice"):
    """``loss(logits, label, weight)``: weighted BCE, plus (``bce+dice``) MONAI DiceLoss on the
    pixels with weight > 0 (``train.loss``)."""
    import torch
    import torch.nn.functional as F
    from monai.losses import DiceLoss
    dice = DiceLoss(sigmoid=False, batch=True)

    def loss(logits, label, weight):
        bce = F.binary_cross_entropy_with_logits(logits, label, weight=weight, reduction="sum")
        bce = bce / weight.sum().clamp_min(1.0)
        if name == "bce":
            return bce
        valid = (weight > 0).float()
        return bce + dice(torch.sigmoid(logits) * valid, label * valid)
    return loss


# ----------------------------------------------------------------------------- training
def _checkpoint_state(net, opt, sched, epoch: int, history: list, cfg_dict: dict, keeper) -> dict:
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch, "history": history, "config": cfg_dict, **keeper.state_dict()}


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    from medkt.runs import atomic_path
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _same_setup(a: dict, b: dict) -> bool:
    """Configs equal apart from ``train.epochs`` (a resumed run may train longer), ``train.threads``
    and ``predict`` (inference only)."""
    import copy
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for c in (a, b):
        c["train"].pop("epochs", None)
        c["train"].pop("threads", None)
        c.pop("predict", None)
    return a == b


def train(samples: list[dict], cfg: RefineConfig, out_dir: Path | None, *, resume: bool = False,
          progress: bool = True, on_epoch=None):
    """Train the network on ``samples``; returns ``(nets, history, info)`` (see module docstring):
    ``nets`` the kept weights, the last kept epoch first (one network, or ``train.ensemble`` of
    them), ``info`` which epochs they are (:meth:`medkt.refinement.keep.Keeper.kept`).

    ``on_epoch(epoch, net, history)`` is called after each epoch with the weights that are kept
    (the EMA's when ``train.ema`` is on) for validation and run.json; with ``train.select=val``
    it must put ``val_dsc`` in ``history[-1]`` on the epochs it validates."""
    import torch
    from monai.data import CacheDataset, DataLoader

    from medkt.config import to_dict
    from medkt.refinement.data import train_transforms
    from medkt.refinement.model import build_network
    from medkt.runs import seed_everything
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    net = build_network(cfg.network).to(cfg.train.device)
    from medkt.refinement.keep import Keeper
    keeper = Keeper(net, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    steps_per_epoch = math.ceil(len(samples) / cfg.train.batch_size)
    total = steps_per_epoch * cfg.train.epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg.train.lr * cfg.train.min_lr_ratio)
    cfg_dict, history, start = to_dict(cfg), [], 0
    ckpt = out_dir / CHECKPOINT if out_dir is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if not _same_setup(state["config"], cfg_dict):
            raise ResumeMismatchError("the checkpoint was trained with other settings.", path=ckpt,
                                      hint="resume with the same --config / --set, or pass --overwrite")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sched.T_max = total  # more epochs: the cosine stretches over the new total
        keeper.load_state_dict(state)
        start, history = int(state["epoch"]), list(state["history"])
        log.info("resuming from epoch %d (%s)", start, ckpt)
    loss_fn = make_loss(cfg.train.loss)
    ds = CacheDataset([{k: s[k] for k in ("image", "label", "weight")} for s in samples],
                      transform=train_transforms(cfg.network.image_size, cfg.train.augment), progress=False)
    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.train.epochs, initial=start, disable=not progress, desc="refine", unit="epoch")
    for epoch in range(start, cfg.train.epochs):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        loader = DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, generator=g, num_workers=0)
        net.train()
        losses = []
        for batch in loader:
            x, y, w = (batch[k].to(cfg.train.device) for k in ("image", "label", "weight"))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y, w)
            loss.backward()
            opt.step()
            sched.step()
            keeper.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": float(sched.get_last_lr()[0]),
               "seconds": round(time.perf_counter() - t0, 3)}
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch + 1, keeper.model, history)
            net.train()
        keeper.end_epoch(epoch + 1, row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", **({"val_dsc": f"{row['val_dsc']:.1f}"} if "val_dsc" in row else {}))
        bar.update(1)
        last = epoch + 1 == cfg.train.epochs
        if ckpt is not None and ((epoch + 1) % cfg.train.checkpoint_every == 0 or last):
            _save_checkpoint(ckpt, _checkpoint_state(net, opt, sched, epoch + 1, history, cfg_dict, keeper))
    bar.close()
    net.eval()
    nets, info = keeper.kept()
    return nets, history, info


def _member_name(epoch: int) -> str:
    return f"model-epoch{epoch:03d}.safetensors"


def save_refiner(net, cfg: RefineConfig, out_dir: Path, extra: dict | None = None,
                 epochs: Sequence[int] | None = None) -> None:
    """Write ``model.safetensors`` and ``refiner.json`` atomically (see :mod:`medkt.refinement.model`).

    ``net``: one network or an ensemble (list, last epoch first; ``epochs`` their epoch numbers):
    the first is ``model.safetensors``, the others ``model-epochNNN.safetensors``, all listed in
    ``refiner.json`` ``members``."""
    from safetensors.torch import save_model

    from medkt.config import to_dict
    from medkt.refinement.model import FORMAT, META, WEIGHTS
    from medkt.runs import atomic_path, atomic_write_json
    nets = list(net) if isinstance(net, (list, tuple)) else [net]
    epochs = list(epochs) if epochs is not None else list(range(len(nets)))
    members = [WEIGHTS] + [_member_name(e) for e in epochs[1:len(nets)]]
    for stale in out_dir.glob("model-epoch*.safetensors"):
        if stale.name not in members:
            stale.unlink()
    for n, name in zip(nets, members):
        with atomic_path(out_dir / name) as tmp:
            save_model(n, str(tmp))  # handles tensors shared between modules (DynUNet)
    atomic_write_json(out_dir / META, {"format": FORMAT, "version": 1, "config": to_dict(cfg),
                                       "members": members, **(extra or {})})


# ----------------------------------------------------------------------------- public API
def refine(images, pseudo_masks, output: str | Path | None = None, *, config=None,
           overrides: Sequence[str] | None = None, val_gt=None, epochs: int | None = None,
           seed: int | None = None, modality: str | None = None, window: str | None = None,
           export_nnunet: str | Path | None = None, dataset_name: str | None = None,
           resume: bool = False, overwrite: bool = False, progress: bool = True,
           max_voxels: int | None = None, val_images=None) -> RefineResult:
    """Train a refiner on pseudo-labels (``medkt refine IMAGES PSEUDO_MASKS -o MODEL_DIR``).

    Args:
        images: the images ``medkt segment`` read (a DICOM / NIfTI / 2-D image folder or file).
        pseudo_masks: its output folder (or a folder of masks named by case id).
        output: model folder (``None`` with ``export_nnunet``: export only, no training).
        config: YAML path, preset name (``configs/refine/NAME.yaml``), dict or
            :class:`~medkt.refinement.config.RefineConfig`; ``overrides``: ``["train.epochs=20", ...]``.
        val_gt: ground-truth masks (matched by case id): DSC of pseudo-labels and of the refined
            masks on those cases after each checkpoint, in ``run.json`` and the result;
            ``train.select=val`` keeps the epoch where the refined DSC is best.
        val_images: images of a held-out validation split (never trained on) that ``val_gt``
            labels; without it ``val_gt`` is matched to the training cases.
        epochs, seed, modality, window: shortcuts for the config fields.
        export_nnunet: also write the images and pseudo-labels as an nnU-Net v2 raw dataset
            there (:func:`medkt.refinement.nnunet.export_nnunet`); ``dataset_name`` e.g. ``Dataset501_Nodule``.
        resume: continue from ``MODEL_DIR/checkpoint.pt``; ``overwrite``: replace an earlier run.

    Raises:
        :class:`~medkt.errors.MedktError` subclasses for bad options or when nothing can be paired;
        single bad cases are recorded in ``failures`` and skipped.
    """
    from medkt.config import to_dict
    from medkt.runs import RunRecord, prepare_output_dir, release_output_dir
    cfg = load_refine_config(config, list(overrides or []), seed=seed, modality=modality, window=window)
    if epochs is not None:
        cfg.train.epochs = int(epochs)
        cfg.validate()
    if val_gt is None and (cfg.train.select == "val" or cfg.predict.calibrate == "val"):
        from medkt.errors import ConfigError
        raise ConfigError("train.select=val and predict.calibrate=val choose by validation DSC and need "
                          "ground truth.", hint="pass --val-gt GT (and --val-images IMAGES for a held-out "
                                                "split), or leave them at last / none")
    if val_images is not None and val_gt is None:
        raise InputError("--val-images needs --val-gt (the ground truth of those images).", path=str(val_images))
    if output is None and export_nnunet is None:
        raise InputError("nothing to do: pass an output folder (-o MODEL_DIR), --export-nnunet DIR, or both.")
    nn_info = None
    if export_nnunet is not None:
        from medkt.refinement.nnunet import export_nnunet as _export
        nn_info = _export(images, pseudo_masks, export_nnunet, cfg=cfg, dataset_name=dataset_name,
                          overwrite=overwrite, max_voxels=max_voxels)
        if output is None:
            return RefineResult(None, failures=nn_info["failures"], cases=nn_info["cases"], nnunet=nn_info)
    out = prepare_output_dir(output, [images, pseudo_masks], overwrite=overwrite, resume=resume)
    try:
        record = RunRecord("refine", config=to_dict(cfg), seed=cfg.seed)
        with record.timer("load_s"):
            samples, volumes, failures = load_training_data(images, pseudo_masks, cfg, max_voxels=max_voxels)
        record.failures = failures
        for f in failures:
            record.warn(f"case {f['case_id']} not used: {f['reason']}")
        from medkt.refinement.validation import validate, validation_cases
        gt = validation_cases(val_gt, volumes, val_images, max_voxels) if val_gt is not None else {}
        validation: dict = {}
        record.extra.update({"images": str(images), "pseudo_masks": str(pseudo_masks),
                             "val_images": str(val_images) if val_images is not None else None,
                             "val_cases": sorted(gt), "cases": sorted(volumes), "n_slices": len(samples), "nnunet_export": nn_info})

        def on_epoch(epoch, net, history):
            if gt and (epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs):
                validation.clear()
                validation.update(validate(net, gt, cfg))
                history[-1]["val_dsc"] = validation["mean"]["refined_dsc"]
                history[-1]["val_pseudo_dsc"] = validation["mean"]["pseudo_dsc"]
            if epoch % cfg.train.checkpoint_every == 0:
                record.extra["history"] = history
                record.write(out, final=False)

        with record.timer("train_s"):
            nets, history, kept = train(samples, cfg, out, resume=resume, progress=progress, on_epoch=on_epoch)
        if not gt and cfg.predict.calibrate == "val":
            log.warning("predict.calibrate=val without validation cases (no --val-gt match): threshold stays %s",
                        cfg.labels.threshold)
        if gt and cfg.predict.calibrate == "val":
            from medkt.refinement.validation import calibrate_threshold
            cfg.labels.threshold, curve = calibrate_threshold(nets, gt, cfg)
            kept.update(calibrated_threshold=cfg.labels.threshold, threshold_curve=curve)
        if gt and (len(nets) > 1 or kept["kept_epochs"] != [len(history)] or "calibrated_threshold" in kept):
            validation.clear()  # the kept model is not the last epoch's single network
            validation.update(validate(nets, gt, cfg))
        save_refiner(nets, cfg, out, {"cases": sorted(volumes), "n_slices": len(samples),
                                      "epochs_trained": len(history), **kept}, epochs=kept["kept_epochs"])
        record.extra.update({"history": history, "validation": validation, **kept})
        record.write(out)
        return RefineResult(out, history, validation, sorted(volumes), failures, len(samples), record.as_dict(),
                            nn_info)
    finally:
        release_output_dir(out)
