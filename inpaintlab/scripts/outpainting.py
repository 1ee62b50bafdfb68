"""The image-side parts of A1111 v1.10's outpainting scripts: canvas geometry and Outpainting mk2's matched noise.

`expansion` is how both scripts grow the canvas: the requested pixels per side, the total rounded up to a multiple of
64, the extra shared between opposite sides in proportion. `matched_noise` is Outpainting mk2's `get_matched_noise`:
noise with the spectrum (magnitude^noise_q, phase) of the known part of the picture and its per-channel histogram,
written into the masked area. It uses NumPy's PCG64 generator seeded with 0, as A1111 does, so it is deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InpaintlabError
from .rows import DIRECTIONS


class OutpaintError(InpaintlabError):
    """Outpainting arguments that cannot be used; the message names the argument."""


@dataclass(frozen=True)
class Expansion:
    left: int
    right: int
    up: int
    down: int
    width: int      # the new canvas
    height: int


def expansion(width: int, height: int, pixels: int, directions: tuple[str, ...] = DIRECTIONS) -> Expansion:
    """Both outpainting scripts' canvas: `ceil((W + left + right) / 64) · 64` wide, the added width shared as
    `left = left · extra // (left + right)`, `right = extra − left` (likewise vertically)."""
    bad = set(directions) - set(DIRECTIONS)
    if bad:
        raise OutpaintError(f"unknown outpainting direction(s) {sorted(bad)}; choose from {', '.join(DIRECTIONS)}")
    if pixels <= 0:
        raise OutpaintError(f"pixels to expand must be positive, got {pixels}")
    left, right, up, down = (pixels if d in directions else 0 for d in DIRECTIONS)
    tw = math.ceil((width + left + right) / 64) * 64
    th = math.ceil((height + up + down) / 64) * 64
    if left:
        left = left * (tw - width) // (left + right)
    if right:
        right = tw - width - left
    if up:
        up = up * (th - height) // (up + down)
    if down:
        down = th - height - up
    return Expansion(left, right, up, down, tw, th)


def _fft2c(a: torch.Tensor) -> torch.Tensor:
    dims = (0, 1)
    return torch.fft.ifftshift(torch.fft.fft2(torch.fft.fftshift(a, dim=dims), dim=dims, norm="ortho"), dim=dims)


def _ifft2c(a: torch.Tensor) -> torch.Tensor:
    dims = (0, 1)
    return torch.fft.ifftshift(torch.fft.ifft2(torch.fft.fftshift(a, dim=dims), dim=dims, norm="ortho"), dim=dims)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """np.interp: linear between the sample points, the end values outside them."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    j = torch.searchsorted(xp, x, right=True).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[j - 1], xp[j], fp[j - 1], fp[j]
    out = f0 + (x - x0) * (f1 - f0) / (x1 - x0)
    out = torch.where(x <= xp[0], fp[0], out)
    return torch.where(x >= xp[-1], fp[-1], out)


def match_histograms(source: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram matching of float (N, C) values (scikit-image 0.21's float path: unique values, their
    cumulative quantiles, linear interpolation into the template's quantiles)."""
    out = torch.empty_like(source)
    for c in range(source.shape[1]):
        values, inverse, counts = torch.unique(source[:, c], sorted=True, return_inverse=True, return_counts=True)
        t_values, t_counts = torch.unique(template[:, c], sorted=True, return_counts=True)
        sq = torch.cumsum(counts, 0).double() / source.shape[0]
        tq = torch.cumsum(t_counts, 0).double() / template.shape[0]
        out[:, c] = _interp(sq, tq, t_values.double())[inverse]
    return out


def matched_noise(src: np.ndarray, mask: np.ndarray, noise_q: float = 1.0, color_variation: float = 0.05
                  ) -> np.ndarray:
    """Outpainting mk2's `get_matched_noise`: `src` (H, W, 3) float in [0, 1], `mask` (H, W, 3) in {0, 1} (1 = fill);
    returns the picture with shaped, histogram-matched noise in the masked area, clipped to [0, 1] (float64)."""
    if src.ndim != 3 or src.shape != mask.shape:
        raise OutpaintError(f"matched_noise: image {src.shape} and mask {mask.shape} must both be (H, W, 3)")
    s = torch.from_numpy(np.asarray(src, dtype=np.float64))
    m = torch.from_numpy(np.asarray(mask, dtype=np.float64))
    h, w, _ = s.shape
    grey = m.mean(dim=2)
    img_mask, ref_mask = grey > 1e-6, grey < 1e-3
    if not ref_mask.any():
        raise OutpaintError("matched_noise: the mask covers the whole picture; nothing to match")
    win = s * (1 - grey)[..., None]
    top = win.max()
    if top <= 0:  # A1111 divides by zero here (an all-black known area) and fills NaN
        raise OutpaintError("matched_noise: the unmasked picture is all black; its spectrum is undefined")
    win = win / top + s.mean() * m
    spec = _fft2c(win)
    mag = spec.abs()
    phase = spec / mag
    noise = torch.from_numpy(np.random.default_rng(0).random((h, w, 3)))  # A1111's fixed PCG64 seed
    g = noise.mean(dim=2)
    noise = noise * color_variation + ((1 - color_variation) * g)[..., None]
    scale = min(h, w)
    xi = (torch.arange(h, dtype=torch.float64) / h * 2 - 1) * (h / scale)
    yj = (torch.arange(w, dtype=torch.float64) / w * 2 - 1) * (w / scale)
    window = 1 / ((xi[:, None] ** 2 + 1) * (yj[None, :] ** 2 + 1))
    noise = _ifft2c(_fft2c(noise) * window[..., None]).real
    shaped_spec = _fft2c(noise).abs() ** 2 * mag ** noise_q * phase
    shaped = _ifft2c(shaped_spec).real
    shaped = shaped - shaped.min()
    shaped = shaped / shaped.max()
    shaped[img_mask] = match_histograms(shaped[img_mask], s[ref_mask])
    return (s * (1 - m) + shaped * m).clamp(0, 1).numpy()
