"""Blending generated content with the original: latent blend (steps 15/16) and pixel overlay (steps 7.4/18).

The latent mask is float in [0, 1], 1 = repaint; overlay masks are 8-bit L, 255 = show the generated pixel.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageOps

from .crop import uncrop

__all__ = ["blend_latents", "make_overlay", "apply_overlay"]


def blend_latents(denoised: torch.Tensor, init_latent: torch.Tensor, latent_mask: torch.Tensor) -> torch.Tensor:
    """Keep the original latent where the mask is 0 and the denoised one where it is 1.

    ``latent_mask`` is A1111's ``nmask`` (1 = repaint), broadcastable to the latents. The expression is written as
    ``denoised * nmask + init_latent * (1 - nmask)``: A1111 computes ``denoised * nmask + init_latent * mask`` with
    ``mask = 1 - nmask`` precomputed, so the same products and the same sum order give the same float result.
    """
    return denoised * latent_mask + init_latent * (1 - latent_mask)


def make_overlay(image_RGB: Image.Image, mask_for_overlay_L: Image.Image) -> Image.Image:
    """Original image with alpha ``255 - mask_for_overlay``, as straight RGBA (spec step 7.4).

    Built as A1111 does: the image, premultiplied (RGBa), is pasted through the inverted mask onto a transparent
    RGBa canvas, then converted to RGBA, so colours are un-premultiplied and quantised where alpha is small.
    """
    if not isinstance(image_RGB, Image.Image) or not isinstance(mask_for_overlay_L, Image.Image):
        raise TypeError("image_RGB and mask_for_overlay_L must be PIL images")
    if image_RGB.size != mask_for_overlay_L.size:
        raise ValueError(
            f"image and overlay mask sizes differ: {image_RGB.size} vs {mask_for_overlay_L.size}; "
            "resize the mask with match_overlay_mask() first"
        )
    canvas = Image.new("RGBa", image_RGB.size)
    canvas.paste(image_RGB.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_for_overlay_L.convert("L")))
    return canvas.convert("RGBA")


def apply_overlay(
    generated: Image.Image, overlay: Image.Image, paste_to: tuple[int, int, int, int] | None = None
) -> Image.Image:
    """Composite the original (``overlay`` from ``make_overlay``) over the generated image; returns RGB (step 18.3).

    With ``paste_to`` (only-masked mode) the generated crop is first uncropped onto a transparent canvas of the
    overlay's size. Pillow's ``alpha_composite`` gives the original exactly wherever the overlay is opaque (mask 0)
    and the generated pixel wherever it is fully transparent (mask 255).
    """
    if not isinstance(generated, Image.Image) or not isinstance(overlay, Image.Image):
        raise TypeError("generated and overlay must be PIL images")
    if overlay.mode != "RGBA":
        raise ValueError(f"overlay must be RGBA (from make_overlay), got mode {overlay.mode!r}")
    if paste_to is not None:
        generated = uncrop(generated, paste_to, overlay.size)
    if generated.size != overlay.size:
        raise ValueError(f"generated image {generated.size} and overlay {overlay.size} differ in size")
    out = generated.convert("RGBA")
    out.alpha_composite(overlay)
    return out.convert("RGB")
