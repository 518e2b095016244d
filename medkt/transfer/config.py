"""Dataclass configs of the Knowledge Transfer engine.

Defaults are the paper's recipe (Sections 3-4, 8); the author's script, Kazemi's and
Plug-In Inversion's variants are named presets in ``configs/transfer/*.yaml``
(:func:`load_transfer_config` with ``preset=...``).  Every field can be overridden from
the CLI with ``--set inversion.steps=200``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medkt.config import load_config, load_yaml, from_dict, apply_overrides
from medkt.errors import ConfigError, UnknownNameError


@dataclass
class AffineConfig:
    """Per-sample random affine (kornia ``RandomAffine`` semantics, done with ``affine_grid``)."""

    p: float = 0.5  # probability that a sample is transformed at a step
    degrees: float = 30.0  # rotation drawn from U(-degrees, degrees)
    translate: float = 0.1  # shift drawn from U(-t, t) * image size, per axis
    scale: list[float] = field(default_factory=lambda: [0.7, 1.0])  # paper 0.7-1.0; author 0.7-1.2
    padding: str = "border"  # grid_sample padding mode: border | zeros | reflection


@dataclass
class EarlyStopConfig:
    """Per-image early stopping when the similarity plateaus (``patience: 0`` = off).

    Every ``check_every`` steps each image's exponential moving average (factor ``ema``)
    of its training objective (``1 - cos`` of its augmented view; for other objectives
    their value) is compared with the value ``patience`` steps earlier; an image whose
    objective improved by less than ``min_delta`` stops: it leaves the batch (no more
    forward or backward passes) and keeps its pixels.  Never before ``min_steps`` (a
    fraction of ``steps``).  The decision uses only the image's own objective, so images
    stay independent of the batch.
    """

    patience: int = 0  # steps without min_delta improvement before an image stops; 0 = off
    min_delta: float = 0.002  # improvement of the smoothed objective required within patience steps
    ema: float = 0.9  # smoothing of the per-image objective (the augmented objective is noisy)
    check_every: int = 25  # steps between plateau checks
    min_steps: float = 0.1  # no image stops before this fraction of the steps


@dataclass
class InversionConfig:
    """Image inversion ``max_x sim(f_V(A(x)), f_T(t)) - alpha * TV(x)`` (paper Eq. 3).

    Pixels live in [0, 1] (clamped after every step) unless ``parametrization`` is
    ``fourier`` (a decorrelated spectrum rendered through a sigmoid, always in (0, 1)) or
    ``tokens`` (relaxed inversion of the top ``relaxed_layers`` vision blocks, §7.1.1).
    Options that cut the compute of short runs (``warmup``, ``early_stop``,
    ``progressive_encoder``, ``fourier``) are measured in docs/transfer.md
    ("Inversion time-to-quality").
    """

    steps: int = 5000
    images_per_concept: int = 10
    objective: str = "cosine"  # cosine (1-cos, paper) | l2_normalized (Kazemi) | l2_raw (author) | itm (ViLT)
    lr: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine | constant | linear (decay to 0)
    warmup: float = 0.0  # fraction of the steps with a linear lr warm-up from 0 (then the schedule)
    weight_decay: float = 0.0  # Adam weight decay on the pixels (ViLT: 0.01, paper §8.2)
    tv_weight: float = 0.005  # alpha; 4-direction p=2 total variation (Kazemi)
    l1_weight: float = 0.0
    grad_clip: float = 0.0  # per-image gradient-norm clip (author: 1.0); 0 = off
    init: str = "uniform"  # uniform (rand in [0,1]) | normal (N(0,1) in normalised space, ViLT)
    affine: AffineConfig | None = field(default_factory=AffineConfig)  # null = no affine
    ensemble: int = 1  # augmented copies of each image per step (Kazemi / Plug-In Inversion)
    color_shift: list[float] = field(default_factory=lambda: [0.0, 0.0])  # [m, s]: (x-mu)/sigma, 0,0 = off
    progressive: list[float] = field(default_factory=list)  # sizes as fractions of image_size, e.g. [64/224, 128/224, 1]
    progressive_at: list[float] = field(default_factory=lambda: [0.3, 0.6])  # step fractions of the size switches
    progressive_encoder: bool = False  # also run the ViT at each stage's size (fewer tokens, fewer FLOPs)
    parametrization: str = "pixels"  # pixels | fourier (decorrelated, 1/f spectrum + colour basis) | tokens (relaxed)
    fourier_decay: float = 1.0  # fourier: spectrum amplitude ~ 1 / frequency ** decay
    color_decorrelation: bool = True  # fourier: colours in an opponent basis (luminance, red-green, blue-yellow)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    relaxed_layers: int = 2  # top vision blocks inverted when parametrization = tokens
    style_weight: float = 1.0  # Gram-matrix regulariser towards reference tokens (relaxed)
    caption: str = "description"  # which text is inverted: description | short (ViLT, 40 tokens) | definition
    batch_images: int = 0  # max images per optimisation batch (whole concepts); 0 = all in one batch
    amp: str = "none"  # none | bf16 (autocast on CUDA; pixels and loss stay fp32)
    compile: bool = False  # torch.compile the encoder step (GPU)
    log_every: int = 50  # loss summary interval recorded in run.json


@dataclass
class LoraConfig:
    """Low-rank adapters ``W + (alpha/rank) * B @ A`` on 2-D weights of the visual blocks."""

    enabled: bool = False
    rank: int = 4
    alpha: float = 8.0
    targets: list[str] = field(default_factory=lambda: ["attn", "mlp"])  # substrings of weight names
    merge: bool = True  # fold adapters into the weights after training (False: keep them live)


@dataclass
class FinetuneConfig:
    """Contrastive fine-tuning on (inverted image, caption) pairs (paper §3.1.2, §8.1).

    Default loss ``supcon`` (the author's formulation, T = 0.07): it gives the images a
    real gradient whether a batch holds one concept or many; CLIP's symmetric InfoNCE
    (``clip``) does not when all captions in a batch are equal.  See docs/transfer.md.
    """

    lr: float = 2e-5
    epochs: int = 1
    batch_size: int = 4
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    train: list[str] = field(default_factory=lambda: ["visual"])  # parameter groups: visual | text | decoder ...
    loss: str = "supcon"  # supcon | clip_bank | clip | coca | itm | mlm
    temperature: float = 0.07  # supcon temperature (fixed, not logit_scale)
    # definition ("A <name> is <desc>") | description (no name) | plural | name ("a photo of a <name>");
    # join with "+" to alternate styles over a concept's images, e.g. definition+name
    caption: str = "definition"
    negative_captions: list[str] = field(default_factory=list)  # extra bank negatives (clip_bank, itm)
    caption_weight: float = 0.1  # CoCa: L = 1*contrastive + caption_weight * L_cap
    contrastive: str = "supcon"  # CoCa's contrastive part: supcon | clip_bank | clip
    mlm_probability: float = 0.15  # ViLT implicit transfer: whole-word masking rate
    itm_negatives: int = 1  # ViLT ITM: negatives per positive
    shuffle: bool = True
    # random (one shuffle of all images) | balanced (every batch holds batch_size images of every
    # concept: a joint fine-tune mixes all concepts per batch and takes one concept's step count)
    sampling: str = "random"
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TransferConfig:
    """``learn()`` = inversion + fine-tuning (+ output format)."""

    seed: int = 0
    inversion: InversionConfig = field(default_factory=InversionConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    noise_control: bool = False  # fine-tune on pure-noise images instead of inversions
    weights_format: str = "auto"  # auto (lora if LoRA else delta) | delta (trained - original) | full | lora
    save_images: bool = True


def presets_dir() -> Path:
    from medkt.paths import config_dir
    return config_dir("transfer")


def list_presets() -> list[str]:
    from medkt.paths import list_configs
    return list_configs("transfer")


def load_transfer_config(source: str | Path | dict | TransferConfig | None = None, *,
                         preset: str | None = None, overrides: list[str] | None = None) -> TransferConfig:
    """Resolve a :class:`TransferConfig` from a preset name, a YAML path/dict, and overrides.

    ``preset`` (e.g. ``paper``, ``author``, ``kazemi``, ``vilt``, ``coca``, ``lora``) is
    applied first; ``source`` keys are merged over it; ``overrides`` (``key=value``) last.
    """
    from medkt.paths import config_file
    if isinstance(source, TransferConfig):
        return apply_overrides(source, overrides)
    data: dict = {}
    if preset:
        data = _merge(data, load_yaml(config_file("transfer", preset)))
    if isinstance(source, (str, Path)):
        data = _merge(data, load_yaml(config_file("transfer", source)))
    elif isinstance(source, dict):
        data = _merge(data, source)
    elif source is not None:
        raise ConfigError(f"cannot build a TransferConfig from {type(source).__name__}.")
    return load_config(TransferConfig, data, overrides)


def coerce(cls, cfg):
    """``cfg`` as a ``cls`` instance: ``None`` → defaults, dict → :func:`from_dict`."""
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return cfg
    if isinstance(cfg, dict):
        return from_dict(cls, cfg)
    raise ConfigError(f"expected a {cls.__name__} or a dict, got {type(cfg).__name__}.")


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in (new or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
