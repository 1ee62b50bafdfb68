"""A1111 v1.10's upscaler front end: the "None", "Lanczos" and "Nearest" upscalers, the up-to-three-passes scale
handling of `Upscaler.upscale`, and `resize_image`'s use of an upscaler (hires fix, SD upscale, img2img resize).

`Upscaler.upscale(img, scale)`: the destination is `int(w·scale // 8 · 8)` × `int(h·scale // 8 · 8)` (always a
multiple of 8); the upscaler runs (at most three times) until the image covers it — a scale of 1 still runs once —
or stops growing, then one Lanczos resize brings it to the destination if needed. So a 4× model at scale 2 runs once
and Lanczos halves the result; at scale 8 it runs twice (16×) and Lanczos halves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from PIL import Image

from .errors import UpscalerError
from .load import UpscalerModel
from .tiling import from_bgr_tensor, run_patch, to_bgr_tensor, upscale_average, upscale_grid

LANCZOS = Image.Resampling.LANCZOS
BUILTIN = ("None", "Lanczos", "Nearest")
# A1111's option defaults: ESRGAN_tile / ESRGAN_tile_overlap (also Real-ESRGAN, DAT_tile…) and SWIN_tile(_overlap);
# ScuNET's (SCUNET_tile 256) is the model's `tile_defaults`.
DEFAULT_TILE = {"grid": (192, 8), "average": (192, 8)}


@dataclass
class Tiling:
    """How a model upscaler is run: A1111's tiling kind and its tile/overlap options (0 = no tiling)."""

    kind: str | None = None      # None: the model's own ("grid" or "average")
    tile: int | None = None      # None: A1111's default (192)
    overlap: int | None = None   # None: A1111's default (8)


Upscaler = Union[str, UpscalerModel, None]


def model_pass(model: UpscalerModel, img: Image.Image, tiling: Tiling | None = None) -> Image.Image:
    """One full pass of a model upscaler over a PIL image, tiled as A1111 tiles it (BGR quirk included)."""
    tiling = tiling or Tiling()
    kind = tiling.kind or model.tiling
    if kind not in DEFAULT_TILE:
        raise UpscalerError(f"unknown tiling {kind!r}; expected 'grid' or 'average'")
    defaults = model.tile_defaults or DEFAULT_TILE[kind]
    tile = defaults[0] if tiling.tile is None else tiling.tile
    overlap = defaults[1] if tiling.overlap is None else tiling.overlap
    if tile > 0 and not 0 <= overlap < tile:
        raise UpscalerError(f"tile overlap {overlap} must be in [0, tile size {tile})")
    arr = np.asarray(img.convert("RGB"))
    dtype, device = model.dtype, model.device
    if kind == "grid":
        out = upscale_grid(lambda t: run_patch(model, t, dtype, device), arr, tile, overlap)
    else:
        with torch.inference_mode():
            x = to_bgr_tensor(arr, torch.float32, device).to(dtype)
            out = from_bgr_tensor(upscale_average(model, x, tile, overlap, model.scale))
    return Image.fromarray(out, "RGB")


def _name(upscaler: Upscaler) -> str:
    if upscaler is None:
        return "None"
    return upscaler if isinstance(upscaler, str) else upscaler.name


def upscale(img: Image.Image, scale: float, upscaler: Upscaler, tiling: Tiling | None = None) -> Image.Image:
    """A1111's `Upscaler.upscale`: the picture upscaled by `scale`, floored to multiples of 8 (see module docstring).

    `upscaler` is a loaded model or one of "None" (returns the image unchanged, as SD upscale does), "Lanczos",
    "Nearest".
    """
    if not scale > 0:
        raise UpscalerError(f"upscale factor must be positive, got {scale}")
    if _name(upscaler) == "None":
        return img
    if isinstance(upscaler, str) and upscaler not in BUILTIN:
        raise UpscalerError(f"{upscaler!r} is not a built-in upscaler ({', '.join(BUILTIN)}); load model upscalers "
                            "with inpaintlab.upscalers.load or UpscalerDir")
    dest_w, dest_h = int(img.width * scale // 8 * 8), int(img.height * scale // 8 * 8)
    for i in range(3):
        if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
            break
        before = img.size
        if isinstance(upscaler, UpscalerModel):
            img = model_pass(upscaler, img, tiling)
        else:
            resample = LANCZOS if upscaler == "Lanczos" else Image.Resampling.NEAREST
            img = img.resize((int(img.width * scale), int(img.height * scale)), resample=resample)
        if img.size == before:
            break
    if img.size != (dest_w, dest_h):
        img = img.resize((dest_w, dest_h), resample=LANCZOS)
    return img


def resize_image(img: Image.Image, width: int, height: int, upscaler: Upscaler = None,
                 tiling: Tiling | None = None) -> Image.Image:
    """A1111's `images.resize_image` mode 0 ("Just resize") with an upscaler: Lanczos for "None" (or greyscale
    images); otherwise the upscaler when the target is larger (`max(w/W, h/H) > 1`), then Lanczos to the exact size."""
    if width <= 0 or height <= 0:
        raise UpscalerError(f"target size must be positive, got {width}x{height}")
    if _name(upscaler) == "None" or img.mode == "L":
        return img.resize((width, height), resample=LANCZOS)
    scale = max(width / img.width, height / img.height)
    if scale > 1:
        img = upscale(img, scale, upscaler, tiling)
    if img.size != (width, height):
        img = img.resize((width, height), resample=LANCZOS)
    return img
