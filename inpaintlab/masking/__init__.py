"""Mask handling for A1111-style inpainting, one small function per step of A1111 v1.10's inpaint job.

Conventions: inside the library masks are float tensors in [0, 1], 1 = repaint. At the edge (PIL images) masks are
8-bit "L", 255 = repaint. Pillow and OpenCV are called wherever A1111's output depends on their exact arithmetic.
"""

from .blend import apply_overlay, blend_latents, make_overlay
from .crop import crop_for_only_masked, expand_crop_region, get_crop_region, get_crop_region_v2, uncrop
from .fill import MASKED_CONTENT, apply_masked_content, fill, fill_latent, needs_pixel_fill
from .masks import (
    binary_mask,
    blur_kernel_size,
    blur_mask,
    conditioning_mask,
    double_mask,
    downsample_conditioning_mask,
    inpaint_sketch,
    invert_mask,
    latent_mask,
    mask_for_overlay,
    masked_image,
    match_overlay_mask,
)
from .resize import RESIZE_MODES, resize_image

from ..names import INPAINT_AREAS, MASK_MODES  # noqa: E402,F401 - A1111's choices, importable without torch

# Our names -> the labels A1111 writes into the infotext ("Masked content", "Mask mode", "Inpaint area").
MASKED_CONTENT_LABELS = {
    "fill": "fill",
    "original": "original",
    "latent_noise": "latent noise",
    "latent_nothing": "latent nothing",
}
MASK_MODE_LABELS = {"masked": "Inpaint masked", "not_masked": "Inpaint not masked"}
INPAINT_AREA_LABELS = {"whole": "Whole picture", "only_masked": "Only masked"}

__all__ = [
    "MASKED_CONTENT",
    "MASK_MODES",
    "INPAINT_AREAS",
    "RESIZE_MODES",
    "MASKED_CONTENT_LABELS",
    "MASK_MODE_LABELS",
    "INPAINT_AREA_LABELS",
    "binary_mask",
    "invert_mask",
    "blur_kernel_size",
    "blur_mask",
    "mask_for_overlay",
    "double_mask",
    "match_overlay_mask",
    "latent_mask",
    "inpaint_sketch",
    "conditioning_mask",
    "masked_image",
    "downsample_conditioning_mask",
    "get_crop_region_v2",
    "get_crop_region",
    "expand_crop_region",
    "resize_image",
    "crop_for_only_masked",
    "uncrop",
    "fill",
    "fill_latent",
    "apply_masked_content",
    "needs_pixel_fill",
    "blend_latents",
    "make_overlay",
    "apply_overlay",
]
