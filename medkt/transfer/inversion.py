"""Inversion: images (or top-layer tokens) whose embedding matches a concept's description.

``invert`` optimises ``images_per_concept`` images per concept, **all concepts in one
batch** by default (``batch_images`` caps a batch; whole concepts per batch).  Weights
are frozen (``requires_grad=False``: only the input gradient is computed).

Per-image independence: each image has its own seed (run seed, concept name, index);
its initial noise comes from its own generator and its augmentations from the
counter-based RNG of :mod:`augment`; the loss is a *sum* of per-image losses, gradient
clipping is per image and Adam is element-wise.  So an image's trajectory does not
depend on which other concepts share its batch (up to float rounding of batched
matmuls), which makes resume and batching free of side effects.

Parametrisations: ``pixels`` ([N, C, s, s] in [0, 1], clamped after each step; ``s``
follows the progressive schedule and views are resized to ``image_size``, or to ``s``
with ``progressive_encoder``), ``fourier`` (:mod:`medkt.transfer.parametrize`) or
``tokens`` (relaxed inversion, paper §7.1.1: tokens after block
``num_visual_layers - relaxed_layers``, with a Gram-matrix style term towards reference
tokens).  The ViLT objective ``itm`` maximises the match score (BCE towards "match").

Compute accounting: :attr:`InversionResult.work` counts the encoder passes (forward +
input-gradient backward, one per augmented view) by input size, and ``steps_run`` the
steps each image took (early stopping ends an image before ``steps``), so a caller can
turn a run into FLOPs (``benchmarks/bench_inversion_quality.py``).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from medkt.errors import ConfigError, UnknownNameError
from medkt.models.base import CONTRASTIVE, ITM, VISUAL_TOKENS, to_device
from medkt.transfer import augment as A
from medkt.transfer import parametrize as PZ
from medkt.transfer.concepts import Concept, inversion_text, load_concepts
from medkt.transfer.config import InversionConfig, coerce
from medkt.transfer.fastpath import patchify_convs
from medkt.transfer.fingerprint import (check_resumable as _check_resumable, fingerprint,  # noqa: F401
                                        fingerprint_parts, weights_digest)
_weights_digest = weights_digest  # former private name (tests, older imports)
from medkt.transfer.losses import INVERSION_OBJECTIVES, RAW_FEATURE_OBJECTIVES
from medkt.transfer.resolution import encoder_at, encoder_size
from medkt.transfer.schedules import SCHEDULES, PlateauStopper, lr_at as _lr_at
from medkt.transfer.state import frozen

log = logging.getLogger("medkt.transfer")

@dataclass
class InversionResult:
    """Inverted images of a concept set (concept-major order: concept 0's images first).

    ``images``: ``[N, C, S, S]`` in [0, 1] (``layer is None``) or tokens ``[N, T, D]`` after
    ``layer`` vision blocks (relaxed; 0 = after the patch embedding).  ``score`` / ``initial_score``: ``[N]`` cosine
    similarity of the final / starting image to its target text (match probability for
    ITM), measured without augmentation.  ``history``: per concept, loss summaries every
    ``log_every`` steps.  ``work`` / ``steps_run``: see the module docstring.  ``resumed`` / ``reused_from``: concepts loaded from an earlier run
    (resume) and the folder each was reused from.
    """

    images: torch.Tensor
    concept_names: list[str]
    captions: list[str]
    concepts: list[Concept]
    layer: int | None = None
    score: torch.Tensor | None = None
    initial_score: torch.Tensor | None = None
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    resumed: list[str] = field(default_factory=list)
    reused_from: dict[str, str] = field(default_factory=dict)
    work: dict[int, int] = field(default_factory=dict)  # encoder input size -> passes (fwd + bwd), this call
    steps_run: torch.Tensor | None = None  # [N] steps each image was optimised (resumed: as recorded)

    def for_concept(self, name: str) -> torch.Tensor:
        idx = [i for i, n in enumerate(self.concept_names) if n == name]
        if not idx:
            raise UnknownNameError("concept", name, sorted(set(self.concept_names)))
        return self.images[idx]

    def summary(self) -> dict:
        out = {}
        for c in self.concepts:
            idx = [i for i, n in enumerate(self.concept_names) if n == c.name]
            out[c.name] = {"score": float(self.score[idx].mean()) if self.score is not None else None,
                           "initial_score": float(self.initial_score[idx].mean())
                           if self.initial_score is not None else None}
        return out


def _validate(model, cfg: InversionConfig) -> None:
    if cfg.objective == "itm":
        model.require(ITM)
        if cfg.parametrization != "pixels":
            raise ConfigError("inversion.objective=itm supports only parametrization=pixels.")
    elif cfg.objective in INVERSION_OBJECTIVES:
        model.require(CONTRASTIVE)
    else:
        raise UnknownNameError("inversion objective", cfg.objective, [*INVERSION_OBJECTIVES, "itm"])
    if cfg.parametrization == "tokens":
        model.require(VISUAL_TOKENS)
        if not 1 <= cfg.relaxed_layers <= model.num_visual_layers:
            raise ConfigError(f"inversion.relaxed_layers={cfg.relaxed_layers} is outside "
                              f"1..{model.num_visual_layers} for model '{model.name}'.")
    elif cfg.parametrization not in ("pixels", "fourier"):
        raise UnknownNameError("inversion parametrization", cfg.parametrization, ["pixels", "fourier", "tokens"])
    if cfg.init not in ("uniform", "normal"):
        raise UnknownNameError("inversion init", cfg.init, ["uniform", "normal"])
    if cfg.schedule not in SCHEDULES:
        raise UnknownNameError("inversion schedule", cfg.schedule, SCHEDULES)
    if cfg.steps < 1 or cfg.images_per_concept < 1 or cfg.ensemble < 1:
        raise ConfigError("inversion.steps, images_per_concept and ensemble must be >= 1.")
    if not 0.0 <= cfg.warmup < 1.0:
        raise ConfigError(f"inversion.warmup={cfg.warmup} must be a fraction of the steps in [0, 1).")
    if cfg.parametrization == "fourier" and cfg.progressive:
        raise ConfigError("inversion.parametrization=fourier cannot be combined with inversion.progressive.",
                          hint="a Fourier image already optimises coarse structure first; drop progressive")
    if cfg.progressive_encoder:
        if not cfg.progressive or cfg.parametrization != "pixels":
            raise ConfigError("inversion.progressive_encoder needs a progressive schedule of pixels.",
                              hint="set inversion.progressive, e.g. [0.5, 0.75, 1.0]")
        encoder_size(model, model.image_size)  # raises for towers other than open_clip ViTs
    es = cfg.early_stop
    if es.patience < 0 or es.check_every < 1 or (es.patience and es.patience % es.check_every):
        raise ConfigError(f"inversion.early_stop.patience={es.patience} must be 0 (off) or a positive multiple "
                          f"of early_stop.check_every={es.check_every}.")
    if not 0.0 <= es.ema < 1.0:
        raise ConfigError(f"inversion.early_stop.ema={es.ema} must be in [0, 1).")


def _chunks(concepts: list[Concept], cfg: InversionConfig) -> list[list[Concept]]:
    if cfg.batch_images <= 0:
        return [concepts] if concepts else []
    per = max(1, cfg.batch_images // cfg.images_per_concept)
    return [concepts[i:i + per] for i in range(0, len(concepts), per)]


def _init_images(model, seeds: list[int], size: int, init: str) -> torch.Tensor:
    if init == "uniform":
        return A.noise_images(len(seeds), model.in_channels, size, seeds)
    out = torch.empty(len(seeds), model.in_channels, size, size)
    for i, s in enumerate(seeds):  # N(0, 1) in the model's normalised space (ViLT, §8.2)
        out[i] = torch.randn(model.in_channels, size, size, generator=torch.Generator().manual_seed(s))
    return model.denormalize(out.to(model._mean.device)).cpu().clamp(0, 1)


class _Problem:
    """Targets and the differentiable per-image loss of one optimisation batch."""

    def __init__(self, model, concepts, cfg: InversionConfig, seed: int, reference_images=None):
        self.model, self.cfg = model, cfg
        dev = model.device
        n = cfg.images_per_concept
        self.owners = [c for c in concepts for _ in range(n)]
        self.captions = [inversion_text(c, cfg.caption, k) for c in concepts for k in range(n)]
        self.seeds_list = [A.image_seed(seed, c.name, k) for c in concepts for k in range(n)]
        self.seeds = torch.tensor(self.seeds_list, dtype=torch.int64, device=dev)
        uniq = sorted(set(self.captions), key=self.captions.index)
        index = torch.tensor([uniq.index(t) for t in self.captions], device=dev)
        self.itm = cfg.objective == "itm"
        with torch.no_grad():
            if self.itm:
                toks = to_device(model.tokenize(uniq), dev)
                self.tokens = {k: (v[index] if torch.is_tensor(v) else v) for k, v in toks.items()}
            else:
                raw = cfg.objective in RAW_FEATURE_OBJECTIVES
                self.text = model.encode_texts(uniq, normalize=not raw).float()[index]
        self.layer = None
        if cfg.parametrization == "tokens":
            self.layer = model.num_visual_layers - cfg.relaxed_layers
        self.ref_gram = None
        if self.layer is not None and reference_images is not None:
            with torch.no_grad():
                ref = model.normalize(A.augment(reference_images.to(dev), self.seeds[:1] * 0, 0,
                                                out_size=model.image_size))
                self.ref_gram = A.gram(model.visual_tokens(ref, self.layer).float()).mean(0)
        self.autocast = cfg.amp == "bf16" and dev.type == "cuda"
        enc = lambda t: model.encode_image(t, normalize=False)  # noqa: E731
        self.encode = torch.compile(enc) if cfg.compile else enc

    # ------------------------------------------------------------------ parameters
    def init_param(self, size: int) -> torch.Tensor:
        """Starting parameters: pixels ``[N, C, s, s]``, Fourier coefficients or tokens."""
        cfg, m = self.cfg, self.model
        if cfg.parametrization == "fourier":
            return PZ.init_fourier(len(self.seeds_list), m.in_channels, size, self.seeds_list, m.device)
        x = _init_images(m, self.seeds_list, size, cfg.init).to(m.device)
        if self.layer is not None:
            with torch.no_grad():
                x = m.visual_tokens(m.normalize(A.augment(x, self.seeds, 0, out_size=m.image_size)),
                                    self.layer).float()
                if self.ref_gram is None:
                    self.ref_gram = A.gram(x).mean(0)
        return x

    def render(self, param: torch.Tensor) -> torch.Tensor:
        """What the encoder sees from ``param``: images in [0, 1] (or tokens for relaxed inversion)."""
        if self.cfg.parametrization == "fourier":
            return PZ.render_fourier(param, self.cfg.fourier_decay, self.cfg.color_decorrelation)
        return param

    def encoder_size(self, size: int) -> int:
        """Input size of the encoder while the images are ``size`` pixels."""
        if self.cfg.progressive_encoder and self.layer is None:
            return encoder_size(self.model, size)
        return int(self.model.image_size)

    # ------------------------------------------------------------------ objective
    def _pick(self, t, index):
        return t if index is None else t[index]

    def features(self, x: torch.Tensor, step: int, augment: bool = True, index=None, size=None) -> torch.Tensor:
        m = self.model
        size = int(size or m.image_size)
        ctx = encoder_at(m, size) if size != m.image_size else contextlib.nullcontext()
        with ctx, torch.autocast(m.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.layer is not None:
                return m.encode_image_from(x, self.layer).float()
            views = self._views(x, step, augment, index, size)
            return self.encode(m.normalize(views)).float()

    def _views(self, x: torch.Tensor, step: int, augment: bool, index=None, size=None) -> torch.Tensor:
        cfg = self.cfg
        seeds, size = self._pick(self.seeds, index), int(size or self.model.image_size)
        if not augment:
            return A.augment(x, seeds, step, out_size=size)
        return A.augment(x, seeds, step, out_size=size, copies=cfg.ensemble, affine=cfg.affine,
                         color_shift=tuple(cfg.color_shift))

    def objective(self, x: torch.Tensor, step: int, augment: bool = True, index=None, size=None) -> torch.Tensor:
        """Per-image objective ``[n]`` (mean over ensemble copies) of the images ``index``
        (all when ``None``; ``x`` holds exactly those images, rendered)."""
        k = self.cfg.ensemble if augment else 1
        if self.itm:
            views = self.model.normalize(self._views(x, step, augment, index))
            toks = {key: (self._pick(v, index).repeat_interleave(k, 0) if torch.is_tensor(v) else v)
                    for key, v in self.tokens.items()}
            with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.model.match_score(views, toks).float().view(-1)
            per = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        else:
            feats = self.features(x, step, augment, index, size)
            text = self._pick(self.text, index)
            per = INVERSION_OBJECTIVES[self.cfg.objective](feats, text.repeat_interleave(k, 0))
        return per.view(-1, k).mean(1)

    def regulariser(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if self.layer is not None:
            return cfg.style_weight * (A.gram(x) - self.ref_gram).pow(2).flatten(1).mean(1)
        reg = cfg.tv_weight * A.total_variation(x)
        if cfg.l1_weight:
            reg = reg + cfg.l1_weight * x.abs().flatten(1).mean(1)
        return reg

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of rendered ``x`` to the target text (ITM: match probability), no augmentation."""
        if self.itm:
            return torch.exp(-self.objective(x, 0, augment=False))
        return F.cosine_similarity(self.features(x, 0, augment=False), self.text, dim=-1)


def _optimizer(param: torch.Tensor, cfg: InversionConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([param], lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def optimise(problem: _Problem, cfg: InversionConfig, *, progress: bool = True, desc: str = "invert"):
    """Run the optimisation of one batch → (images or tokens, initial score, history rows, work, steps_run).

    ``work``: ``{encoder input size: passes}`` (forward + backward, per augmented view);
    ``steps_run``: ``[N]`` steps each image was optimised (early stopping).
    """
    stages = A.stage_sizes(problem.model.image_size, cfg.progressive, cfg.progressive_at, cfg.steps)
    param = problem.init_param(stages[0][1])
    initial = problem.score(problem.render(param))
    starts = {s: size for s, size in stages[1:]}
    n = param.shape[0]
    stopper = PlateauStopper(cfg.early_stop, n, cfg.steps)
    active = None  # None = every image; else the indices still optimised
    last = torch.zeros(n, device=param.device)  # latest objective per image (stopped images keep theirs)
    last_loss = torch.zeros(n, device=param.device)
    param.requires_grad_(True)
    opt = _optimizer(param, cfg)
    enc, work, rows = problem.encoder_size(stages[0][1]), {}, []
    bar = _bar(cfg.steps, desc, progress)
    for step in range(cfg.steps):
        if step in starts and problem.layer is None:  # progressive: upsample, new optimiser (author)
            with torch.no_grad():
                up = F.interpolate(param.detach(), size=(starts[step],) * 2, mode="bicubic",
                                   align_corners=False).clamp_(0, 1)
            param = up.requires_grad_(True)
            opt, enc = _optimizer(param, cfg), problem.encoder_size(starts[step])
        lr = _lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        sub = param if active is None else param[active]
        x = problem.render(sub)
        obj = problem.objective(x, step, index=active, size=enc)
        loss_i = obj + problem.regulariser(x)
        opt.zero_grad(set_to_none=True)
        loss_i.sum().backward()
        if cfg.grad_clip > 0:  # per-image norm clip (keeps images independent)
            with torch.no_grad():
                norms = param.grad.flatten(1).norm(dim=1)
                factor = (cfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)
                param.grad.mul_(factor.view(-1, *[1] * (param.dim() - 1)))
        keep = None if active is None else param.detach().clone()
        opt.step()
        with torch.no_grad():
            if keep is not None:  # stopped images keep their values (Adam's momentum would move them)
                done = torch.ones(n, dtype=torch.bool, device=param.device)
                done[active] = False
                param[done] = keep[done]
            if problem.layer is None and cfg.parametrization == "pixels":
                param.clamp_(0, 1)
        work[enc] = work.get(enc, 0) + sub.shape[0] * cfg.ensemble
        idx = torch.arange(n, device=param.device) if active is None else active
        last[idx], last_loss[idx] = obj.detach().float(), loss_i.detach().float()  # no host sync
        if stopper.enabled:
            stop = stopper.update(step, obj, idx)
            if len(stop):
                left = torch.ones(len(idx), dtype=torch.bool)
                left[stop] = False
                active = idx[left.to(idx.device)]
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            rows.append((step, lr, last.to("cpu", copy=True), last_loss.to("cpu", copy=True)))
            bar.set_postfix(loss=f"{float(last_loss.mean()):.4f}")
        bar.update(1)
        if active is not None and len(active) == 0:  # every image stopped
            if rows[-1][0] != step:
                rows.append((step, lr, last.to("cpu", copy=True), last_loss.to("cpu", copy=True)))
            break
    bar.close()
    with torch.no_grad():
        out = problem.render(param.detach())
    return out, initial, rows, work, stopper.stopped_at


def _bar(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled)  # bars stay (honest log)


def _history(concepts, n_per, rows) -> dict:
    hist = {c.name: [] for c in concepts}
    for step, lr, obj, loss in rows:
        for j, c in enumerate(concepts):
            sl = slice(j * n_per, (j + 1) * n_per)
            hist[c.name].append({"step": step, "lr": lr, "objective": float(obj[sl].mean()),
                                 "loss": float(loss[sl].mean())})
    return hist


def invert(model, concepts, config=None, *, seed: int = 0, out_dir=None, resume: bool = False,
           progress: bool = True, reference_images=None) -> InversionResult:
    """The inversion engine behind :func:`medkt.transfer.invert` (which adds option handling and
    run.json): ``config`` is an :class:`InversionConfig` or a dict of its fields."""
    from medkt.runs import seed_everything
    from medkt.transfer import outputs as O
    cfg = coerce(InversionConfig, config)
    cset = load_concepts(concepts)
    _validate(model, cfg)
    seed_everything(seed)
    parts = fingerprint_parts(model, cfg, seed) if out_dir is not None else {}
    fp = fingerprint(model, cfg, seed, parts) if out_dir is not None else ""
    n_per = cfg.images_per_concept
    found, infos, resumed, reused_from = {}, {}, [], {}
    if out_dir is not None and resume:
        for c in cset:
            _check_resumable(out_dir, c, parts, fp)
            got = O.load_concept(out_dir, c.slug, fp)
            if got is not None:
                found[c.name], infos[c.name] = got[0].to(model.device), got[1]
                resumed.append(c.name)
                reused_from[c.name] = str(O.concept_dir(out_dir, c.slug))
                log.info("inversion of '%s' reused from %s", c.name, reused_from[c.name])
    todo = [c for c in cset if c.name not in found]
    t0, work = time.perf_counter(), {}
    with frozen(model), patchify_convs(model, enabled=model.device.type == "cpu"):
        for chunk in _chunks(todo, cfg):
            tc = time.perf_counter()
            prob = _Problem(model, chunk, cfg, seed, reference_images)
            param, initial, rows, w, steps_run = optimise(prob, cfg, progress=progress,
                                                          desc=f"invert {len(chunk)} concept(s)")
            for size, passes in w.items():
                work[size] = work.get(size, 0) + passes
            if prob.layer is None and param.shape[-1] != model.image_size:
                param = F.interpolate(param, size=(model.image_size,) * 2, mode="bicubic",
                                      align_corners=False).clamp(0, 1)
            final = prob.score(param)
            hist = _history(chunk, n_per, rows)
            secs = (time.perf_counter() - tc) / len(chunk)
            for j, c in enumerate(chunk):
                sl = slice(j * n_per, (j + 1) * n_per)
                found[c.name] = param[sl]
                infos[c.name] = {"score": final[sl].tolist(), "initial_score": initial[sl].tolist(),
                                 "history": hist[c.name], "seconds": secs,
                                 "captions": prob.captions[sl], "layer": prob.layer,
                                 "steps_run": steps_run[sl].tolist()}
                if out_dir is not None:
                    O.save_concept(out_dir, c.slug, param[sl], captions=prob.captions[sl], layer=prob.layer,
                                   info={**infos[c.name], "fingerprint_parts": parts}, fingerprint=fp)
    layer = model.num_visual_layers - cfg.relaxed_layers if cfg.parametrization == "tokens" else None
    return InversionResult(
        images=torch.cat([found[c.name] for c in cset]),
        concept_names=[c.name for c in cset for _ in range(n_per)],
        captions=[t for c in cset for t in infos[c.name]["captions"]],
        concepts=list(cset), layer=layer,
        score=torch.tensor([s for c in cset for s in infos[c.name]["score"]]),
        initial_score=torch.tensor([s for c in cset for s in infos[c.name]["initial_score"]]),
        history={c.name: infos[c.name]["history"] for c in cset},
        seconds=time.perf_counter() - t0, resumed=resumed, reused_from=reused_from, work=work,
        steps_run=torch.tensor([s for c in cset for s in infos[c.name].get("steps_run", [cfg.steps] * n_per)]))
