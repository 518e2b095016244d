"""The refiner network (MONAI 2-D ``BasicUNet`` / ``DynUNet``) and :class:`Refiner`, which applies
a trained one.

A model folder (``medkt refine -o MODEL_DIR``) holds ``model.safetensors`` (the weights) and
``refiner.json`` (``{"format": "medkt-refiner", "version": 1, "config": <RefineConfig>, ...}``);
with a checkpoint ensemble (``train.ensemble = K``) ``refiner.json`` ``members`` lists the K weight
files (``model.safetensors`` = the last epoch, ``model-epochNNN.safetensors`` the others);
``checkpoint.pt`` (weights + optimiser, for ``--resume``) and ``run.json`` sit beside them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medkt.errors import InputError, WeightsError

log = logging.getLogger("medkt.refine")

FORMAT = "medkt-refiner"
WEIGHTS = "model.safetensors"
META = "refiner.json"


def _basicunet(net) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=tuple(net.features),
                     dropout=net.dropout)


def _dynunet(net) -> torch.nn.Module:
    from monai.networks.nets import DynUNet
    widths = list(net.features[:-1])
    strides = [1] + [2] * (len(widths) - 1)
    return DynUNet(spatial_dims=2, in_channels=1, out_channels=1, kernel_size=[3] * len(widths), strides=strides,
                   upsample_kernel_size=strides[1:], filters=widths, dropout=net.dropout or None,
                   res_block=True)


#: network name -> builder(NetworkConfig) -> nn.Module mapping ``[B, 1, S, S]`` → logits ``[B, 1, S, S]``
BUILDERS: dict[str, Callable] = {"basicunet": _basicunet, "dynunet": _dynunet}


def build_network(net) -> torch.nn.Module:
    """The network of a :class:`~medkt.refinement.config.NetworkConfig`."""
    from medkt.errors import look_up
    return look_up("refine network", net.name, BUILDERS)(net)


def gray01(image: np.ndarray) -> np.ndarray:
    """``H×W`` / ``H×W×C`` image in [0, 1] (uint8 scaled by 1/255) → ``H×W`` float32 grey."""
    a = np.asarray(image)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return a.mean(axis=-1) if a.ndim == 3 else a


#: test-time augmentation name -> the flips (tensor dims of a ``[B, 1, S, S]`` batch) averaged over
TTA_FLIPS: dict[str, tuple] = {"none": ((),), "hflip": ((), (3,)), "hvflip": ((), (3,), (2,), (2, 3))}


@torch.no_grad()
def predict_probabilities(net, images: Sequence[np.ndarray], size: int, batch_size: int = 16,
                          tta: str = "none") -> list[np.ndarray]:
    """Foreground probability ``H×W`` float32 in [0, 1] of each ``H×W`` (or ``H×W×C``) image in [0, 1]:
    resized (bilinear) to ``size²``, one forward pass per network and view, logits resized back to
    ``H×W`` (bilinear), sigmoid, averaged.

    ``net``: one network or a list of them (a checkpoint ensemble: their probabilities are
    averaged); ``tta``: a :data:`TTA_FLIPS` name (each flipped view is flipped back before averaging).
    """
    nets = list(net) if isinstance(net, (list, tuple)) else [net]
    for n in nets:
        n.eval()
    from medkt.errors import look_up
    flips = look_up("predict.tta", tta, TTA_FLIPS)
    out: list[np.ndarray] = []
    images = [gray01(im) for im in images]
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        x = torch.stack([F.interpolate(torch.as_tensor(im)[None, None], size=(size, size), mode="bilinear",
                                       align_corners=False)[0] for im in chunk])
        acc = [torch.zeros(im.shape) for im in chunk]
        for n in nets:
            for dims in flips:
                logits = n(torch.flip(x, dims) if dims else x)
                logits = torch.flip(logits, dims) if dims else logits
                for i, (lg, im) in enumerate(zip(logits, chunk)):
                    back = F.interpolate(lg[None], size=im.shape, mode="bilinear", align_corners=False)[0, 0]
                    acc[i] += torch.sigmoid(back)
        k = len(nets) * len(flips)
        out += [(a / k).numpy().astype(np.float32) for a in acc]
    return out


class Refiner:
    """A trained refiner: ``Refiner.load(MODEL_DIR)``, then :meth:`predict` on prepared slices."""

    def __init__(self, net, config, meta: dict | None = None, path: Path | None = None):
        self.nets = list(net) if isinstance(net, (list, tuple)) else [net]
        self.net = self.nets[0]
        self.config, self.meta, self.path = config, meta or {}, path

    @classmethod
    def load(cls, model_dir: str | Path) -> "Refiner":
        """Load ``MODEL_DIR/model.safetensors`` + ``refiner.json``.

        Raises:
            WeightsError: not a refiner folder, or weights that do not fit the recorded network.
        """
        from safetensors.torch import load_model

        from medkt.refinement.config import load_refine_config
        d = Path(model_dir).expanduser()
        meta_path, weights = d / META, d / WEIGHTS
        if not meta_path.is_file() or not weights.is_file():
            raise WeightsError(f"no trained refiner in this folder (needs {META} and {WEIGHTS}).", path=d,
                               hint="pass the -o folder of a finished `medkt refine` run")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise WeightsError(f"{META} is unreadable ({e}).", path=meta_path) from None
        if meta.get("format") != FORMAT:
            raise WeightsError(f"{META} is not a medkt refiner description.", path=meta_path)
        cfg = load_refine_config(meta["config"])
        nets = []
        for name in meta.get("members") or [WEIGHTS]:
            net = build_network(cfg.network)
            try:
                load_model(net, str(d / name))
            except (RuntimeError, OSError) as e:
                raise WeightsError(f"the weights do not fit the recorded {cfg.network.name} network ({e}).",
                                   path=d / name, hint="retrain with `medkt refine`") from None
            nets.append(net.eval())
        return cls(nets, cfg, meta, d)

    def describe(self) -> dict:
        import hashlib
        out = {"name": "refiner", "network": self.config.network.name, "path": str(self.path) if self.path else None,
               "image_size": self.config.network.image_size, "threshold": self.config.labels.threshold,
               "members": len(self.nets), "tta": self.config.predict.tta}
        if self.path is not None and (self.path / WEIGHTS).is_file():
            out["sha256"] = hashlib.sha256((self.path / WEIGHTS).read_bytes()).hexdigest()
        return out

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Foreground probability per image (see :func:`predict_probabilities`)."""
        if not len(images):
            return []
        for im in images:
            if np.asarray(im).ndim not in (2, 3):
                raise InputError(f"the refiner takes 2-D slices, got shape {np.shape(im)}.")
        return predict_probabilities(self.nets, images, self.config.network.image_size,
                                     self.config.train.batch_size, self.config.predict.tta)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Binary masks ``H×W`` bool (probability > ``labels.threshold``)."""
        return [p > self.config.labels.threshold for p in self.probabilities(images)]


class RefinedSegmenter:
    """Stands in for :class:`medkt.segmentation.Segmenter` in ``medkt.segment(..., refiner=DIR)``:
    masks come from the refiner alone (no saliency model, no SAM, no prompt).  Its
    :class:`~medkt.segmentation.pipeline.SliceResult` holds the foreground probability as
    ``saliency``, and the refined mask as both ``coarse`` and ``mask``."""

    def __init__(self, refiner: Refiner):
        self.refiner = refiner
        self.model = None
        self.finetuned = None
        self.timings: dict[str, float] = {}

    def describe(self) -> dict:
        return {"refiner": self.refiner.describe()}

    def segment_slices(self, images: Sequence[np.ndarray], prompt: str | None = None,
                       names: Sequence[str] | None = None) -> list:
        import time

        from medkt.segmentation.pipeline import SliceResult
        from medkt.segmentation.prompts import Prompts
        t = time.perf_counter()
        probs = self.refiner.probabilities(list(images))
        self.timings["refiner_s"] = self.timings.get("refiner_s", 0.0) + time.perf_counter() - t
        thr = self.refiner.config.labels.threshold
        out = []
        for p in probs:
            m = p > thr
            out.append(SliceResult(p, m, m, Prompts(None, None, None, status="ok"), "ok"))
        return out


def as_refiner(refiner) -> Refiner:
    """A :class:`Refiner` from a model folder path or a ready object."""
    return refiner if isinstance(refiner, Refiner) else Refiner.load(refiner)
