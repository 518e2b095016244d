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
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medkt.errors import CheckpointMismatchError, WeightsError

log = logging.getLogger("medkt.worlds")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
EMBED_STD = 0.02


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


def create_world_clip(arch: str, embedding_seed: int = 1234, seed: int = 0):
    """Random-init open_clip model for ``arch`` with a regenerable token embedding."""
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    torch.manual_seed(seed)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights" for every random init
    try:
        model = open_clip.create_model(arch, pretrained=None)
    finally:
        root.setLevel(level)
    with torch.no_grad():
        model.token_embedding.weight.copy_(initial_token_embedding(model.token_embedding.weight.shape,
                                                                   embedding_seed))
    return model


def world_tokenizer(arch: str):
    """open_clip tokenizer with the architecture's context length (configs registered first)."""
    import open_clip
    from medkt.models.open_clip_loader import register_medkt_configs
    register_medkt_configs()
    return open_clip.get_tokenizer(arch)


def initial_token_embedding(shape, embedding_seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(embedding_seed))
    return torch.randn(tuple(shape), generator=g) * EMBED_STD


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


def images_to_tensor(images: np.ndarray, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` (C = 1 or 3) → normalised float ``[N, 3, H, W]``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    if x.ndim == 3:
        x = x[..., None]
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
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
             log_fn: Callable[[str], None] = print) -> tuple[torch.nn.Module, TokenCache, list[dict]]:
    """Train ``model`` (raw open_clip CLIP) on ``images`` with captions from ``caption_fn(i, rng)``.

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

    n = len(images)
    order = rng.permutation(n)
    pos = 0
    history, t0, run_loss = [], time.time(), 0.0
    model.train()
    for step in range(cfg.steps):
        if pos + cfg.batch_size > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        texts = [caption_fn(int(i), rng) for i in idx]
        uniq = {t: k for k, t in enumerate(dict.fromkeys(texts))}
        groups = torch.tensor([uniq[t] for t in texts])
        x = images_to_tensor(images[idx])
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


# ----------------------------------------------------------------------------- compact export
def export_compact(model, path: str | Path, keep_token_ids, *, arch: str, embedding_seed: int,
                   meta: dict | None = None) -> Path:
    """fp16 safetensors of ``model`` keeping only ``keep_token_ids`` rows of the token embedding."""
    from safetensors.torch import save_file
    from medkt.runs import atomic_path
    ids = torch.tensor(sorted(set(int(i) for i in keep_token_ids)), dtype=torch.int64)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "token_embedding.weight":
            sd["token_embedding.rows"] = v[ids].half().contiguous()
            sd["token_embedding.ids"] = ids
        elif k == "attn_mask":
            continue
        else:
            sd[k] = v.half().contiguous() if v.is_floating_point() else v.contiguous()
    md = {"arch": arch, "embedding_seed": str(embedding_seed), "format": "medkt-world-compact-1"}
    md.update({k: str(v) for k, v in (meta or {}).items()})
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=md)
    return Path(path)


def load_compact(path: str | Path, seed: int = 0):
    """Rebuild the raw open_clip model saved by :func:`export_compact` (fp32)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise WeightsError("world weights not found.", path=str(path),
                           hint="reinstall medkt or rerun the recipe in pipelines/worlds/")
    with safe_open(str(path), "pt") as f:
        md = f.metadata() or {}
        sd = {k: f.get_tensor(k) for k in f.keys()}
    if md.get("format") != "medkt-world-compact-1":
        raise CheckpointMismatchError("not a medkt world checkpoint (missing format metadata).", path=str(path))
    model = create_world_clip(md["arch"], int(md["embedding_seed"]), seed=seed)
    ids, rows = sd.pop("token_embedding.ids"), sd.pop("token_embedding.rows")
    full = model.token_embedding.weight.detach().clone()
    full[ids] = rows.float()
    sd["token_embedding.weight"] = full
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "attn_mask"]
    if missing or unexpected:
        raise CheckpointMismatchError(f"keys do not match architecture {md['arch']}: missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}", path=str(path))
    model.eval()
    return model, md
