"""``RefineConfig``: the one schema of ``medkt refine`` (YAML ``configs/refine/*.yaml``, ``--set``).

Sections: ``network`` (the MONAI 2-D network), ``train`` (loop, optimiser, augmentation,
checkpoints, which weights are kept), ``labels`` (noisy-label handling), ``predict``
(test-time augmentation).  Top level: ``modality`` / ``window`` /
``plane`` for reading images the way ``medkt segment`` read them, and ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from medkt.config import load_config
from medkt.errors import ConfigError

NETWORKS = ("basicunet", "dynunet")
CONFIDENCE = ("none", "saliency")
SELECT = ("last", "val")
TTA = ("none", "hflip", "hvflip")
LOSSES = ("bce+dice", "bce")
CALIBRATE = ("none", "val")


@dataclass
class NetworkConfig:
    """The network (``monai.networks.nets``): ``basicunet`` (``BasicUNet``, ``features`` = its six
    widths) or ``dynunet`` (``DynUNet``, ``len(features) - 2`` stride-2 levels, widths = the first
    ``len(features) - 1`` features).  Inputs are one grey channel resized to
    ``image_size × image_size``; output one foreground logit."""

    name: str = "basicunet"
    features: tuple = (16, 16, 32, 64, 128, 16)
    image_size: int = 128
    dropout: float = 0.0

    def validate(self) -> "NetworkConfig":
        if self.name not in NETWORKS:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("refine network", self.name, NETWORKS)
        if len(self.features) != 6 or any(int(f) < 1 for f in self.features):
            raise ConfigError(f"network.features must be six positive widths, got {list(self.features)}.")
        if self.image_size < 16 or self.image_size % 16:
            raise ConfigError(f"network.image_size must be a multiple of 16 (≥ 16), got {self.image_size}.")
        self.features = tuple(int(f) for f in self.features)
        return self


@dataclass
class TrainConfig:
    """Training loop: ``epochs`` over all slices in batches of ``batch_size``; Adam(``lr``,
    ``weight_decay``) with cosine decay to ``lr·min_lr_ratio``; MONAI augmentation
    (``RandAffined`` with probability ``augment``; 0 disables it); a checkpoint every
    ``checkpoint_every`` epochs (atomic; ``--resume`` continues from it); ``threads``: torch
    CPU threads (0 = leave as is).  ``loss``: ``bce+dice`` (pixel-weighted binary cross-entropy +
    MONAI ``DiceLoss``) or ``bce`` alone (soft Dice is reported to bias uncertain borders toward
    larger masks; cross-entropy's optimum is the pixel-wise label frequency).

    What is kept (against the memorisation of label noise late in training):

    * ``ema``: exponential moving average of the weights, decay per optimiser step (0 = off,
      e.g. 0.95); the kept weights, validation and snapshots are then the average's.
    * ``ensemble``: keep the weights of the last ``ensemble`` epochs; the refiner averages their
      foreground probabilities (MedCLIP-SAMv2's checkpoint ensemble).  1 = the final weights.
    * ``select``: ``last`` (the final epoch) or ``val``: the validated epoch (every
      ``checkpoint_every`` epochs and the last) with the best refined DSC on ``--val-gt``; needs
      ground truth, ideally of a held-out split (``--val-images``).  Not with ``ensemble > 1``.
    """

    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-5
    augment: float = 0.5
    checkpoint_every: int = 5
    threads: int = 1
    device: str = "cpu"
    loss: str = "bce+dice"
    ema: float = 0.0
    ensemble: int = 1
    select: str = "last"

    def validate(self) -> "TrainConfig":
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError("train.epochs, train.batch_size and train.checkpoint_every must be ≥ 1.")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"train.ema is a decay per step in [0, 1) (0 = off), got {self.ema}.")
        if not 1 <= self.ensemble <= self.epochs:
            raise ConfigError(f"train.ensemble must be between 1 and train.epochs ({self.epochs}), "
                              f"got {self.ensemble}.")
        if self.loss not in LOSSES:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("train.loss", self.loss, LOSSES)
        if self.select not in SELECT:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("train.select", self.select, SELECT)
        if self.select == "val" and self.ensemble > 1:
            raise ConfigError("train.select=val keeps one epoch; it cannot be combined with train.ensemble > 1.",
                              hint="use one of --set train.select=val or --set train.ensemble=K")
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.lr must be > 0 and train.min_lr_ratio in [0, 1] "
                              f"(got {self.lr}, {self.min_lr_ratio}).")
        if not 0 <= self.augment <= 1:
            raise ConfigError(f"train.augment is a probability in [0, 1], got {self.augment}.")
        return self


@dataclass
class LabelConfig:
    """Noisy pseudo-labels (the MedCLIP-SAMv2 weakly supervised stage).

    * ``confidence: saliency`` weights each pixel by how much the saliency map agrees with its
      pseudo-label (foreground: ``s``, background: ``1 - s``, with ``s`` the min-max M2IB map that
      ``medkt segment`` wrote beside the mask); ``none`` weights every pixel 1.
    * ``ignore_below``: pixels whose confidence is below this are ignored (weight 0); only with
      ``confidence: saliency``.
    * ``min_weight``: floor of the confidence weights that are kept.
    * ``boundary_ignore``: pixels within this many pixels (on the slice's own grid) of the
      pseudo-label's border, inside or outside, get weight 0: the border is where zero-shot
      masks are least certain.  0 = off.
    * ``empty_slices``: ``keep`` (default: negatives teach the network where nothing is) or
      ``drop`` slices whose pseudo-mask is empty.
    * ``threshold``: foreground probability above which the refined mask is 1.
    """

    confidence: str = "none"
    ignore_below: float = 0.0
    min_weight: float = 0.0
    boundary_ignore: int = 0
    empty_slices: str = "keep"
    threshold: float = 0.5

    def validate(self) -> "LabelConfig":
        if self.confidence not in CONFIDENCE:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("label confidence", self.confidence, CONFIDENCE)
        if self.empty_slices not in ("keep", "drop"):
            raise ConfigError(f"labels.empty_slices must be 'keep' or 'drop', got '{self.empty_slices}'.")
        for name in ("ignore_below", "min_weight", "threshold"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ConfigError(f"labels.{name} must be in [0, 1], got {v}.")
        if self.boundary_ignore < 0:
            raise ConfigError(f"labels.boundary_ignore is a width in pixels (≥ 0), got {self.boundary_ignore}.")
        if self.ignore_below > 0 and self.confidence == "none":
            raise ConfigError("labels.ignore_below needs labels.confidence=saliency (the saliency gives "
                              "the confidence).", hint="add --set labels.confidence=saliency")
        return self


@dataclass
class PredictConfig:
    """Inference: ``tta`` (test-time augmentation) averages the foreground probability over the
    slice and its flips: ``none``, ``hflip`` (left-right) or ``hvflip`` (left-right, up-down and
    both); used by validation and by ``medkt segment --refiner``.  ``calibrate: val`` sets
    ``labels.threshold`` after training to the value (0.05 to 0.95 in steps of 0.05) with the best
    mean refined DSC on the ``--val-gt`` cases (needs them); ``none`` keeps it."""

    tta: str = "none"
    calibrate: str = "none"

    def validate(self) -> "PredictConfig":
        from medkt.errors import UnknownNameError
        if self.tta not in TTA:
            raise UnknownNameError("predict.tta", self.tta, TTA)
        if self.calibrate not in CALIBRATE:
            raise UnknownNameError("predict.calibrate", self.calibrate, CALIBRATE)
        return self


@dataclass
class RefineConfig:
    """Everything ``medkt refine`` needs (see module docstring)."""

    modality: str | None = None
    window: str | None = None
    plane: str = "axial"
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def validate(self) -> "RefineConfig":
        self.network.validate()
        self.train.validate()
        self.labels.validate()
        self.predict.validate()
        return self


def load_refine_config(source=None, overrides: list[str] | None = None, **fields) -> RefineConfig:
    """Config from a YAML path / preset name / dict / ``None`` (defaults), dotted ``overrides``,
    then top-level keyword ``fields`` (``None`` values are ignored)."""
    if isinstance(source, RefineConfig):
        from medkt.config import apply_overrides
        cfg = apply_overrides(source, list(overrides or []))
    else:
        if isinstance(source, str) or hasattr(source, "__fspath__"):
            from medkt.paths import config_file
            source = config_file("refine", source)
        cfg = load_config(RefineConfig, source, overrides)
    for k, v in fields.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg.validate()
