"""Learning-rate schedules and per-image early stopping for inversion.

:func:`lr_at` — the lr of step ``step`` (0-based) of a ``steps``-step run: a linear
warm-up from 0 over the first ``warmup * steps`` steps, then ``cosine`` annealing to 0,
``linear`` decay to 0, or ``constant``.  The decay phase spans the steps after the
warm-up, so a schedule ends at 0 whatever the warm-up.

:class:`PlateauStopper` — decides, per image, when its objective has stopped improving
(:class:`~medkt.transfer.config.EarlyStopConfig`).  It sees only each image's own
objective values, so a decision never depends on the other images of the batch.
"""
from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "constant", "linear")


def lr_at(cfg, step: int) -> float:
    """Learning rate at ``step`` for an :class:`~medkt.transfer.config.InversionConfig` ``cfg``."""
    steps = max(1, int(cfg.steps))
    warm = int(round(float(cfg.warmup) * steps))
    if warm > 0 and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, steps - warm)
    t = min(1.0, (step - warm) / span)
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - t)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * t))


class PlateauStopper:
    """Per-image plateau detection on a smoothed objective (lower is better).

    ``update(step, values, index)`` takes the objectives ``[k]`` of the images ``index``
    (still active) at ``step`` and returns the positions (into ``index``) of the images
    that stop now.  ``stopped_at[i]`` is the step count image ``i`` ran (``steps`` if it
    never stopped).
    """

    def __init__(self, cfg, n: int, steps: int):
        self.cfg, self.steps = cfg, int(steps)
        self.ema = torch.full((n,), float("nan"))
        self.history: dict[int, torch.Tensor] = {}  # check step -> ema snapshot
        self.stopped_at = torch.full((n,), int(steps), dtype=torch.int64)
        self.min_step = int(round(cfg.min_steps * steps))

    @property
    def enabled(self) -> bool:
        return self.cfg.patience > 0

    def update(self, step: int, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``values`` ``[k]`` and ``index`` ``[k]`` on any device (no host sync except at check steps);
        returns the positions (into ``index``, on the CPU) of the images that stop now."""
        values = values.detach().float()
        index = index.to(values.device)
        if self.ema.device != values.device:
            self.ema = self.ema.to(values.device)
        prev = self.ema[index]
        beta = float(self.cfg.ema)
        self.ema[index] = torch.where(torch.isnan(prev), values, beta * prev + (1 - beta) * values)
        every = max(1, int(self.cfg.check_every))
        if (step + 1) % every:
            return torch.empty(0, dtype=torch.int64)
        self.history[step] = self.ema.clone()
        old = self.history.get(step - int(self.cfg.patience))
        if old is None or step + 1 < self.min_step:
            return torch.empty(0, dtype=torch.int64)
        for s in [s for s in self.history if s < step - int(self.cfg.patience)]:
            del self.history[s]
        gain = old[index] - self.ema[index]  # improvement over the last ``patience`` steps
        stop = torch.nonzero(gain < float(self.cfg.min_delta)).flatten().cpu()
        self.stopped_at[index.cpu()[stop]] = step + 1
        return stop
