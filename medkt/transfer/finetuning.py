"""Fine-tuning on (inverted image, caption) pairs — paper §3.1.2, §8.1.

Defaults: caption "A <name> is <description>", visual encoder only (text encoder and
``logit_scale`` frozen), ``Adam(lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)``
(L2-coupled, as the author's script), batch 4, 1 epoch, loss ``supcon``.  The model runs
in eval mode (no dropout); only the selected parameters have ``requires_grad`` during
training, so every other parameter is bitwise unchanged.

Why ``supcon`` by default: the paper teaches each concept separately (Table 1), so every
caption in a batch is the same, and CLIP's symmetric InfoNCE (``clip``) then cannot
teach anything (losses.py).  The author's SupCon-style loss gives the images a real
gradient whether a batch holds one concept or many, needs no extra captions, and is
what produced the paper's numbers.  ``clip_bank`` (InfoNCE over a caption bank) is the
alternative when several concepts or negative captions are available.

Losses are a registry ``LOSSES[name](ctx, batch) -> (loss, parts)``; CoCa (``coca``)
and ViLT (``itm``, ``mlm``) plug in here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from medkt.errors import ConfigError, look_up
from medkt.models.base import CAPTION, CONTRASTIVE
from medkt.transfer import lora as L
from medkt.transfer.concepts import COCA_TEMPLATES, caption
from medkt.transfer.config import FinetuneConfig, coerce
from medkt.transfer.losses import clip_bank_loss, clip_loss, supcon_loss
from medkt.transfer.state import names_of, save_weights


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune` (the model itself was trained in place).

    ``delta``: ``{param_name: trained - original}`` for every trained tensor (for LoRA:
    the merged weight change).  ``adapter``: LoRA tensors (``None`` without LoRA).
    ``losses``: total loss per step; ``parts``: per-term losses per step.
    """

    model: object
    delta: dict
    trained: list[str]
    losses: list[float] = field(default_factory=list)
    parts: dict = field(default_factory=dict)
    adapter: dict | None = None
    lora_scale: float | None = None
    steps: int = 0
    seconds: float = 0.0
    config: FinetuneConfig | None = None
    captions: list = field(default_factory=list)  # distinct captions trained on

    def save(self, path, fmt: str = "delta", metadata: dict | None = None) -> Path:
        """Write the weights as safetensors: ``delta``, ``lora`` (adapter only) or ``full``."""
        meta = {"format": fmt, "model": getattr(self.model, "name", "?"), **(metadata or {})}
        if fmt == "delta":
            return save_weights(path, self.delta, meta)
        if fmt == "lora":
            if self.adapter is None:
                raise ConfigError("weights_format=lora needs finetune.lora.enabled=true.")
            return save_weights(path, self.adapter, {**meta, "scale": str(self.lora_scale)})
        if fmt == "full":
            return save_weights(path, dict(self.model.named_parameters()), meta)
        raise ConfigError(f"unknown weights format '{fmt}'; use delta, lora or full.")

    def summary(self) -> dict:
        """Steps, seconds, and ``loss_first`` / ``loss_last``: mean loss over the first / last
        10 % of steps (at least one step each; with < 10 steps that is a single step)."""
        n = len(self.losses)
        k = max(1, math.ceil(n / 10))
        head, tail = self.losses[:k], self.losses[-k:]
        return {"steps": self.steps, "seconds": self.seconds, "trained_tensors": len(self.trained),
                "loss_first": sum(head) / len(head) if head else None,
                "loss_last": sum(tail) / len(tail) if tail else None,
                "losses": [round(v, 6) for v in self.losses]}


class LossContext:
    """What a loss needs: the model, config, caption bank and cached frozen-text features."""

    def __init__(self, model, cfg: FinetuneConfig, *, layer: int | None, text_trainable: bool,
                 all_captions: list[str], bank: Sequence[str], generator: torch.Generator):
        self.model, self.cfg, self.layer = model, cfg, layer
        self.text_trainable = text_trainable
        self.generator = generator
        extra = [c for c in list(cfg.negative_captions) + list(bank) if c not in all_captions]
        self.bank = list(dict.fromkeys(all_captions + extra))  # every distinct caption, ordered
        self._cache: dict[str, torch.Tensor] = {}

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → normalised model input at ``image_size``."""
        s = self.model.image_size
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)
        return self.model.normalize(x)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is not None:
            return self.model.encode_image_from(x, self.layer)
        return self.model.encode_image(self.pixels(x), normalize=False)

    def text(self, captions: Sequence[str]) -> torch.Tensor:
        if self.text_trainable:
            return self.model.encode_texts(list(captions), normalize=False)
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            with torch.no_grad():
                feats = self.model.encode_texts(missing, normalize=False)
            self._cache.update(zip(missing, feats))
        return torch.stack([self._cache[c] for c in captions])


# ---------------------------------------------------------------------- loss registry
def _contrastive(name: str, ctx: LossContext, batch: dict, img=None) -> torch.Tensor:
    img = ctx.image(batch["x"]) if img is None else img
    if name == "supcon":
        return supcon_loss(img, ctx.text(batch["captions"]), ctx.cfg.temperature)
    if name == "clip":
        return clip_loss(img, ctx.text(batch["captions"]), ctx.model.logit_scale)
    if name == "clip_bank":
        feats = ctx.text(ctx.bank)
        target = torch.tensor([ctx.bank.index(c) for c in batch["captions"]], device=img.device)
        return clip_bank_loss(img, feats, target, ctx.model.logit_scale)
    raise ConfigError(f"unknown contrastive loss '{name}'; use supcon, clip or clip_bank.")


def _simple(name):
    def fn(ctx, batch):
        loss = _contrastive(name, ctx, batch)
        return loss, {name: float(loss.detach())}
    return fn


def coca_targets(names: Sequence[str], generator: torch.Generator) -> list[str]:
    """One random template of the 26 (paper §8.8) per sample, filled with the concept name."""
    idx = torch.randint(0, len(COCA_TEMPLATES), (len(names),), generator=generator).tolist()
    return [COCA_TEMPLATES[i].format(n.lower()) for i, n in zip(idx, names)]


def _coca(ctx: LossContext, batch: dict):
    """``L = 1 · contrastive + caption_weight · L_cap`` (paper Eq. 6, λ1 = 1, λ2 = 0.1)."""
    ctx.model.require(CAPTION)
    if ctx.layer is not None:
        raise ConfigError("finetune.loss=coca needs pixel images (not relaxed tokens).")
    con = _contrastive(ctx.cfg.contrastive, ctx, batch)
    cap = ctx.model.caption_loss(ctx.pixels(batch["x"]), coca_targets(batch["names"], ctx.generator))
    loss = con + ctx.cfg.caption_weight * cap
    return loss, {"contrastive": float(con.detach()), "caption": float(cap.detach())}


def _vilt(kind):
    def fn(ctx, batch):
        from medkt.transfer import vilt
        return (vilt.itm_loss if kind == "itm" else vilt.mlm_loss)(ctx, batch)
    return fn


LOSSES: dict[str, Callable] = {"supcon": _simple("supcon"), "clip": _simple("clip"),
                               "clip_bank": _simple("clip_bank"), "coca": _coca,
                               "itm": _vilt("itm"), "mlm": _vilt("mlm")}


# ---------------------------------------------------------------------- main entry
def _unpack(images, captions, concept_names, cfg: FinetuneConfig):
    from medkt.transfer.inversion import InversionResult
    if isinstance(images, InversionResult):
        counts: dict[str, int] = {}
        caps, owners = [], {c.name: c for c in images.concepts}
        for n in images.concept_names:
            k = counts.get(n, 0)
            counts[n] = k + 1
            caps.append(caption(owners[n], cfg.caption, k, short=cfg.loss in ("itm", "mlm")))
        return images.images, list(captions or caps), list(images.concept_names), images.layer
    if not torch.is_tensor(images) or images.dim() not in (3, 4):
        raise ConfigError("finetune() needs images [N, C, H, W] in [0, 1] or an InversionResult.")
    if captions is None or len(captions) != images.shape[0]:
        raise ConfigError(f"finetune() needs one caption per image ({images.shape[0]}), got "
                          f"{None if captions is None else len(captions)}.")
    names = list(concept_names) if concept_names is not None else list(captions)
    return images, list(captions), names, None


def _batches(order: list[int], size: int) -> list[list[int]]:
    """Consecutive batches; a trailing batch of one joins the previous one (a contrastive loss
    over a single pair is constant)."""
    out = [order[i:i + size] for i in range(0, len(order), size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = out[-2] + out.pop()
    return out


SAMPLINGS = ("random", "balanced")


def epoch_batches(names: Sequence[str], cfg: FinetuneConfig, generator: torch.Generator) -> list[list[int]]:
    """Index batches of one epoch over images whose concepts are ``names`` (one per image).

    ``random``: one shuffle of all images, ``batch_size`` images per batch.
    ``balanced``: each concept's images shuffled on their own; batch ``b`` holds images
    ``b·k .. b·k+k-1`` of *every* concept (``k = batch_size``), so every batch mixes all
    concepts in equal numbers (real negatives for the contrastive loss) and a set of
    concepts takes as many steps as one concept alone.  With one concept both are the same
    (same order, same batches).
    """
    n = len(names)
    if cfg.sampling not in SAMPLINGS:
        raise ConfigError(f"unknown finetune.sampling '{cfg.sampling}'; use random or balanced.")
    if cfg.sampling == "random":
        order = (torch.randperm(n, generator=generator) if cfg.shuffle else torch.arange(n)).tolist()
        return _batches(order, cfg.batch_size)
    groups: dict[str, list[int]] = {}
    for i, nm in enumerate(names):
        groups.setdefault(nm, []).append(i)
    for nm, idx in groups.items():
        perm = torch.randperm(len(idx), generator=generator) if cfg.shuffle else torch.arange(len(idx))
        groups[nm] = [idx[j] for j in perm.tolist()]
    per = [_batches(idx, cfg.batch_size) for idx in groups.values()]
    return [[i for g in per if b < len(g) for i in g[b]] for b in range(max(len(g) for g in per))]


def _trainable(model, cfg: FinetuneConfig, seed: int):
    adapters = None
    if cfg.lora.enabled:
        adapters = L.apply_lora(model, cfg.lora.rank, cfg.lora.alpha, tuple(cfg.lora.targets), seed)
        others = [g for g in cfg.train if g not in ("visual", "visual_tower")]  # e.g. decoder
        lora_ids = {id(p) for p in L.lora_parameters(adapters)}
        extra = [p for p in model.parameters_of(*others) if id(p) not in lora_ids] if others else []
        params = L.lora_parameters(adapters) + extra
    else:
        if not cfg.train:
            raise ConfigError("finetune.train is empty: nothing to train.", hint="e.g. train: [visual]")
        params = model.parameters_of(*cfg.train)
    return params, adapters


def finetune(model, images, captions=None, config=None, *, concept_names=None, bank=(), seed: int = 0,
             progress: bool = True, desc: str = "fine-tune") -> FinetuneResult:
    """Fine-tune ``model`` **in place** on (image, caption) pairs; returns :class:`FinetuneResult`.

    ``images``: ``[N, C, H, W]`` in [0, 1], or an :class:`InversionResult` (its images,
    captions built from its concepts with ``config.caption``, and relaxed tokens handled).
    ``captions``: one per image (required for raw tensors).  ``concept_names`` (per image)
    is needed by CoCa targets, clip_bank negatives and ``sampling=balanced``.  ``bank``:
    extra negative captions.  Only ``config.train`` groups (or LoRA adapters) receive
    gradients; everything else is bitwise unchanged.  ``result.delta`` holds
    trained-minus-original tensors.  ``desc`` labels the progress bar.
    """
    cfg = coerce(FinetuneConfig, config)
    loss_fn = look_up("fine-tuning loss", cfg.loss, LOSSES)
    if cfg.loss in ("supcon", "clip", "clip_bank"):
        model.require(CONTRASTIVE)
    x_all, caps, names, layer = _unpack(images, captions, concept_names, cfg)
    dev = model.device
    t0 = time.perf_counter()
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    params, adapters = _trainable(model, cfg, seed)
    lora_ids = {id(p) for p in L.lora_parameters(adapters)} if adapters else set()
    base = [p for p in params if id(p) not in lora_ids]
    base_names = names_of(model, base)
    original = {n: p.detach().clone() for n, p in zip(base_names, base)}
    text_ids = {id(p) for p in model.parameters_of("text")}
    ctx = LossContext(model, cfg, layer=layer, text_trainable=any(id(p) in text_ids for p in params),
                      all_captions=list(dict.fromkeys(caps)), bank=bank,
                      generator=torch.Generator().manual_seed(int(seed)))
    losses, parts = [], {}
    try:
        for p in params:
            p.requires_grad_(True)
        model.eval()
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                               weight_decay=cfg.weight_decay)
        order_gen = torch.Generator().manual_seed(int(seed) + 1)
        epochs = [epoch_batches(names, cfg, order_gen) for _ in range(cfg.epochs)]
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(map(len, epochs)), desc=desc, unit="step", disable=not progress)
        for batches in epochs:
            for idx in batches:
                batch = {"x": x_all[idx].to(dev), "captions": [caps[j] for j in idx],
                         "names": [names[j] for j in idx]}
                loss, part = loss_fn(ctx, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                for k, v in part.items():
                    parts.setdefault(k, []).append(v)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                bar.update(1)
        bar.close()
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)
    adapter, scale, delta = None, None, {}
    trained = list(base_names)
    if adapters:
        adapter, scale = L.adapter_state(adapters), cfg.lora.alpha / cfg.lora.rank
        delta.update(L.adapter_delta(adapters))
        trained += list(adapters)
        if cfg.lora.merge:
            L.merge_lora(model)
    params_now = dict(model.named_parameters())
    for nme in base_names:
        delta[nme] = (params_now[nme].detach() - original[nme]).cpu()
    return FinetuneResult(model=model, delta=delta, trained=trained, losses=losses, parts=parts,
                          adapter=adapter, lora_scale=scale, steps=len(losses),
                          seconds=time.perf_counter() - t0, config=cfg, captions=list(dict.fromkeys(caps)))
