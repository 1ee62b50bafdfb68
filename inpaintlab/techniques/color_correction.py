"""A1111's img2img colour correction (`img2img_color_correction`, setting `color_correction`).

The target is the init image in OpenCV's 8-bit Lab, taken after resize, crop and the masked-content fill (one per
init image). Each generated image, before the inpaint overlay (A1111 applies it after the scripts' postprocess_image,
before `apply_overlay`), is

1. converted to 8-bit Lab, its histogram matched per channel to the target's (scikit-image 0.21's integer path:
   counts per value, cumulative quantiles, linear interpolation into the target's quantiles, the float result
   written into uint8, i.e. truncated), and converted back to RGB;
2. blended with the generated image in "luminosity" mode (blendmodes 2022): the corrected colours take the generated
   image's luma (0.299 r + 0.587 g + 0.114 b), then are pulled back into [0, 1] towards that luma, and truncated to
   uint8.

OpenCV does the Lab conversions (its fixed-point tables are what A1111 runs; a float Lab differs by ±1 in places).
A1111 writes no infotext key for it. Loopback passes its own target (the original picture) as `ColorCorrection(target)`.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..pipeline.job import Job
from ..pipeline.technique import Technique
from ..result import Result
from . import color_rows  # noqa: F401  (registers the `color_correction` row)


def lab_target(image: Image.Image) -> np.ndarray:
    """A1111's `setup_color_correction`: the picture in OpenCV's 8-bit Lab, (H, W, 3) uint8."""
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2LAB)


def match_histograms_uint8(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """scikit-image 0.21 `match_histograms(image, reference, channel_axis=-1)` for uint8 inputs, uint8 out."""
    if image.dtype != np.uint8 or reference.dtype != np.uint8 or image.shape[-1] != reference.shape[-1]:
        raise ValueError("match_histograms_uint8 takes uint8 (H, W, C) arrays with the same channel count")
    out = np.empty(image.shape, dtype=np.uint8)
    for c in range(image.shape[-1]):
        src = image[..., c].reshape(-1)
        src_counts = np.bincount(src)
        tmpl_counts = np.bincount(reference[..., c].reshape(-1))
        tmpl_values = np.nonzero(tmpl_counts)[0]
        src_q = np.cumsum(src_counts) / src.size
        tmpl_q = np.cumsum(tmpl_counts[tmpl_values]) / reference[..., c].size
        # Assigning the interpolated floats to uint8 truncates them, as scikit-image's `matched` array does.
        out[..., c] = np.interp(src_q, tmpl_q, tmpl_values)[src].reshape(image.shape[:-1])
    return out


def _lum(c: np.ndarray) -> np.ndarray:
    return 0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]


def luminosity_blend(background: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """blendmodes 2022 `blendLayers(background, foreground, LUMINOSITY)` with both layers opaque: the background's
    colour at the foreground's luma (uint8 RGB in and out, float64 inside, truncated at the end)."""
    b = background.astype(np.float64) / 255.0
    f = foreground.astype(np.float64) / 255.0
    c = b + (_lum(f) - _lum(b))[..., None]
    lum, low, high = _lum(c)[..., None], c.min(axis=-1, keepdims=True), c.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # the denominators are > 0 wherever their branch is taken
        c = np.where(low < 0, lum + (c - lum) * lum / (lum - low), c)
        c = np.where(high > 1, lum + (c - lum) * (1 - lum) / (high - lum), c)  # `high` from before the first step
    return (np.clip(c, 0.0, 1.0) * 255.0).astype(np.uint8)


def apply_color_correction(target: np.ndarray, image: Image.Image) -> Image.Image:
    """A1111's `apply_color_correction(correction, image)`: `target` from `lab_target`."""
    generated = np.asarray(image.convert("RGB"))
    matched = match_histograms_uint8(cv2.cvtColor(generated, cv2.COLOR_RGB2LAB), target)
    corrected = cv2.cvtColor(matched, cv2.COLOR_LAB2RGB)
    return Image.fromarray(luminosity_blend(corrected, generated))


class ColorCorrection(Technique):
    """Colour-correct every image of an img2img / inpaint job before the overlay. `target`: an image (or its
    `lab_target`) to match instead of the job's own init image (Loopback's original picture)."""

    name = "color correction"
    order = 45  # its composite hook runs before the blends' overlay (order 50)

    def __init__(self, target: Image.Image | np.ndarray | None = None) -> None:
        self.target = lab_target(target) if isinstance(target, Image.Image) else target

    @classmethod
    def for_job(cls, job: Job) -> "ColorCorrection | None":
        return cls() if job.kind != "txt2img" and job.settings.get("color_correction") else None

    def composite(self, job: Job, result: Result) -> Result:
        if job.prep is None:  # txt2img: A1111 has no colour correction there
            return result
        target = lab_target(job.prep.init) if self.target is None else self.target
        result.images = [apply_color_correction(target, img) for img in result.images]
        return result
