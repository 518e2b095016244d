"""Train ``phantom-sam``: a small SAM-architecture promptable segmenter on phantom findings.

The model is segment_anything's ``Sam`` (ViT image encoder, prompt encoder, two-way
mask decoder) at 256 px input with a 3-block encoder (:data:`PHANTOM_SAM_ARCH`), wrapped
in :class:`medkt.models.sam.SamModel`, so the segmentation pipeline uses it exactly like
SAM ViT-H.  Training is class-agnostic: the targets are the findings *and* the normal
anatomy (lungs, heart, body, brain, ventricles, skin...), so the segmenter learns to
segment whatever object a prompt designates — a box around the whole chest gives the
body, not the nodule.  Each target gets either a slightly jittered box or a few
positive / negative points.  Loss: BCE + Dice on the low-resolution logits (64 x 64 = the phantom grid) plus
MSE of the IoU head.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medkt.models.world_models import (PHANTOM_SAM_ARCH, build_phantom_sam, export_sam,  # noqa: F401
                                       load_phantom_sam)

@dataclass
class SamTrainConfig:
    """Recipe of the shipped ``phantom-sam``."""

    steps: int = 2500
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    p_box: float = 0.6
    box_jitter: float = 0.12  # max enlargement/shift as a fraction of the box size
    p_finding: float = 0.5  # share of prompts on the finding (else a random anatomical structure)
    seed: int = 0
    threads: int = 1
    log_every: int = 50


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def sample_prompt(mask: np.ndarray, rng: np.random.Generator, cfg: SamTrainConfig) -> dict:
    """A training prompt for ``mask``: ``{"box": [4]}`` or ``{"points": [P, 2], "labels": [P]}``."""
    h, w = mask.shape
    if rng.random() < cfg.p_box:
        b = box_from_mask(mask)
        bw, bh = b[2] - b[0], b[3] - b[1]
        grow = rng.uniform(0, cfg.box_jitter, 4) * np.array([bw, bh, bw, bh]) + rng.uniform(0, 1.5, 4)
        shift = rng.uniform(-0.1, 0.1, 2) * np.array([bw, bh])
        b = b + np.array([-grow[0], -grow[1], grow[2], grow[3]]) + np.r_[shift, shift]
        return {"box": np.clip(b, 0, [w, h, w, h]).astype(np.float32)}
    ys, xs = np.nonzero(mask)
    npos = int(rng.integers(1, 4))
    idx = rng.integers(len(xs), size=npos)
    pts = [[xs[i] + 0.5, ys[i] + 0.5] for i in idx]
    labels = [1] * npos
    bys, bxs = np.nonzero(mask == 0)
    for _ in range(int(rng.integers(0, 3))):
        j = rng.integers(len(bxs))
        pts.append([bxs[j] + 0.5, bys[j] + 0.5])
        labels.append(0)
    return {"points": np.asarray(pts, np.float32), "labels": np.asarray(labels, np.int64)}


def decode_prompt(model, emb: torch.Tensor, prompt: dict, prep) -> tuple[torch.Tensor, torch.Tensor]:
    if "box" in prompt:
        return model.decode(emb, boxes=model.transform_boxes(prompt["box"][None], prep), multimask=False)
    pts = model.transform_points(prompt["points"][None], prep)
    return model.decode(emb, points=pts, point_labels=torch.as_tensor(prompt["labels"][None]), multimask=False)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def train_phantom_sam(images: np.ndarray, masks: np.ndarray, cfg: SamTrainConfig,
                      log_fn: Callable[[str], None] = print, parts: list[list[np.ndarray]] | None = None):
    """Train on ``images`` (uint8 ``[N, S, S]``), finding ``masks`` (``[N, S, S]``, may be empty) and
    ``parts[i]`` (anatomy masks of image ``i``); returns model, history."""
    torch.set_num_threads(cfg.threads)
    model = build_phantom_sam(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.sam.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * s / cfg.steps)))
    model.sam.train()
    history, run, t0 = [], np.zeros(3), time.time()
    for step in range(cfg.steps):
        idx = rng.integers(len(images), size=cfg.batch_size)
        preps = [model.prepare_image(images[i]) for i in idx]
        emb = model.embed(torch.cat([p.pixels for p in preps]))
        losses = []
        for j, i in enumerate(idx):
            target = masks[i]
            if parts is not None and (target.sum() == 0 or rng.random() >= cfg.p_finding):
                target = parts[i][rng.integers(len(parts[i]))]
            prompt = sample_prompt(target, rng, cfg)
            low, iou = decode_prompt(model, emb[j:j + 1], prompt, preps[j])
            logits = model.upscale(low, preps[j])[:, 0]  # [1, H, W] at the phantom size
            gt = torch.from_numpy(target[None].astype(np.float32))
            bce = F.binary_cross_entropy_with_logits(logits, gt)
            dl = dice_loss(logits, gt)
            with torch.no_grad():
                pred = logits > 0
                inter = (pred & (gt > 0)).sum().float()
                true_iou = inter / ((pred | (gt > 0)).sum().float() + 1e-6)
            losses.append((bce, dl, F.mse_loss(iou[0, 0], true_iou)))
        bce, dl, il = (torch.stack(x).mean() for x in zip(*losses))
        loss = bce + dl + il
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run += [bce.item(), dl.item(), il.item()]
        if (step + 1) % cfg.log_every == 0:
            r = run / cfg.log_every
            log_fn(f"step {step + 1}/{cfg.steps} bce {r[0]:.4f} dice-loss {r[1]:.4f} iou-mse {r[2]:.4f} "
                   f"{time.time() - t0:.0f}s")
            history.append({"step": step + 1, "bce": r[0], "dice_loss": r[1], "iou_mse": r[2]})
            run[:] = 0
    model.sam.eval()
    return model, history


@torch.no_grad()
def box_dice(model, images: np.ndarray, masks: np.ndarray) -> float:
    """Mean Dice of ``model`` prompted with each mask's tight box (an upper bound for the pipeline)."""
    scores = []
    for im, m in zip(images, masks):
        prep = model.prepare_image(im)
        low, _ = model.decode(model.embed(prep.pixels), boxes=model.transform_boxes(box_from_mask(m)[None], prep))
        pred = (model.upscale(low, prep)[0, 0] > 0).numpy()
        scores.append(2 * (pred & (m > 0)).sum() / max(pred.sum() + (m > 0).sum(), 1))
    return float(np.mean(scores))
