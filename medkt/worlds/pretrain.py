"""Contrastive pretraining of small open_clip CLIPs on a synthetic world, and compact export.

* :func:`create_world_clip` builds the open_clip architecture (a JSON in
  ``medkt/assets/model_configs``) and re-initialises the token embedding from a seeded
  generator, so every row that pretraining never touches can be regenerated exactly.
* :func:`pretrain` runs CLIP's symmetric InfoNCE with *multi-positive* targets (pairs with
  identical captions count as positives), AdamW with warm-up + cosine decay, no weight
  decay on embeddings, norms, biases and the temperature.  Deterministic on CPU.
* :func:`export_compact` / :func:`load_compact` write and read fp16 safetensors that hold
  every parameter except the untouched token-embedding rows (a few MB instead of the
  49408-row vocabulary).
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medkt.models.world_models import (EMBED_STD, create_world_clip, export_compact,  # noqa: F401 (re-exported)
                                       initial_token_embedding, load_compact, world_tokenizer)

log = logging.getLogger("medkt.worlds")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class PretrainConfig:
    """Hyper-parameters of world pretraining (defaults = the shipped ``world-clip`` recipe)."""

    arch: str = "world-clip"
    steps: int = 2500
    batch_size: int = 192
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 150
    weight_decay: float = 0.1
    seed: int = 0
    embedding_seed: int = 1234
    threads: int = 1
    log_every: int = 50
    eval_every: int = 400
    freeze_token_embedding: bool = False  # ablation: names as fixed random codes (measured worse)


class TokenCache:
    """Tokenizes each distinct caption once (captions repeat a lot in a templated world)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            for t, row in zip(new, self.tokenizer(new)):
                self.cache[t] = row
        return torch.stack([self.cache[t] for t in texts])

    def seen_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for row in self.cache.values():
            ids.update(int(i) for i in row.tolist())
        return ids


def images_to_tensor(images: np.ndarray, mean=OPENAI_MEAN, std=OPENAI_STD, size: int | None = None) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` (C = 1 or 3) → normalised float ``[N, 3, H, W]``.

    ``size``: the model's input side; other sizes are resized (``squash``, the rule
    :class:`medkt.segmentation.SaliencyEngine` applies to square phantoms at inference).
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    if x.ndim == 3:
        x = x[..., None]
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        from medkt.models.base import resize_to_square
        x = resize_to_square(x, size, "squash")
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                        groups: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where items with equal ``groups`` id are all positives."""
    logits = scale * img @ txt.t()
    target = (groups[:, None] == groups[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    li = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    lt = -(target * F.log_softmax(logits.t(), 1)).sum(1).mean()
    return (li + lt) / 2


def _param_groups(model, wd: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in n or "logit_scale" in n or n.endswith("class_embedding"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(model, images: np.ndarray, caption_fn: Callable[[int, np.random.Generator], str],
             cfg: PretrainConfig, tokenizer, eval_fn: Callable | None = None,
             log_fn: Callable[[str], None] = print, group_size: int = 1
             ) -> tuple[torch.nn.Module, TokenCache, list[dict]]:
    """Train ``model`` (raw open_clip CLIP) on ``images`` with captions from ``caption_fn(i, rng)``.

    ``group_size`` > 1: ``images`` are laid out in consecutive groups (e.g. counterfactual
    pairs: a finding and its normal twin) that always share a batch; ``caption_fn(g, rng)``
    then gets the group index and returns one caption per member.

    Returns the model (eval mode), the token cache (its ids are the trained rows) and a
    history of ``{"step", "loss", ...eval}`` dicts.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cache = TokenCache(tokenizer)
    if cfg.freeze_token_embedding:
        model.token_embedding.weight.requires_grad_(False)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))

    gs = int(group_size)
    n = len(images) // gs  # groups
    per_batch = max(1, cfg.batch_size // gs)
    size = int(model.visual.image_size[0] if isinstance(model.visual.image_size, tuple)
               else model.visual.image_size)
    order = rng.permutation(n)
    pos = 0
    history, t0, run_loss = [], time.time(), 0.0
    model.train()
    for step in range(cfg.steps):
        if pos + per_batch > n:
            order, pos = rng.permutation(n), 0
        gidx = order[pos:pos + per_batch]
        pos += per_batch
        if gs == 1:
            idx, texts = gidx, [caption_fn(int(i), rng) for i in gidx]
        else:
            idx = (gidx[:, None] * gs + np.arange(gs)[None]).reshape(-1)
            texts = [t for i in gidx for t in caption_fn(int(i), rng)]
        uniq = {t: k for k, t in enumerate(dict.fromkeys(texts))}
        groups = torch.tensor([uniq[t] for t in texts])
        x = images_to_tensor(images[idx], size=size)
        tok = cache(texts)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tok), dim=-1)
        loss = multi_positive_loss(img, txt, model.logit_scale.exp().clamp(max=100), groups)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run_loss += loss.item()
        if (step + 1) % cfg.log_every == 0:
            log_fn(f"step {step + 1}/{cfg.steps} loss {run_loss / cfg.log_every:.4f} "
                   f"lr {lr_at(step):.2e} scale {model.logit_scale.exp().item():.1f} "
                   f"{time.time() - t0:.0f}s")
            history.append({"step": step + 1, "loss": run_loss / cfg.log_every, "time_s": time.time() - t0})
            run_loss = 0.0
        if eval_fn is not None and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            model.eval()
            with torch.no_grad():
                res = eval_fn(model)
            log_fn(f"eval step {step + 1}: {json.dumps(res)}")
            history.append({"step": step + 1, **res})
            model.train()
    model.token_embedding.weight.requires_grad_(True)
    model.eval()
    return model, cache, history
