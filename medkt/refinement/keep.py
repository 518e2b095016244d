"""Which weights a ``medkt refine`` run keeps (``train.ema``, ``train.ensemble``,
``train.select``; see :class:`~medkt.refinement.config.TrainConfig`).

Late in training a network fitted to noisy pseudo-labels starts to memorise their errors; these
options keep something other than (or besides) the last epoch's weights: an exponential moving
average of the weights, the last ``ensemble`` epochs' weights (their probabilities are averaged at
inference), or the epoch with the best validation DSC.
"""
from __future__ import annotations

import logging

import numpy as np

from medkt.refinement.config import RefineConfig

log = logging.getLogger("medkt.refine")


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


class Keeper:
    """Which weights the run keeps (``train.ema``, ``train.ensemble``, ``train.select``; see
    :class:`~medkt.refinement.config.TrainConfig`): the EMA of the weights (when on), the
    snapshots of the last ``ensemble`` epochs and the best validated epoch."""

    def __init__(self, net, cfg: RefineConfig):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        self.cfg = cfg.train
        self.ema = (AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema), use_buffers=True)
                    if self.cfg.ema > 0 else None)
        self.net = net
        self.snapshots: dict[int, dict] = {}
        self.best: dict | None = None  # {"epoch", "val_dsc", "model"}

    @property
    def model(self):
        """The weights that are validated and kept: the EMA's when on, else the network's."""
        return self.ema.module if self.ema is not None else self.net

    def step(self) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def end_epoch(self, epoch: int, row: dict) -> None:
        if epoch > self.cfg.epochs - self.cfg.ensemble:
            self.snapshots[epoch] = _clone(self.model.state_dict())
        if self.cfg.select == "val" and "val_dsc" in row and np.isfinite(row["val_dsc"]) and (
                self.best is None or row["val_dsc"] > self.best["val_dsc"]):
            self.best = {"epoch": epoch, "val_dsc": float(row["val_dsc"]), "model": _clone(self.model.state_dict())}

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict() if self.ema is not None else None,
                "snapshots": self.snapshots, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.snapshots = dict(state.get("snapshots") or {})
        self.best = state.get("best")

    def kept(self) -> tuple[list, dict]:
        """``(networks, info)``: the kept weights, last epoch first (several for an ensemble), and
        ``{"kept_epochs": [...], "selected_by": "last" | "val"}``."""
        import copy
        if self.cfg.select == "val" and self.best is not None:
            m = copy.deepcopy(self.model)
            m.load_state_dict(self.best["model"])
            return [m.eval()], {"kept_epochs": [self.best["epoch"]], "selected_by": "val",
                                "selected_val_dsc": self.best["val_dsc"]}
        if self.cfg.select == "val":
            log.warning("train.select=val without validation DSC (no --val-gt case matched): keeping the last epoch")
        epochs = sorted((e for e in self.snapshots if e > self.cfg.epochs - self.cfg.ensemble), reverse=True)
        nets = []
        for e in epochs:
            m = copy.deepcopy(self.model)
            m.load_state_dict(self.snapshots[e])
            nets.append(m.eval())
        return nets, {"kept_epochs": epochs, "selected_by": "last"}
