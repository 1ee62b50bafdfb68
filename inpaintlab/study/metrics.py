"""Per-cell numbers for a sweep, so settings are compared by measurement rather than by eye.

All metrics compare the output with the input image at the output's size, on 8-bit RGB values scaled to [0, 1]:

* ``change_in_mask`` = mean |out − in| over pixels where the (binary, mode-applied) mask is 1;
* ``change_outside`` = mean |out − in| over pixels where the overlay mask is 0 — exactly 0.0 whenever the final overlay
  is on (whole picture and only masked): a regression alarm for the paste-back;
* ``seam`` = mean over the mask's edge band (pixels within `band` px of the mask boundary, inside or outside) of
  | |∇out| − |∇in| |, with ∇ the forward-difference gradient magnitude of the luma — high when the edit leaves a visible edge;
* ``lpips`` = LPIPS(alex) between in and out, only when the `lpips` package is installed (otherwise absent).
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np
from PIL import Image, ImageFilter


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def _gradient(luma: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(luma)
    gy = np.zeros_like(luma)
    gx[:, :-1] = luma[:, 1:] - luma[:, :-1]
    gy[:-1, :] = luma[1:, :] - luma[:-1, :]
    return np.hypot(gx, gy)


def edge_band(mask: Image.Image, band: int = 4) -> np.ndarray:
    """Boolean array: pixels within `band` px of the boundary of the binary mask (dilation minus erosion)."""
    size = 2 * band + 1
    m = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
    grown = np.asarray(m.filter(ImageFilter.MaxFilter(size))) > 0
    shrunk = np.asarray(m.filter(ImageFilter.MinFilter(size))) > 0
    return grown & ~shrunk


def compute_metrics(original: Image.Image, output: Image.Image, mask: Image.Image, overlay_mask: Image.Image | None = None,
                    band: int = 4) -> dict[str, float]:
    """Metrics of one cell; `mask` is the binary repaint mask (255 = repaint), `overlay_mask` the blurred one."""
    if original.size != output.size:
        original = original.resize(output.size, Image.Resampling.LANCZOS)
    if mask.size != output.size:
        mask = mask.resize(output.size, Image.Resampling.NEAREST)
    a, b = _array(original), _array(output)
    diff = np.abs(a - b).mean(axis=2)
    inside = np.asarray(mask.convert("L")) >= 128
    untouched = np.asarray((overlay_mask or mask).convert("L").resize(output.size)) == 0
    weights = np.array([0.299, 0.587, 0.114])
    grad_delta = np.abs(_gradient(b @ weights) - _gradient(a @ weights))
    seam_band = edge_band(mask, band)
    metrics = {
        "change_in_mask": float(diff[inside].mean()) if inside.any() else 0.0,
        "change_outside": float(diff[untouched].mean()) if untouched.any() else 0.0,
        "seam": float(grad_delta[seam_band].mean()) if seam_band.any() else 0.0,
    }
    score = _lpips(original, output)
    if score is not None:
        metrics["lpips"] = score
    return metrics


@functools.lru_cache(maxsize=1)
def _lpips_net():
    import lpips  # optional; never a dependency

    return lpips.LPIPS(net="alex", verbose=False)


def _lpips(a: Image.Image, b: Image.Image) -> float | None:
    if importlib.util.find_spec("lpips") is None:
        return None
    import torch

    def to_tensor(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(_array(image)).permute(2, 0, 1)[None].float() * 2 - 1

    with torch.no_grad():
        return float(_lpips_net()(to_tensor(a), to_tensor(b)))
