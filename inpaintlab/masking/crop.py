"""Geometry of "Only masked" inpainting (spec steps 6, 7.5, 18.3 and §5).

Boxes are Pillow boxes ``(x1, y1, x2, y2)`` with x2/y2 exclusive. ``paste_to`` is ``(x1, y1, w, h)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .resize import resize_image

__all__ = [
    "get_crop_region_v2",
    "get_crop_region",
    "expand_crop_region",
    "resize_image",
    "crop_for_only_masked",
    "uncrop",
]

Box = tuple[int, int, int, int]


def _as_image(mask: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(mask, Image.Image):
        return mask
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        return Image.fromarray(mask)
    raise TypeError(f"mask must be a PIL image or a 2-D numpy array, got {type(mask).__name__}")


def _check_pad(pad: int) -> None:
    if int(pad) != pad or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")


def get_crop_region_v2(mask_L: Image.Image | np.ndarray, pad: int = 0) -> Box | None:
    """Bounding box of the non-zero mask pixels grown by ``pad`` and clamped to the image; None if the mask is empty.

    A1111 v1.9.1+; an empty mask makes the webui fall back to plain img2img.
    """
    mask = _as_image(mask_L)
    _check_pad(pad)
    box = mask.getbbox()
    if box is None:
        return None
    if pad == 0:
        return box
    x1, y1, x2, y2 = box
    iw, ih = mask.size
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, iw), min(y2 + pad, ih)


def get_crop_region(mask: Image.Image | np.ndarray, pad: int = 0) -> Box:
    """Legacy crop region: as ``get_crop_region_v2``, but an empty mask gives the inverted box.

    The inverted box is ``(max(IW - pad, 0), max(IH - pad, 0), min(pad, IW), min(pad, IH))``, i.e. x1 > x2 unless
    the padding covers the image; callers of the old API got an error or a degenerate crop from it.
    """
    img = _as_image(mask)
    box = get_crop_region_v2(img, pad)
    if box is not None:
        return box
    iw, ih = img.size
    return max(iw - pad, 0), max(ih - pad, 0), min(pad, iw), min(pad, ih)


def _grow_axis(lo: int, hi: int, desired: float, limit: int) -> tuple[int, int]:
    """Grow ``[lo, hi)`` towards length ``desired``, keep it inside ``[0, limit]``; A1111's arithmetic exactly."""
    diff = int(desired - (hi - lo))  # truncates toward zero
    lo -= diff // 2
    hi += diff - diff // 2  # the odd pixel goes to the high side
    if hi >= limit:  # past the far edge: shift back
        lo -= hi - limit
        hi = limit
    if lo < 0:  # past the near edge: shift forward (may push hi out again)
        hi -= lo
        lo = 0
    if hi >= limit:  # box larger than the image: clamp, the aspect ratio is lost
        hi = limit
    return lo, hi


def expand_crop_region(
    crop_region: Box, processing_width: int, processing_height: int, image_width: int, image_height: int
) -> Box:
    """Grow ``crop_region`` to the processing aspect ratio, shifted and clamped into the image (spec §5).

    Too wide a box grows in height, otherwise (ties included) in width. It only ever grows; when the wanted box is
    larger than the image the clamp breaks the ratio and resize mode 2 pads the difference.
    """
    x1, y1, x2, y2 = crop_region
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"crop_region must have x2 > x1 and y2 > y1, got {tuple(crop_region)}")
    if processing_width <= 0 or processing_height <= 0:
        raise ValueError(f"processing size must be positive, got {processing_width}x{processing_height}")
    ratio_crop = (x2 - x1) / (y2 - y1)
    ratio_processing = processing_width / processing_height
    if ratio_crop > ratio_processing:
        y1, y2 = _grow_axis(y1, y2, (x2 - x1) / ratio_processing, image_height)
    else:
        x1, x2 = _grow_axis(x1, x2, (y2 - y1) * ratio_processing, image_width)
    return x1, y1, x2, y2


def crop_for_only_masked(
    image: Image.Image, mask: Image.Image | None, crop_region: Box, width: int, height: int
) -> tuple[Image.Image, Image.Image | None]:
    """Crop image and mask to ``crop_region`` and bring both to ``width x height`` with resize mode 2 (steps 6.4, 7.5).

    The image comes back RGB (mode 2 always returns RGB). The mask comes back as L: mode 2 yields an RGB image
    with three equal channels, and RGB -> L is lossless for grey pixels. ``mask`` may be None.
    """
    out_image = resize_image(2, image.crop(crop_region), width, height)
    out_mask = None if mask is None else resize_image(2, mask.crop(crop_region), width, height).convert("L")
    return out_image, out_mask


def uncrop(generated: Image.Image, paste_to: tuple[int, int, int, int], original_size: tuple[int, int]) -> Image.Image:
    """Put a generated crop back at its place on a transparent RGBA canvas of the original size (step 18.3).

    The crop is resized to ``paste_to``'s ``(w, h)`` with resize mode 1, which also cuts off any bars mode 2 added.
    """
    x, y, w, h = paste_to
    canvas = Image.new("RGBA", tuple(original_size))
    canvas.paste(resize_image(1, generated, w, h), (x, y))
    return canvas
