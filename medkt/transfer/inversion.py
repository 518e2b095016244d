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
follows the progressive schedule and views are resized to ``image_size``) or
``tokens`` (relaxed inversion, paper §7.1.1: tokens after block
``num_visual_layers - relaxed_layers``, with a Gram-matrix style term towards reference
tokens).  The ViLT objective ``itm`` maximises the match score (BCE towards "match").
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from medkt.config import to_dict
from medkt.errors import ConfigError, UnknownNameError
from medkt.models.base import CONTRASTIVE, ITM, VISUAL_TOKENS, to_device
from medkt.transfer import augment as A
from medkt.transfer.concepts import Concept, inversion_text, load_concepts
from medkt.transfer.config import InversionConfig, coerce
from medkt.transfer.losses import INVERSION_OBJECTIVES, RAW_FEATURE_OBJECTIVES
from medkt.transfer.fastpath import patchify_convs
from medkt.transfer.state import frozen

log = logging.getLogger("medkt.transfer")

@dataclass
class InversionResult:
    """Inverted images of a concept set (concept-major order: concept 0's images first).

    ``images``: ``[N, C, S, S]`` in [0, 1] (``layer is None``) or tokens ``[N, T, D]`` after
    ``layer`` vision blocks (relaxed; 0 = after the patch embedding).  ``score`` / ``initial_score``: ``[N]`` cosine
    similarity of the final / starting image to its target text (match probability for
    ITM), measured without augmentation.  ``history``: per concept, loss summaries every
    ``log_every`` steps.  ``resumed`` / ``reused_from``: concepts loaded from an earlier run
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


# ---------------------------------------------------------------------- resume fingerprint
def weights_digest(model) -> str:
    """sha256 (hex) over the model's named parameters and buffers, in name order.

    Each tensor contributes ``name|dtype|shape`` and its raw bytes (copied to CPU), so
    any change of a weight, a buffer (e.g. the normalisation constants), a dtype or a
    shape changes the digest.  Cost: sha256 over the weights' bytes, nothing more (ViT-B/32,
    605 MB fp32: 0.35 s on an idle CPU core, up to ~1.8 s on a loaded one).
    """
    h = hashlib.sha256()
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # buffer, no copy
    return h.hexdigest()


def fingerprint_parts(model, cfg: InversionConfig, seed: int) -> dict:
    """What an inversion depends on: model name, weights digest, input size and normalisation,
    the inversion config and the seed (stored in each concept's done-marker)."""
    parts = {"model": model.name, "weights_sha256": weights_digest(model), "image_size": int(model.image_size),
             "mean": [float(v) for v in model.mean], "std": [float(v) for v in model.std],
             "config": to_dict(cfg), "seed": int(seed)}
    return json.loads(json.dumps(parts))  # JSON types, as stored in the marker


def fingerprint(model, cfg: InversionConfig, seed: int, parts: dict | None = None) -> str:
    """Short hash of :func:`fingerprint_parts` (``parts`` when already computed)."""
    blob = json.dumps(parts or fingerprint_parts(model, cfg, seed), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _differences(then: dict, now: dict) -> list[str]:
    """Human-readable differences between two :func:`fingerprint_parts` (stored → current)."""
    out = []
    if then.get("weights_sha256") != now["weights_sha256"]:
        out.append(f"model weights differ (sha256 {str(then.get('weights_sha256'))[:12]} there, "
                   f"{now['weights_sha256'][:12]} now)")
    labels = {"model": "model name", "image_size": "image size", "mean": "normalisation mean",
              "std": "normalisation std", "seed": "seed"}
    for key, label in labels.items():
        if then.get(key) != now[key]:
            out.append(f"{label} {then.get(key)} there, {now[key]} now")
    if then.get("config") != now["config"]:
        a, b = _flat(then.get("config") or {}), _flat(now["config"])
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        out.append("inversion config differs (" + ", ".join(f"{k}: {a.get(k)} there, {b.get(k)} now"
                                                            for k in keys[:4])
                   + (", ..." if len(keys) > 4 else "") + ")")
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resumable(out_dir, concept: Concept, parts: dict, fp: str) -> None:
    """Refuse (never silently reuse) a finished concept whose fingerprint is not this run's."""
    from medkt.errors import ResumeMismatchError
    from medkt.transfer import outputs as O
    marker = O.marker_path(out_dir, "invert", concept.slug)
    if not marker.exists():
        return
    info = json.loads(marker.read_text())
    if info.get("fingerprint") == fp:
        return
    then = info.get("fingerprint_parts")
    what = ("; ".join(_differences(then, parts)) if then else
            "it has no model fingerprint (written by an older medkt or a noise-control run)")
    raise ResumeMismatchError(
        f"cannot resume: concept '{concept.name}' in {out_dir} was inverted with different settings or model: "
        f"{what or 'fingerprint differs'}.", path=str(marker),
        hint="pass --overwrite (without --resume) to re-invert into this folder, choose another output "
             "folder, or rerun with the original model and settings")


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
    elif cfg.parametrization != "pixels":
        raise UnknownNameError("inversion parametrization", cfg.parametrization, ["pixels", "tokens"])
    if cfg.init not in ("uniform", "normal"):
        raise UnknownNameError("inversion init", cfg.init, ["uniform", "normal"])
    if cfg.schedule not in ("cosine", "constant"):
        raise UnknownNameError("inversion schedule", cfg.schedule, ["cosine", "constant"])
    if cfg.steps < 1 or cfg.images_per_concept < 1 or cfg.ensemble < 1:
        raise ConfigError("inversion.steps, images_per_concept and ensemble must be >= 1.")


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

    def init_param(self, size: int) -> torch.Tensor:
        x = _init_images(self.model, self.seeds_list, size, self.cfg.init).to(self.model.device)
        if self.layer is not None:
            with torch.no_grad():
                x = self.model.visual_tokens(self.model.normalize(
                    A.augment(x, self.seeds, 0, out_size=self.model.image_size)), self.layer).float()
                if self.ref_gram is None:
                    self.ref_gram = A.gram(x).mean(0)
        return x

    def features(self, param: torch.Tensor, step: int, augment: bool = True) -> torch.Tensor:
        m = self.model
        with torch.autocast(m.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.layer is not None:
                return m.encode_image_from(param, self.layer).float()
            views = self._views(param, step, augment)
            return self.encode(m.normalize(views)).float()

    def _views(self, x: torch.Tensor, step: int, augment: bool) -> torch.Tensor:
        cfg = self.cfg
        if not augment:
            return A.augment(x, self.seeds, step, out_size=self.model.image_size)
        return A.augment(x, self.seeds, step, out_size=self.model.image_size, copies=cfg.ensemble,
                         affine=cfg.affine, color_shift=tuple(cfg.color_shift))

    def objective(self, param: torch.Tensor, step: int, augment: bool = True) -> torch.Tensor:
        """Per-image objective ``[N]`` (mean over ensemble copies)."""
        k = self.cfg.ensemble if augment else 1
        if self.itm:
            views = self.model.normalize(self._views(param, step, augment))
            toks = {key: (v.repeat_interleave(k, 0) if torch.is_tensor(v) else v) for key, v in self.tokens.items()}
            with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.model.match_score(views, toks).float().view(-1)
            per = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        else:
            feats = self.features(param, step, augment)
            per = INVERSION_OBJECTIVES[self.cfg.objective](feats, self.text.repeat_interleave(k, 0))
        return per.view(-1, k).mean(1)

    def regulariser(self, param: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if self.layer is not None:
            return cfg.style_weight * (A.gram(param) - self.ref_gram).pow(2).flatten(1).mean(1)
        reg = cfg.tv_weight * A.total_variation(param)
        if cfg.l1_weight:
            reg = reg + cfg.l1_weight * param.abs().flatten(1).mean(1)
        return reg

    @torch.no_grad()
    def score(self, param: torch.Tensor) -> torch.Tensor:
        """Cosine similarity to the target text (ITM: match probability), no augmentation."""
        if self.itm:
            return torch.exp(-self.objective(param, 0, augment=False))
        return F.cosine_similarity(self.features(param, 0, augment=False), self.text, dim=-1)


def _lr_at(cfg: InversionConfig, step: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    import math
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * step / max(1, cfg.steps)))


def optimise(problem: _Problem, cfg: InversionConfig, *, progress: bool = True, desc: str = "invert"):
    """Run the optimisation of one batch → (param, initial score, history rows)."""
    stages = A.stage_sizes(problem.model.image_size, cfg.progressive, cfg.progressive_at, cfg.steps)
    param = problem.init_param(stages[0][1])
    initial = problem.score(param)
    starts = {s: size for s, size in stages[1:]}
    param.requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    rows = []
    bar = _bar(cfg.steps, desc, progress)
    for step in range(cfg.steps):
        if step in starts and problem.layer is None:  # progressive: upsample, new optimiser (author)
            with torch.no_grad():
                up = F.interpolate(param.detach(), size=(starts[step],) * 2, mode="bicubic",
                                   align_corners=False).clamp_(0, 1)
            param = up.requires_grad_(True)
            opt = torch.optim.Adam([param], lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        lr = _lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        obj = problem.objective(param, step)
        loss_i = obj + problem.regulariser(param)
        opt.zero_grad(set_to_none=True)
        loss_i.sum().backward()
        if cfg.grad_clip > 0:  # per-image norm clip (keeps images independent)
            with torch.no_grad():
                norms = param.grad.flatten(1).norm(dim=1)
                factor = (cfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)
                param.grad.mul_(factor.view(-1, *[1] * (param.dim() - 1)))
        opt.step()
        if problem.layer is None:
            with torch.no_grad():
                param.clamp_(0, 1)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            rows.append((step, lr, obj.detach().cpu(), loss_i.detach().cpu()))
            bar.set_postfix(loss=f"{float(loss_i.detach().mean()):.4f}")
        bar.update(1)
    bar.close()
    return param.detach(), initial, rows


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
    t0 = time.perf_counter()
    with frozen(model), patchify_convs(model, enabled=model.device.type == "cpu"):
        for chunk in _chunks(todo, cfg):
            tc = time.perf_counter()
            prob = _Problem(model, chunk, cfg, seed, reference_images)
            param, initial, rows = optimise(prob, cfg, progress=progress,
                                            desc=f"invert {len(chunk)} concept(s)")
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
                                 "captions": prob.captions[sl], "layer": prob.layer}
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
        seconds=time.perf_counter() - t0, resumed=resumed, reused_from=reused_from)
