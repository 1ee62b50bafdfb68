"""Masked content: A1111's pixel-space ``fill`` (spec §4) and the latent-space modes (spec step 10).

Masks: ``fill`` takes an 8-bit L mask (255 = repaint); the latent functions take float masks in [0, 1], 1 = repaint,
broadcastable to the latents ([B or 1, 1 or C, h, w]).
"""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageFilter, ImageOps

__all__ = [
    "MASKED_CONTENT",
    "FILL_PASSES",
    "LATENT_FILL_PASSES",
    "fill",
    "fill_latent",
    "apply_masked_content",
    "needs_pixel_fill",
]

from ..names import MASKED_CONTENT  # noqa: E402,F401

# (Gaussian radius in pixels, number of composites): coarse, far-reaching colour first, sharp detail last.
FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))

# The same passes in latent pixels. One latent pixel covers 8x8 image pixels, so each radius is divided by 8: the
# layers then reach as far, relative to the picture, as A1111's do in pixel space.
LATENT_FILL_PASSES = tuple((radius / 8, repeats) for radius, repeats in FILL_PASSES)


def fill(image: Image.Image, mask_L: Image.Image) -> Image.Image:
    """Replace masked pixels with blurred colours of their surroundings (A1111 "fill", spec §4). Returns RGB.

    The image becomes premultiplied RGBa with alpha = 255 - mask (masked pixels transparent) and is blurred at each
    radius of ``FILL_PASSES`` with Pillow's GaussianBlur; the layers are alpha-composited coarse to fine over a
    transparent canvas. The last layer (radius 0) is the image itself, opaque where the mask is 0, so unmasked
    pixels come out unchanged; a pixel that no layer reaches stays black. All steps are Pillow calls, for
    bit-exactness with A1111.
    """
    if not isinstance(image, Image.Image) or not isinstance(mask_L, Image.Image):
        raise TypeError("image and mask_L must be PIL images")
    if image.size != mask_L.size:
        raise ValueError(f"image and mask sizes differ: {image.size} vs {mask_L.size}")
    canvas = Image.new("RGBA", image.size)
    known = Image.new("RGBa", image.size)
    known.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_L.convert("L")))
    for radius, repeats in FILL_PASSES:
        # Blurring in premultiplied form keeps transparent (masked) pixels from pulling colours toward black.
        layer = known.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            canvas.alpha_composite(layer)
    return canvas.convert("RGB")


def _blur_matrix(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[n, n] matrix applying a normalised 1-D Gaussian (truncated at 3 sigma) with edge-replicating borders.

    Replicating the edge, like Pillow's blur, keeps working when the kernel is longer than the image (radius 32 on
    a 64-pixel latent), where reflect padding would not.
    """
    r = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-r, r + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = torch.arange(n, device=device)[:, None].expand(n, 2 * r + 1)
    cols = (rows + torch.arange(-r, r + 1, device=device)).clamp(0, n - 1)
    mat = torch.zeros(n, n, dtype=dtype, device=device)
    mat.scatter_add_(1, cols, kernel.expand(n, -1).contiguous())
    return mat


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return x
    h, w = x.shape[-2:]
    mh = _blur_matrix(h, sigma, x.dtype, x.device)
    mw = _blur_matrix(w, sigma, x.dtype, x.device)
    return mh @ x @ mw.T


def _check_latents(init_latent: torch.Tensor, latent_mask: torch.Tensor) -> None:
    if init_latent.ndim != 4:
        raise ValueError(f"init_latent must be [B, C, h, w], got {tuple(init_latent.shape)}")
    if latent_mask.ndim != 4:
        raise ValueError(f"latent_mask must be [B or 1, 1 or C, h, w], got {tuple(latent_mask.shape)}")
    try:
        fits = torch.broadcast_shapes(latent_mask.shape, init_latent.shape) == init_latent.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"latent_mask {tuple(latent_mask.shape)} does not broadcast to init_latent {tuple(init_latent.shape)}"
        )
    if latent_mask.numel() and (latent_mask.min() < 0 or latent_mask.max() > 1):
        raise ValueError("latent_mask values must lie in [0, 1] (1 = repaint)")


def fill_latent(init_latent: torch.Tensor, latent_mask: torch.Tensor) -> torch.Tensor:
    """A1111's multi-radius blur fill, done on latents instead of pixels.

    Same algorithm as ``fill``: weight = ``1 - latent_mask``; for each ``(radius, repeats)`` in ``LATENT_FILL_PASSES``
    (A1111's radii / 8), Gaussian-blur the premultiplied latents and the weight, and composite the layer "over" the
    running canvas ``repeats`` times; finally un-premultiply. Every filled value is a weighted average of unmasked
    latents, so it stays within their range per channel. Computed in float64 with plain Gaussians (not Pillow's box
    approximation; no exactness claimed), then cast back. Where the mask is 0 the input is returned exactly; where no
    unmasked latent reaches (an all-masked latent), the result is 0.
    """
    _check_latents(init_latent, latent_mask)
    x = init_latent.to(torch.float64)
    alpha = (1 - latent_mask.to(device=x.device, dtype=torch.float64)).expand_as(x)
    known = x * alpha  # premultiplied
    canvas_c = torch.zeros_like(x)
    canvas_a = torch.zeros_like(x)
    for radius, repeats in LATENT_FILL_PASSES:
        layer_c, layer_a = _blur(known, radius), _blur(alpha, radius)
        for _ in range(repeats):
            # Porter-Duff "over" in premultiplied form.
            canvas_c = layer_c + canvas_c * (1 - layer_a)
            canvas_a = layer_a + canvas_a * (1 - layer_a)
    filled = torch.where(canvas_a > 0, canvas_c / canvas_a.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))
    filled = filled.to(init_latent.dtype)
    return torch.where(latent_mask.to(init_latent.device) == 0, init_latent, filled)


def needs_pixel_fill(mode: str) -> bool:
    """Whether A1111 runs pixel ``fill`` on the init image before encoding (step 7.6): every mode but "original"."""
    _check_mode(mode)
    return mode != "original"


def _check_mode(mode: str) -> None:
    if mode not in MASKED_CONTENT:
        raise ValueError(f"unknown masked content {mode!r}; valid: {', '.join(MASKED_CONTENT)}")


def apply_masked_content(
    mode: str, init_latent: torch.Tensor, latent_mask: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Prepare the init latent under the mask for masked-content ``mode`` (spec step 10). Returns a new tensor.

    * "original": unchanged.
    * "latent_noise": ``init * (1 - m) + noise * m`` (A1111 ``init_latent * mask + N * nmask``); ``noise`` required,
      same shape as ``init_latent``.
    * "latent_nothing": ``init * (1 - m)`` (zeros under the mask).
    * "fill": ``fill_latent``, the blur fill carried out on latents. Note that A1111 itself has no latent step for
      "fill": it runs the pixel ``fill`` before VAE encoding (as it also does for the two latent modes; see
      ``needs_pixel_fill``). A pipeline reproducing A1111 bit for bit fills in pixel space and leaves the latent as
      encoded; this latent variant serves callers that start from latents.
    """
    _check_mode(mode)
    _check_latents(init_latent, latent_mask)
    m = latent_mask.to(device=init_latent.device, dtype=init_latent.dtype)
    if mode == "original":
        return init_latent.clone()
    if mode == "fill":
        return fill_latent(init_latent, latent_mask)
    if mode == "latent_nothing":
        return init_latent * (1 - m)
    if noise is None:
        raise ValueError("masked content 'latent_noise' needs a noise tensor")
    if noise.shape != init_latent.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} must equal init_latent shape {tuple(init_latent.shape)}")
    return init_latent * (1 - m) + noise.to(device=init_latent.device, dtype=init_latent.dtype) * m
