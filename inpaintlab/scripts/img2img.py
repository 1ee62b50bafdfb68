"""A1111 v1.10's "SD upscale" and "Loopback" img2img scripts, run through `Pipeline.img2img`.

* `sd_upscale`: the picture is upscaled (`Upscaler.upscale`, floored to multiples of 8; "None" keeps the size), cut
  with `split_grid` into tiles of the img2img width × height with `Tile overlap`, every tile goes through img2img
  (batch size 1: tile k gets seed `seed + k`), and `combine_grid` blends them back (only the first `overlap` pixels
  of each later tile). The result carries the first tile's infotext with `SD upscale overlap` and `SD upscale
  upscaler`.
* `loopback`: `Loops` img2img passes, each fed the previous output, the seed +1 each time, the denoising strength
  moving from the given one to `Final denoising strength` along the `Denoising strength curve` (Aggressive: sin,
  Lazy: 1 − cos, Linear). Each image's infotext gets `Final denoising strength` and `Denoising curve`. With
  `color_correction`, every loop is corrected towards the original picture (not the previous loop's output).

Script keys are placed where A1111's `extra_generation_params` puts them: after the fixed keys, before any other key.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InpaintlabError
from ..infotext import FIXED_KEYS, _PAIR, format_value
from ..result import Result
from ..upscalers import Tiling, UpscalerModel, upscale
from ..upscalers.tiling import _crop, combine_grid, grid_positions
from .rows import CURVES



class ScriptError(InpaintlabError):
    """A script argument that cannot be used; the message names it."""


def insert_keys(infotext: str, keys: dict[str, Any]) -> str:
    """`infotext` with `keys` added after its fixed keys (where A1111's script-set extra parameters appear)."""
    *head, last = infotext.split("\n")
    pairs = [(m.group(1), m.group(2)) for m in _PAIR.finditer(last)]
    at = next((i for i, (k, _) in enumerate(pairs) if k not in FIXED_KEYS), len(pairs))
    new = [(k, format_value(v)) for k, v in keys.items()]
    pairs = pairs[:at] + new + [p for p in pairs[at:] if p[0] not in keys]
    return "\n".join([*head, ", ".join(f"{k}: {v}" for k, v in pairs)])


def _fixed_seed(seed: int) -> int:
    return int(np.random.randint(0, 2**32 - 1)) if seed == -1 else seed  # A1111's fix_seed


def sd_upscale(pipe, image: Image.Image, prompt: str, negative_prompt: str = "", *, tile_overlap: int = 64,
               scale_factor: float = 2.0, upscaler: str | UpscalerModel = "None", width: int = 512, height: int = 512,
               seed: int = -1, tiling: Tiling | None = None, **settings: Any) -> Result:
    """A1111's SD upscale script: `width × height` are the tile size (the img2img sliders)."""
    if not 0 <= tile_overlap < min(width, height):
        raise ScriptError(f"tile_overlap {tile_overlap} must be in [0, min(width, height) = {min(width, height)})")
    if settings.get("batch_size", 1) != 1:
        raise ScriptError("sd_upscale runs its tiles one at a time (batch_size 1)")
    seed = _fixed_seed(seed)
    name = upscaler if isinstance(upscaler, str) else upscaler.name
    img = upscale(image.convert("RGB"), scale_factor, upscaler, tiling)
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    ys, xs = grid_positions(h, height, tile_overlap), grid_positions(w, width, tile_overlap)
    rows, first, k = [], None, 0
    for y in ys:
        tiles = []
        for x in xs:
            tile = Image.fromarray(_crop(arr, y, x, height, width))
            res = pipe.img2img(tile, prompt, negative_prompt, width=width, height=height, seed=seed + k, **settings)
            first = first or res
            tiles.append((x, np.asarray(res.images[0].convert("RGB"))))
            k += 1
        rows.append((y, tiles))
    combined = Image.fromarray(combine_grid(rows, height, w, h, tile_overlap))
    info = insert_keys(first.infotext, {"SD upscale overlap": tile_overlap, "SD upscale upscaler": name})
    return Result(images=[combined], infotexts=[info], seeds=[seed])


def loopback_strengths(denoising_strength: float, final: float, loops: int, curve: str = "Linear") -> list[float]:
    """The denoising strength of each loop."""
    if curve not in CURVES:
        raise ScriptError(f"denoising curve {curve!r}: choose from {', '.join(CURVES)}")
    if loops == 1:
        return [denoising_strength]
    c = {"Aggressive": lambda t: math.sin(t * math.pi * 0.5), "Lazy": lambda t: 1 - math.cos(t * math.pi * 0.5),
         "Linear": lambda t: t}[curve]
    return [denoising_strength + (final - denoising_strength) * c(i / (loops - 1)) for i in range(loops)]


def loopback(pipe, image: Image.Image, prompt: str, negative_prompt: str = "", *, loops: int = 4,
             final_denoising_strength: float = 0.5, denoising_curve: str = "Linear", denoising_strength: float = 0.75,
             seed: int = -1, **settings: Any) -> Result:
    """A1111's Loopback script (one batch, no interrogation): every loop's image, each with its own infotext."""
    if loops < 1:
        raise ScriptError(f"loops must be >= 1, got {loops}")
    if settings.get("batch_size", 1) != 1:
        raise ScriptError("loopback runs one image per loop (batch_size 1)")
    seed = _fixed_seed(seed)
    keys = {"Final denoising strength": final_denoising_strength, "Denoising curve": denoising_curve}
    if settings.pop("color_correction", False):
        # A1111 sets p.color_corrections once, from the first init image as given: every loop matches the original.
        from ..techniques.color_correction import ColorCorrection

        settings["techniques"] = [*(settings.get("techniques") or []), ColorCorrection(image)]
    images, infos, seeds = [], [], []
    current = image
    for i, strength in enumerate(loopback_strengths(denoising_strength, final_denoising_strength, loops,
                                                    denoising_curve)):
        res = pipe.img2img(current, prompt, negative_prompt, denoising_strength=strength, seed=seed + i, **settings)
        images.append(res.images[0])
        infos.append(insert_keys(res.infotext, keys))
        seeds.append(seed + i)
        current = res.images[0]
    return Result(images=images, infotexts=infos, seeds=seeds)
