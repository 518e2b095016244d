"""Exact-math speed-ups used while inverting (weights frozen).

:func:`patchify_convs` — a ViT's patch embedding is a ``Conv2d`` whose kernel equals its
stride.  On CPU, PyTorch's convolution backward for the *input* (all inversion needs) is
several times slower than the same computation written as reshape + matmul, so inside
the context every such conv computes ``patches @ W.T`` instead.  Same math; only the
summation order differs (float rounding).  The modules are restored on exit.
"""
from __future__ import annotations

import contextlib
import types

import torch
import torch.nn.functional as F
from torch import nn


def _is_patchify(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.groups == 1 and tuple(m.kernel_size) == tuple(m.stride)
            and m.padding in ((0, 0), "valid") and tuple(m.dilation) == (1, 1) and m.padding_mode == "zeros")


def _patch_forward(self, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    ph, pw = self.kernel_size
    gh, gw = h // ph, w // pw
    if gh * ph != h or gw * pw != w:  # ragged input: leave it to the convolution
        return F.conv2d(x, self.weight, self.bias, self.stride)
    t = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * ph * pw)
    y = F.linear(t, self.weight.reshape(self.out_channels, -1), self.bias)
    return y.reshape(b, gh, gw, self.out_channels).permute(0, 3, 1, 2)


@contextlib.contextmanager
def patchify_convs(model: nn.Module, enabled: bool = True):
    """Inside the context, kernel == stride convolutions run as reshape + matmul."""
    patched = []
    if enabled:
        for m in model.modules():
            if _is_patchify(m) and "forward" not in m.__dict__:
                m.forward = types.MethodType(_patch_forward, m)
                patched.append(m)
    try:
        yield len(patched)
    finally:
        for m in patched:
            del m.forward
