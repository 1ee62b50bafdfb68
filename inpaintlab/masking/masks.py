"""Mask intake and mask-derived tensors, one function per step of A1111 v1.10's inpaint job.

Edge convention: PIL "L" images, 255 = repaint. Library convention: float tensors in [0, 1], 1 = repaint.

Order in the A1111 pipeline: ``binary_mask`` (step 2/3) -> ``invert_mask`` (step 3, before blurring) ->
``blur_mask`` (step 4) -> geometry (crop.py) -> ``mask_for_overlay`` (steps 5/6) -> ``latent_mask`` (step 9) and,
for 9-channel models, ``conditioning_mask`` -> ``masked_image`` -> ``downsample_conditioning_mask`` (step 11).
``inpaint_sketch`` is the UI's sketch mode (spec §9), which produces an image and a mask before step 2.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageFilter

from .resize import resize_image

__all__ = [
    "binary_mask",
    "invert_mask",
    "blur_mask",
    "blur_kernel_size",
    "mask_for_overlay",
    "double_mask",
    "match_overlay_mask",
    "latent_mask",
    "inpaint_sketch",
    "conditioning_mask",
    "masked_image",
    "downsample_conditioning_mask",
]

# Alpha strictly above this counts as "painted" when a mask arrives as RGBA (A1111: 255 if alpha > 128 else 0).
ALPHA_THRESHOLD = 128


def _require_image(img: object, name: str) -> Image.Image:
    if not isinstance(img, Image.Image):
        raise TypeError(f"{name} must be a PIL.Image.Image, got {type(img).__name__}")
    return img


def _require_l(mask: object, name: str = "mask") -> Image.Image:
    _require_image(mask, name)
    if mask.mode != "L":
        raise ValueError(
            f"{name} must be an 8-bit 'L' image, got mode {mask.mode!r}; convert it with binary_mask() first"
        )
    return mask


def binary_mask(mask_image: Image.Image, round: bool = True) -> Image.Image:
    """Turn an uploaded mask into an 8-bit L mask (spec step 2).

    An RGBA mask whose alpha is not entirely 255 carries the strokes in its alpha channel: alpha > 128 becomes 255,
    the rest 0 (with ``round=False`` the raw alpha is kept, as soft inpainting does). Any other mask, including an
    RGBA one that is fully opaque, is converted to greyscale with Pillow's luma, and grey levels survive.
    """
    _require_image(mask_image, "mask_image")
    if mask_image.mode == "RGBA":
        alpha = mask_image.getchannel("A")
        if alpha.getextrema() != (255, 255):
            if not round:
                return alpha
            return alpha.point(lambda a: 255 if a > ALPHA_THRESHOLD else 0)
    return mask_image.convert("L")


def invert_mask(mask_L: Image.Image) -> Image.Image:
    """``255 - v``: mask mode "Inpaint not masked" (spec step 3). A1111 inverts before blurring."""
    mask = _require_l(mask_L, "mask_L")
    return mask.point(lambda v: 255 - v)


def blur_kernel_size(sigma: float) -> int:
    """OpenCV kernel length A1111 uses for a Gaussian of std dev ``sigma``: ``2*int(2.5*sigma + 0.5) + 1``."""
    return 2 * int(2.5 * sigma + 0.5) + 1


def blur_mask(mask_L: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Separable Gaussian blur of an L mask with OpenCV, x pass then y pass (spec step 4).

    Each pass is its own ``cv2.GaussianBlur`` call on uint8 data (OpenCV's 8-bit fixed-point path, border
    reflect-101), because that is what A1111 does and two 1-D passes on uint8 round in between. ``sigma = 0`` skips
    that axis.
    """
    mask = _require_l(mask_L, "mask_L")
    for name, sigma in (("blur_x", blur_x), ("blur_y", blur_y)):
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"{name} must be a finite sigma >= 0, got {sigma!r}")
    arr = np.array(mask)
    if blur_x > 0:
        k = blur_kernel_size(blur_x)
        arr = cv2.GaussianBlur(arr, (k, 1), blur_x)
    if blur_y > 0:
        k = blur_kernel_size(blur_y)
        # sigmaX carries sigma_y: with sigmaY = 0 OpenCV reuses sigmaX for the vertical kernel, as A1111 relies on.
        arr = cv2.GaussianBlur(arr, (1, k), blur_y)
    return Image.fromarray(arr)


def mask_for_overlay(mask: Image.Image, only_masked: bool = False) -> Image.Image:
    """Mask that decides how much of the generated image shows in the final composite (spec steps 5/6).

    Whole picture: the resized, blurred mask doubled and clipped, ``min(2*v, 255)``, so every pixel with blurred
    value >= 128 shows only generated content. Only masked: the blurred full-size mask as is. The input may be the
    RGB image that resize modes 1/2 return; its channels are equal, so converting to L is lossless.
    """
    m = _require_image(mask, "mask").convert("L")
    return m if only_masked else double_mask(m)


def double_mask(mask_L: Image.Image) -> Image.Image:
    """``min(2*v, 255)`` per pixel: the whole-picture overlay mask. Grey masks (e.g. RGB from resize) go to L first."""
    m = _require_image(mask_L, "mask_L").convert("L")
    doubled = np.minimum(np.array(m).astype(np.uint16) * 2, 255).astype(np.uint8)
    return Image.fromarray(doubled)


def match_overlay_mask(mask: Image.Image, size: tuple[int, int], resize_mode: int) -> Image.Image:
    """Resize the overlay mask to the image it will be applied to when the sizes differ (spec step 7.3, v1.9.1+).

    Uses ``resize_image`` with the job's resize mode (mode 3 behaves as mode 2 there). Returns L.
    """
    m = _require_image(mask, "mask")
    if m.size == tuple(size):
        return m.convert("L")
    return resize_image(resize_mode, m, size[0], size[1]).convert("L")


def latent_mask(mask_L: Image.Image, width: int, height: int, round: bool = True) -> torch.Tensor:
    """Repaint mask at latent resolution, float32 [1, 1, height//8, width//8], 1 = repaint (spec step 9).

    The mask goes to RGB and is resized with Pillow BICUBIC (Pillow's default for RGB, the call A1111 makes; the
    filter is widened when downscaling, so this is an area-weighted average). Channel 0 is divided by 255 and, if
    ``round``, rounded half-to-even, so an 8-bit value becomes 1 iff it is >= 128. A1111 tiles this over the four
    latent channels as ``nmask``; broadcasting does the same here.
    """
    m = _require_image(mask_L, "mask_L")
    if width < 8 or height < 8:
        raise ValueError(f"width and height must be at least 8 to give a latent, got {width}x{height}")
    small = m.convert("RGB").resize((width // 8, height // 8), resample=Image.Resampling.BICUBIC)
    ch0 = torch.from_numpy(np.array(small)[:, :, 0].copy()).to(torch.float32) / 255
    if round:
        ch0 = torch.round(ch0)  # half-to-even, like np.around
    return ch0[None, None]


def inpaint_sketch(
    orig: Image.Image | None, sketch: Image.Image, mask_blur: float, mask_alpha: float = 0
) -> tuple[Image.Image, Image.Image]:
    """Inpaint-sketch intake (spec §9): derive the mask from the painted strokes and blend the strokes in.

    Returns ``(image, mask)``. ``mask`` is 255 wherever any RGB channel of ``sketch`` differs from ``orig``, scaled by
    ``Brightness(1 - mask_alpha/100)``. ``image`` is ``sketch`` blurred with Pillow ``GaussianBlur(mask_blur)``,
    composited over ``orig`` through the equally blurred mask. The returned mask is the un-blurred one; the pipeline
    blurs it again with OpenCV in step 4. ``orig=None`` means no original was uploaded: the sketch is used and the
    mask is empty. Both images are compared and composited as RGB.
    """
    sketch_rgb = _require_image(sketch, "sketch").convert("RGB")
    orig_rgb = sketch_rgb if orig is None else _require_image(orig, "orig").convert("RGB")
    if orig_rgb.size != sketch_rgb.size:
        raise ValueError(f"orig and sketch sizes differ: {orig_rgb.size} vs {sketch_rgb.size}")
    if not 0 <= mask_alpha <= 100:
        raise ValueError(f"mask_alpha (mask transparency, percent) must be in [0, 100], got {mask_alpha}")
    if mask_blur < 0:
        raise ValueError(f"mask_blur must be >= 0, got {mask_blur}")
    changed = np.any(np.array(sketch_rgb) != np.array(orig_rgb), axis=-1)
    mask = Image.fromarray(changed.astype(np.uint8) * 255)
    mask = ImageEnhance.Brightness(mask).enhance(1 - mask_alpha / 100)
    blur = ImageFilter.GaussianBlur(mask_blur)
    image = Image.composite(sketch_rgb.filter(blur), orig_rgb, mask.filter(blur))
    return image, mask


def conditioning_mask(image_mask_L: Image.Image, round: bool = True) -> torch.Tensor:
    """Full-resolution mask for 9-channel models, float32 [1, 1, H, W] = ``v/255``, rounded if ``round`` (step 11.1).

    Takes ``image_mask`` (the processing-size mask), not a caller-supplied latent mask.
    """
    m = _require_image(image_mask_L, "image_mask_L").convert("L")
    cmask = torch.from_numpy(np.array(m)).to(torch.float32) / 255
    if round:
        cmask = torch.round(cmask)
    return cmask[None, None]


def masked_image(src: torch.Tensor, cmask: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Masked-image conditioning input ``src * (1 - weight * cmask)`` (step 11.3).

    ``src`` is the prepared init image [B, 3, H, W] in [-1, 1]; ``cmask`` [1 or B, 1, H, W]. Computed as A1111 does,
    ``lerp(src, src * (1 - cmask), weight)``, which is the same value and bit-identical to A1111 at any weight. At
    weight 1 masked pixels become 0 (mid-grey).
    """
    if src.ndim != 4 or src.shape[1] != 3:
        raise ValueError(f"src must be [B, 3, H, W], got {tuple(src.shape)}")
    if cmask.ndim != 4 or cmask.shape[1] != 1 or cmask.shape[-2:] != src.shape[-2:]:
        raise ValueError(f"cmask must be [B or 1, 1, H, W] matching src {tuple(src.shape)}, got {tuple(cmask.shape)}")
    cmask = cmask.to(device=src.device, dtype=src.dtype)
    return torch.lerp(src, src * (1.0 - cmask), weight)


def downsample_conditioning_mask(cmask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Conditioning mask at latent size with torch's legacy nearest interpolation (step 11.5).

    For sizes that are multiples of 8 this picks source pixel ``(8i, 8j)``.
    """
    if cmask.ndim != 4:
        raise ValueError(f"cmask must be [B, 1, H, W], got {tuple(cmask.shape)}")
    return F.interpolate(cmask, size=tuple(latent_hw), mode="nearest")
