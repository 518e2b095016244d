"""Image parametrisations for inversion: raw pixels or a decorrelated Fourier basis.

``fourier`` (feature-visualisation style): an image is described by the real and
imaginary parts of its 2-D real FFT, per channel, with the amplitude of frequency ``f``
scaled by ``1 / max(f, 1/size) ** decay`` (natural images have a ~1/f spectrum, so equal
steps on every coefficient change low frequencies most), then, for RGB models, mixed from
an opponent colour basis (luminance, red-green, blue-yellow; orthonormal, with the
luminance axis carrying most of the amplitude, as in the colour statistics of natural
images), and squashed into (0, 1) with a sigmoid.  Gradient steps in this basis are
"whitened": they do not build the high-frequency, colour-speckled patterns that pixel
steps favour.

Shapes: parameters ``[N, C, H, W // 2 + 1, 2]`` (float); rendered images ``[N, C, H, W]``
in (0, 1).  Everything is a differentiable torch function of the parameters.
"""
from __future__ import annotations

import math

import torch

#: Orthonormal opponent colour basis (rows: luminance, red-green, blue-yellow) in RGB.
OPPONENT_BASIS = torch.tensor([[1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
                               [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
                               [-1 / math.sqrt(6), 2 / math.sqrt(6), -1 / math.sqrt(6)]])
#: Relative amplitude of each opponent axis (luminance dominates natural-image colour variance).
OPPONENT_SCALE = torch.tensor([1.0, 0.4, 0.2])
#: Standard deviation of the initial Fourier coefficients (a nearly uniform grey image).
INIT_STD = 0.01


def spectrum_scale(size: int, decay: float, device=None) -> torch.Tensor:
    """``[size, size // 2 + 1]`` amplitude per rfft2 coefficient, normalised to RMS 1."""
    fy = torch.fft.fftfreq(size, device=device).view(-1, 1)
    fx = torch.fft.rfftfreq(size, device=device).view(1, -1)
    f = torch.sqrt(fy ** 2 + fx ** 2).clamp(min=1.0 / size)
    scale = f.pow(-float(decay))
    return scale / scale.pow(2).mean().sqrt()


def color_matrix(channels: int, decorrelate: bool, device=None) -> torch.Tensor | None:
    """``[C, C]`` matrix taking opponent-basis values to RGB (``None``: channels stay as they are)."""
    if channels != 3 or not decorrelate:
        return None
    return (OPPONENT_BASIS.t() * OPPONENT_SCALE.view(1, -1)).to(device)


def init_fourier(n: int, channels: int, size: int, seeds, device=None) -> torch.Tensor:
    """Initial parameters ``[n, C, size, size // 2 + 1, 2]``: N(0, INIT_STD²), one generator per image."""
    out = torch.empty(n, channels, size, size // 2 + 1, 2)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        out[i] = torch.randn(channels, size, size // 2 + 1, 2, generator=g) * INIT_STD
    return out.to(device)


def render_fourier(param: torch.Tensor, decay: float = 1.0, decorrelate: bool = True) -> torch.Tensor:
    """Images ``[N, C, H, W]`` in (0, 1) from Fourier parameters ``[N, C, H, W // 2 + 1, 2]``."""
    n, c, h = param.shape[:3]
    spec = torch.view_as_complex(param.contiguous()) * spectrum_scale(h, decay, param.device)
    x = torch.fft.irfft2(spec, s=(h, h), norm="ortho")  # orthonormal: pixel RMS = coefficient RMS
    mix = color_matrix(c, decorrelate, param.device)
    if mix is not None:
        x = torch.einsum("ij,njhw->nihw", mix, x)
    return torch.sigmoid(x)
