"""Soft inpainting (A1111 v1.10's built-in extension) and Differential Diffusion, one function per stage.

Soft inpainting replaces three pieces of the binary inpaint path:

1. masks are not rounded (``mask_round = False``): the latent mask and the 9-channel conditioning mask keep fractional
   values, so mask blur sets the width of a soft transition;
2. every denoiser call blends with ``latent_blend(init_latent, denoised, modified_nmask(nmask, sigma))`` instead of
   ``denoised * nmask + init * (1 - nmask)``, and the final latent blend is skipped;
3. the pixel composite uses a mask built from how far each latent pixel moved (``difference_mask`` →
   ``overlay_mask_image``) over the unmodified original (``soft_overlays``).

Conventions as in the rest of ``masking``: ``nmask`` is 1 where the pixel is regenerated; 8-bit overlay masks are 255
where the generated pixel shows. The arithmetic (float32 mask power, float64 magnitudes, float32 numpy composite,
truncating uint8 cast, Pillow resizes and blur) follows A1111 v1.10.1 so that results agree to the last bit where the
same libraries are used.

Differential Diffusion (Levin & Fried 2023, reference pipeline) is here as its per-step rule, ``differential_masks`` and
``change_map_to_latent``; the denoiser wrapper is ``samplers.DifferentialBlend``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from .blend import make_overlay
from .crop import uncrop
from ..ui_numbers import ui_number
from .resize import resize_image

__all__ = [
    "SoftInpaintingSettings",
    "SOFT_INFOTEXT_KEYS",
    "modified_nmask",
    "latent_blend",
    "gaussian_kernel",
    "weighted_histogram_filter",
    "smootherstep",
    "mask_scalar",
    "latent_distance",
    "difference_mask",
    "overlay_mask_image",
    "overlay_source",
    "soft_overlays",
    "differential_masks",
    "change_map_to_latent",
]

# Infotext keys A1111 writes (in this order, after "Soft inpainting enabled: True"), by our parameter name.
SOFT_INFOTEXT_KEYS = {
    "schedule_bias": "Soft inpainting schedule bias",
    "preservation_strength": "Soft inpainting preservation strength",
    "transition_contrast_boost": "Soft inpainting transition contrast boost",
    "mask_influence": "Soft inpainting mask influence",
    "difference_threshold": "Soft inpainting difference threshold",
    "difference_contrast": "Soft inpainting difference contrast",
}
SOFT_ENABLED_KEY = "Soft inpainting enabled"

# A1111's UI slider ranges (min, max); values outside are refused rather than silently run.
_RANGES = {
    "schedule_bias": (0.0, 8.0),
    "preservation_strength": (0.0, 8.0),
    "transition_contrast_boost": (1.0, 32.0),
    "mask_influence": (0.0, 1.0),
    "difference_threshold": (0.0, 8.0),
    "difference_contrast": (0.0, 8.0),
}


@dataclasses.dataclass(frozen=True)
class SoftInpaintingSettings:
    """The six soft-inpainting parameters with A1111's defaults and UI labels.

    schedule_bias ("Schedule bias", A1111 ``mask_blend_power``): power of sigma in the mask exponent.
    preservation_strength ("Preservation strength", ``mask_blend_scale``): scale of the mask exponent.
    transition_contrast_boost ("Transition contrast boost", ``inpaint_detail_preservation``): power d of the magnitude
        mean in ``latent_blend``.
    mask_influence ("Mask influence", ``composite_mask_influence``): how much the mask biases the difference threshold.
    difference_threshold ("Difference threshold"): latent distance at which the original is 50 % opaque.
    difference_contrast ("Difference contrast"): sharpness of that transition.
    """

    schedule_bias: float = 1.0
    preservation_strength: float = 0.5
    transition_contrast_boost: float = 4.0
    mask_influence: float = 0.0
    difference_threshold: float = 0.5
    difference_contrast: float = 2.0

    def __post_init__(self) -> None:
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"soft inpainting {name} must be a number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"soft inpainting {name} must be in [{low:g}, {high:g}] (A1111's range), got {value}")

    def infotext(self) -> dict[str, Any]:
        """The seven keys A1111 adds to the infotext, in its order."""
        return {SOFT_ENABLED_KEY: True,
                **{key: ui_number(getattr(self, name)) for name, key in SOFT_INFOTEXT_KEYS.items()}}

    @classmethod
    def from_infotext(cls, fields: dict[str, str]) -> "SoftInpaintingSettings | None":
        """Settings from parsed infotext fields; None unless ``Soft inpainting enabled: True``. Missing keys take the
        defaults, values are read as floats (A1111 prints them as the UI or API sent them, ``1`` or ``1.0``)."""
        if str(fields.get(SOFT_ENABLED_KEY, "")).strip() != "True":
            return None
        values = {name: float(fields[key]) for name, key in SOFT_INFOTEXT_KEYS.items() if key in fields}
        return cls(**values)


# --- per-step latent blend ---------------------------------------------------------------------------------------------

def modified_nmask(nmask: torch.Tensor, sigma: torch.Tensor | float, schedule_bias: float = 1.0,
                   preservation_strength: float = 0.5) -> torch.Tensor:
    """Blend weight of the denoised latent at noise level ``sigma``: ``nmask ** (sigma ** bias * strength)``.

    nmask = 1 stays 1 (fully generated), 0 stays 0 (original) while the exponent is > 0; a strength of 0 gives
    ``0 ** 0 = 1`` everywhere. Early steps (large sigma) push partial pixels towards the original. ``sigma`` is the
    value of this denoiser call (k-diffusion samplers: its sigma; A1111's DDIM-type samplers pass a timestep), a 0-dim
    tensor keeps the exponent in float32 and the result in nmask's dtype, as A1111's ``torch.pow`` does.
    """
    sigma = torch.as_tensor(sigma, dtype=torch.float32 if not torch.is_tensor(sigma) else None)
    if sigma.ndim != 0:
        raise ValueError(f"sigma must be one value (A1111 takes sigma[0]), got shape {tuple(sigma.shape)}")
    return torch.pow(nmask, (sigma.to(nmask.device) ** schedule_bias) * preservation_strength)


def latent_blend(init_latent: torch.Tensor, current: torch.Tensor, t: torch.Tensor,
                 transition_contrast_boost: float = 4.0) -> torch.Tensor:
    """Lerp ``init_latent → current`` by ``t`` per pixel, with the 4-vector length set to the power mean
    ``((1 − t)|a|^d + t|b|^d)^(1/d)`` (d = ``transition_contrast_boost``) computed in float64.

    init_latent (a), current (b): [B, C, h, w]. t: [C, h, w] (A1111's shared nmask) or [B or 1, C or 1, h, w]; its
    channel 0 weighs the magnitudes. The lerp stays in the latents' dtype, the norms are taken in that dtype and then
    promoted, 1e-5 is added to the lerp's length, and the scale factor goes back to the latents' dtype before the
    multiply: A1111's order. Even with t ∈ {0, 1} the result is not the plain blend but ``v·|v| / (|v| + 1e-5)``.
    """
    if init_latent.ndim != 4 or current.shape != init_latent.shape:
        raise ValueError(f"init_latent and current must be equal [B, C, h, w] tensors, got {tuple(init_latent.shape)} "
                         f"and {tuple(current.shape)}")
    if t.ndim == 3:
        t2, t3 = t[None], t[0][None, None]
    elif t.ndim == 4:
        t2, t3 = t, t[:, 0][:, None]
    else:
        raise ValueError(f"t must be [C, h, w] or [B, C, h, w], got {tuple(t.shape)}")
    d = transition_contrast_boost
    interp = init_latent * (1 - t2) + current * t2
    wide = torch.float32 if interp.device.type == "mps" else torch.float64  # mps has no float64 (A1111 does the same)
    current_length = torch.norm(interp, p=2, dim=1, keepdim=True).to(wide) + 0.00001
    a_part = torch.norm(init_latent, p=2, dim=1, keepdim=True).to(wide).pow(d) * (1 - t3)
    b_part = torch.norm(current, p=2, dim=1, keepdim=True).to(wide).pow(d) * t3
    desired = (a_part + b_part).pow(1 / d)
    return interp * (desired / current_length).to(interp.dtype)


# --- difference-based overlay mask ------------------------------------------------------------------------------------

def gaussian_kernel(stddev_radius: float = 1.5, max_radius: int = 2) -> tuple[np.ndarray, int]:
    """A1111's tapered Gaussian kernel, ``(kernel [2r+1, 2r+1] float64, centre r)``.

    ``g(r²) = exp(−r²/σ²)`` (no factor 2), shifted and scaled so it is 1 at the centre and 0 at radius ``r + 1``,
    clipped at 0. For σ = 1.5, r = 2: centre 1, edge neighbours 0.63449, diagonal 0.40013, sum 6.528106.
    """
    zero_at = (max_radius + 1.0) ** 2
    g0 = math.exp(-zero_at / (stddev_radius * stddev_radius))
    scale = 1 / (1 - g0)
    size = 2 * max_radius + 1
    kernel = np.zeros((size, size))
    for y in range(size):
        for x in range(size):
            r2 = float(y - max_radius) ** 2.0 + float(x - max_radius) ** 2.0
            value = (math.exp(-r2 / (stddev_radius * stddev_radius)) - g0) * scale
            kernel[y, x] = max(0.0, value)
    return kernel, max_radius


def weighted_histogram_filter(img: np.ndarray, kernel: np.ndarray, kernel_center: int | Sequence[int],
                              percentile_min: float = 0.0, percentile_max: float = 1.0,
                              min_width: float = 1.0) -> np.ndarray:
    """Weighted-percentile filter: per pixel, the mean of the neighbourhood values between two weighted percentiles.

    For each pixel the in-image part of the kernel window (truncated at the borders, no padding) is sorted by value
    (stable: ties keep row-major window order); each value occupies ``[cum, cum + weight)`` of the weight stack. The
    output is the overlap-weighted mean of the values overlapping ``[sum·pmin, sum·pmax)``; a window narrower than
    ``min_width`` is widened to it around its centre and clamped into ``[0, sum]``. (0.9, 1.0) is a soft maximum,
    (0.25, 0.75) a soft median. Vectorised over pixels, accumulating in float64 in A1111's order; returns img's dtype.
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"img must be a 2-D array, got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.floating) or not np.isfinite(img).all():
        raise ValueError("img must hold finite floating-point values")
    if min_width <= 0:
        raise ValueError(f"min_width must be > 0, got {min_width}")
    kernel = np.asarray(kernel, dtype=np.float64)
    cy, cx = (kernel_center, kernel_center) if np.ndim(kernel_center) == 0 else tuple(kernel_center)
    h, w = img.shape
    offsets = [(ky - cy, kx - cx) for ky in range(kernel.shape[0]) for kx in range(kernel.shape[1])]
    n = len(offsets)
    # Out-of-image slots get weight 0 and +inf so they sort last; a zero weight leaves every sum unchanged.
    values = np.full((h, w, n), np.inf, dtype=img.dtype)
    weights = np.zeros((h, w, n))
    for k, (dy, dx) in enumerate(offsets):
        ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
        src_y, src_x = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
        values[ys, xs, k] = img[src_y, src_x]
        weights[ys, xs, k] = kernel[dy + cy, dx + cx]
    order = np.argsort(values, axis=2, kind="stable")
    values = np.take_along_axis(values, order, axis=2)
    weights = np.take_along_axis(weights, order, axis=2)

    lows = np.empty_like(weights)
    highs = np.empty_like(weights)
    total = np.zeros((h, w))
    for k in range(n):  # sequential sums, as a running Python sum would add them
        lows[..., k] = total
        total = total + weights[..., k]
        highs[..., k] = total
    window_min = total * percentile_min
    window_max = total * percentile_max
    narrow = (window_max - window_min) < min_width
    centre = (window_min + window_max) / 2
    window_min = np.where(narrow, centre - min_width / 2, window_min)
    window_max = np.where(narrow, centre + min_width / 2, window_max)
    over = narrow & (window_max > total)
    window_max = np.where(over, total, window_max)
    window_min = np.where(over, total - min_width, window_min)
    under = narrow & (window_min < 0)
    window_min = np.where(under, 0.0, window_min)
    window_max = np.where(under, float(min_width), window_max)

    value = np.zeros((h, w))
    value_weight = np.zeros((h, w))
    for k in range(n):
        overlaps = (window_min < highs[..., k]) & (window_max > lows[..., k]) & (weights[..., k] > 0)
        part = np.minimum(window_max, highs[..., k]) - np.maximum(window_min, lows[..., k])
        sample = np.where(overlaps, values[..., k], 0).astype(np.float64)
        value = value + np.where(overlaps, sample * part, 0.0)
        value_weight = value_weight + np.where(overlaps, part, 0.0)
    out = np.divide(value, value_weight, out=np.zeros_like(value), where=value_weight != 0)
    return out.astype(img.dtype)


def smootherstep(x):
    """``x³(x(6x − 15) + 10)``: 0 → 0, 1 → 1, flat at both ends (input expected in [0, 1])."""
    return x * x * x * (x * (6 * x - 15) + 10)


def mask_scalar(nmask: torch.Tensor, preservation_strength: float = 0.5, mask_influence: float = 0.0) -> np.ndarray:
    """Per-pixel factor of the difference threshold, float32 numpy [h, w] (or [B, h, w] for a 4-D nmask).

    ``s = 1 − clamp(nmask, 0, 1) ** (strength / 2)``, mixed with 0.5 by ``mask_influence``, then ``s / (1.00001 − s)``;
    at influence 0 it is 0.5/0.50001 everywhere. Channel 0 of nmask is used.
    """
    if nmask.ndim == 3:
        latent = nmask[0].float()
    elif nmask.ndim == 4:
        latent = nmask[:, 0].float()
    else:
        raise ValueError(f"nmask must be [C, h, w] or [B, C, h, w], got {tuple(nmask.shape)}")
    scalar = 1 - torch.clamp(latent, min=0, max=1) ** (preservation_strength / 2)
    scalar = 0.5 * (1 - mask_influence) + scalar * mask_influence
    scalar = scalar / (1.00001 - scalar)
    return scalar.cpu().numpy()


def latent_distance(init_latent: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 distance over channels, [B, h, w] float32: how far sampling moved each latent pixel."""
    if samples.shape != init_latent.shape or samples.ndim != 4:
        raise ValueError(f"samples {tuple(samples.shape)} and init_latent {tuple(init_latent.shape)} must be equal "
                         f"[B, C, h, w]")
    return torch.norm(samples.float() - init_latent.float(), p=2, dim=1)


def difference_mask(distance: np.ndarray, scalar: np.ndarray, difference_threshold: float = 0.5,
                    difference_contrast: float = 2.0) -> np.ndarray:
    """One image's overlay mask at latent size, uint8 [h, w], 255 = show the generated pixel.

    The distance map goes through the soft-maximum (0.9–1.0) and soft-median (0.25–0.75) weighted-percentile filters,
    is divided by ``threshold · scalar``, mapped by ``1 / (1 + x^contrast)``, smootherstep, inverted, scaled by 255 and
    cast to uint8, truncating (float32 numpy throughout, as A1111). A zero threshold gives inf → 255; 0/0 gives NaN,
    whose uint8 cast is platform-defined (as in A1111).
    """
    kernel, centre = gaussian_kernel(stddev_radius=1.5, max_radius=2)
    m = np.asarray(distance, dtype=np.float32)
    m = weighted_histogram_filter(m, kernel, centre, percentile_min=0.9, percentile_max=1, min_width=1)
    m = weighted_histogram_filter(m, kernel, centre, percentile_min=0.25, percentile_max=0.75, min_width=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = m / (difference_threshold * np.asarray(scalar, dtype=np.float32))
        m = 1 / (1 + m ** difference_contrast)
        m = 1 - smootherstep(m)
        m = 255.0 * m
        return m.astype(np.uint8)


def overlay_mask_image(mask: np.ndarray, width: int, height: int,
                       paste_to: tuple[int, int, int, int] | None = None,
                       original_size: tuple[int, int] | None = None) -> Image.Image:
    """Latent-size uint8 mask → the pixel composite mask (L): resize mode 2 to width×height (a Lanczos ×8 when the
    sizes match), Pillow ``GaussianBlur(4)``, and for "Only masked" (``paste_to``) uncropped into ``original_size``
    (0 = original outside the crop box)."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8))
    image = resize_image(2, image, width, height).convert("L")
    image = image.filter(ImageFilter.GaussianBlur(radius=4))
    if paste_to is not None:
        if original_size is None:
            raise ValueError("original_size is needed to uncrop an only-masked overlay mask")
        image = uncrop(image, paste_to, original_size).convert("L")
    return image


def overlay_source(flat_image: Image.Image, width: int, height: int, resize_mode: int = 0,
                   only_masked: bool = False) -> Image.Image:
    """The original soft inpainting composites over, RGBA: the flattened user image (``prepare.flatten``), resized to
    width×height with the job's resize mode unless "Only masked" (then full size). Never the filled init image."""
    image = flat_image.convert("RGB")
    if not only_masked:
        image = resize_image(resize_mode, image, width, height)
    return image.convert("RGBA")


def soft_overlays(source: Image.Image, nmask: torch.Tensor, init_latent: torch.Tensor, samples: torch.Tensor,
                  settings: SoftInpaintingSettings, width: int, height: int,
                  paste_to: tuple[int, int, int, int] | None = None) -> tuple[list[Image.Image], list[Image.Image]]:
    """Per batch image: (overlay RGBA with alpha ≈ 255 − mask, composite mask L), A1111's post-sample step.

    source: ``overlay_source(...)``; nmask: the unrounded latent mask; init_latent: after masked content; samples: the
    raw (unblended) sampler output. Composite the result with ``masking.apply_overlay(generated, overlay, paste_to)``.
    """
    scalar = mask_scalar(nmask, settings.preservation_strength, settings.mask_influence)
    distances = latent_distance(init_latent, samples).cpu().numpy()
    overlays, masks = [], []
    for i, distance in enumerate(distances):
        s = scalar if scalar.ndim == 2 else scalar[i if scalar.shape[0] > i else 0]
        small = difference_mask(distance, s, settings.difference_threshold, settings.difference_contrast)
        mask = overlay_mask_image(small, width, height, paste_to, source.size)
        overlays.append(make_overlay(source.convert("RGB"), mask))
        masks.append(mask)
    return overlays, masks


# --- Differential Diffusion -------------------------------------------------------------------------------------------

def differential_masks(change_map: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-step "keep the noised original" masks of Differential Diffusion, bool [steps, *change_map.shape].

    Step i keeps a pixel iff ``keep > i / steps`` with ``keep = 1 − change_map`` (float32 thresholds
    ``arange(steps) / steps``, strict comparison, as the reference pipeline). ``change_map`` uses the inpaint convention,
    1 = change fully (the reference's own map is ``keep``: white = keep). A pixel with change c is reset for the first
    ≈ (1 − c)·steps steps, so its effective strength is ≈ c times the job's.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    keep = 1 - change_map.float()
    thresholds = torch.arange(steps, device=change_map.device) / steps
    return keep[None] > thresholds.reshape((steps,) + (1,) * change_map.ndim)


def change_map_to_latent(change_map: torch.Tensor | Image.Image, latent_hw: tuple[int, int]) -> torch.Tensor:
    """A grey-level change map at latent size, as the reference pipeline resizes it: bilinear, no antialiasing.

    Accepts an L image (255 = change) or a float tensor [..., H, W] in [0, 1]; returns float32 [1, 1, h, w].
    """
    if isinstance(change_map, Image.Image):
        change_map = torch.from_numpy(np.array(change_map.convert("L"))).float() / 255
    m = torch.as_tensor(change_map, dtype=torch.float32)
    while m.ndim < 4:
        m = m[None]
    return F.interpolate(m, size=tuple(latent_hw), mode="bilinear", align_corners=False, antialias=False)
