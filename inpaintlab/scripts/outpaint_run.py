"""A1111 v1.10's outpainting scripts, run through `Pipeline.inpaint`.

* `poor_mans_outpainting`: the picture pasted on a black canvas grown by `pixels` per chosen side (the total rounded
  up to a multiple of 64, `expansion`), a white mask with a black rectangle over the picture inset by `2·mask_blur`
  (blurred at `2·mask_blur`) and a latent mask inset by `mask_blur // 2`; the canvas is cut with `split_grid` into
  tiles of the width × height with `pixels` of overlap, every tile not wholly inside the picture is inpainted (batch
  size 1, whole picture, the chosen masked content; tile k gets seed + k) and `combine_grid` blends them back. The
  result carries the first tile's infotext.
* `outpainting_mk2`: one pass per chosen side (left, right, up, down): the picture grows by that side's pixels on a
  canvas rounded up to 64, the new area gets Outpainting mk2's matched noise (`matched_noise`), the part next to the
  new side (at most the width × height, the whole canvas across) is inpainted with masked content "original", a
  mask blur of `4·mask_blur` along the axes that grow and a latent mask inset by `2·mask_blur`; the output is pasted
  back and the canvas cropped to the grown size. Every pass uses the same seed. The result carries the first pass's
  infotext on every image.

The scripts' masks reach the pipeline through `ScriptMasks` (A1111's `p.latent_mask`, `p.mask_blur_x/y`).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw

from ..pipeline.technique import Technique
from ..result import Result
from ..upscalers.tiling import combine_grid, grid_positions
from .img2img import ScriptError, _fixed_seed
from .outpainting import DIRECTIONS, expansion, matched_noise
from .rows import FILL_CHOICES


class ScriptMasks(Technique):
    """A script's own latent mask (A1111's `p.latent_mask`: the latent mask and the fill, used as given) and a
    vertical mask blur other than `mask_blur` (`p.mask_blur_y`)."""

    name = "script masks"
    order = 0

    def __init__(self, latent_mask: Image.Image | None = None, mask_blur_y: int | None = None) -> None:
        self.latent_mask, self.mask_blur_y = latent_mask, mask_blur_y

    def setup(self, job) -> None:
        job.latent_mask_image, job.mask_blur_y = self.latent_mask, self.mask_blur_y


def _directions(direction: str | Iterable[str]) -> tuple[str, ...]:
    chosen = [d.strip().lower() for d in (direction.split(",") if isinstance(direction, str) else direction)]
    chosen = [d for d in chosen if d]
    bad = [d for d in chosen if d not in DIRECTIONS]
    if bad or not chosen:
        raise ScriptError(f"outpainting direction {bad or chosen!r}: choose one or more of {', '.join(DIRECTIONS)}")
    return tuple(d for d in DIRECTIONS if d in chosen)


def _fill(inpainting_fill: str | int) -> str:
    if isinstance(inpainting_fill, int) and not isinstance(inpainting_fill, bool) and 0 <= inpainting_fill < 4:
        return FILL_CHOICES[inpainting_fill]
    key = str(inpainting_fill).strip().lower().replace(" ", "_")
    if key not in FILL_CHOICES:
        raise ScriptError(f"masked content {inpainting_fill!r}: choose fill, original, latent noise or latent nothing")
    return key


def _check(settings: dict[str, Any], script: str, taken: tuple[str, ...]) -> None:
    for name in taken:
        if name in settings:
            raise ScriptError(f"{script} sets {name} itself; leave it out")
    if settings.get("inpaint_area", "whole") not in ("whole", "Whole picture"):
        raise ScriptError(f"{script} inpaints the whole picture (inpaint_area 'whole')")


def _inpaint(pipe, image: Image.Image, mask: Image.Image, prompt: str, negative_prompt: str, settings: dict[str, Any],
             masks: ScriptMasks, **script: Any) -> Result:
    """One `Pipeline.inpaint` call of a script: the caller's settings, the script's own, its masks technique."""
    own = dict(settings)
    techniques = [*(own.pop("techniques", None) or []), masks]
    return pipe.inpaint(image, mask, prompt, negative_prompt, inpaint_area="whole", techniques=techniques,
                        **{k: v for k, v in own.items() if k != "inpaint_area"}, **script)


def _rect_mask(size: tuple[int, int], box: tuple[int, int, int, int], mode: str = "L") -> Image.Image:
    """A white canvas with a black rectangle, both corners inclusive (PIL's `ImageDraw.rectangle`)."""
    if box[2] < box[0] or box[3] < box[1]:  # Pillow refuses it (A1111 stops there with Pillow's ValueError)
        raise ScriptError(f"the {size[0]}x{size[1]} processed part leaves no room for the known picture (mask "
                          f"rectangle {box}): make width/height larger than pixels + 2·mask_blur")
    mask = Image.new(mode, size, "white")
    ImageDraw.Draw(mask).rectangle(box, fill="black")
    return mask


def poor_mans_canvas(image: Image.Image, pixels: int = 128, mask_blur: int = 4,
                     direction: str | Iterable[str] = DIRECTIONS):
    """Poor man's outpainting's canvas, mask and latent mask (A1111's geometry), and the `Expansion`."""
    e = expansion(image.width, image.height, pixels, _directions(direction))
    img = Image.new("RGB", (e.width, e.height))
    img.paste(image, (e.left, e.up))

    def inset(b: int) -> tuple[int, int, int, int]:
        return (e.left + (b if e.left else 0), e.up + (b if e.up else 0),
                e.width - e.right - (b if e.right else 0), e.height - e.down - (b if e.down else 0))

    return img, _rect_mask(img.size, inset(2 * mask_blur)), _rect_mask(img.size, inset(mask_blur // 2)), e


def poor_mans_outpainting(pipe, image: Image.Image, prompt: str, negative_prompt: str = "", *, pixels: int = 128,
                          mask_blur: int = 4, inpainting_fill: str | int = "fill",
                          direction: str | Iterable[str] = DIRECTIONS, width: int = 512, height: int = 512,
                          seed: int = -1, **settings: Any) -> Result:
    """A1111's "Poor man's outpainting" (`Pixels to expand`, `Mask blur`, `Masked content`, `Outpainting
    direction`); `width × height` are the tiles (the img2img sliders). Other keywords: any inpaint setting."""
    _check(settings, "Poor man's outpainting", ("mask", "mask_blur_y", "masked_content"))
    if settings.get("batch_size", 1) != 1:
        raise ScriptError("Poor man's outpainting runs its tiles one at a time (batch_size 1)")
    if not 0 < pixels < min(width, height):
        raise ScriptError(f"pixels {pixels} must be in (0, min(width, height) = {min(width, height)}): they are the "
                          "tiles' overlap")
    if mask_blur < 0:
        raise ScriptError(f"mask_blur must be >= 0, got {mask_blur}")
    content = _fill(inpainting_fill)
    img, mask, latent_mask, e = poor_mans_canvas(image.convert("RGB"), pixels, mask_blur, direction)
    if min(e.width, e.height) <= pixels:
        raise ScriptError(f"the {e.width}x{e.height} canvas has a side not longer than pixels {pixels}: A1111 makes "
                          "no tiles then")
    seed = _fixed_seed(seed)
    ys, xs = grid_positions(e.height, height, pixels), grid_positions(e.width, width, pixels)
    rows, first, k = [], None, 0
    for y in ys:
        tiles = []
        for x in xs:
            box = (x, y, x + width, y + height)
            if x >= e.left and x + width <= e.width - e.right and y >= e.up and y + height <= e.height - e.down:
                tiles.append((x, np.asarray(img.crop(box))))     # wholly inside the picture: kept as it is
                continue
            res = _inpaint(pipe, img.crop(box), mask.crop(box), prompt, negative_prompt, settings,
                           ScriptMasks(latent_mask.crop(box)), width=width, height=height, seed=seed + k,
                           mask_blur=2 * mask_blur, masked_content=content)
            first = first or res
            tiles.append((x, np.asarray(res.images[0].convert("RGB"))))
            k += 1
        rows.append((y, tiles))
    combined = Image.fromarray(combine_grid(rows, height, e.width, e.height, pixels))
    if first is None:  # every tile inside the picture cannot happen (the canvas grew), but never return a blank
        raise ScriptError("no tile reaches the new area")
    return Result(images=[combined], infotexts=[first.infotext], seeds=[first.seeds[0]])


def mk2_inputs(image: Image.Image, px: int, side: str, mask_blur_x: int, mask_blur_y: int, process_width: int,
               process_height: int, noise_q: float = 1.0, color_variation: float = 0.05):
    """One Outpainting mk2 pass's inputs for one picture (A1111's `expand`): the noise-filled canvas, the crop box
    to process, the cropped init image and mask, and the grown size (res_w, res_h). `mask_blur_x/y`: the UI's mask
    blur along the axes that grow, else 0 (A1111's unscaled `mask_blur_x`)."""
    left, right, top, bottom = (side == d for d in DIRECTIONS)
    horiz, vert = left or right, top or bottom
    res_w, res_h = image.width + (px if horiz else 0), image.height + (px if vert else 0)
    cw, ch = math.ceil(res_w / 64) * 64, math.ceil(res_h / 64) * 64
    canvas = Image.new("RGB", (cw, ch))
    canvas.paste(image, (px if left else 0, px if top else 0))
    mask = _rect_mask((cw, ch), (px + mask_blur_x if left else 0, px + mask_blur_y if top else 0,
                                 cw - px - mask_blur_x if right else res_w, ch - px - mask_blur_y if bottom else res_h),
                      "RGB")
    noised = matched_noise(np.asarray(canvas) / 255.0, np.asarray(mask) / 255.0, noise_q, color_variation)
    filled = Image.fromarray(np.clip(noised * 255.0, 0.0, 255.0).astype(np.uint8), mode="RGB")  # truncation
    tw = min(process_width, res_w) if horiz else cw
    th = min(process_height, res_h) if vert else ch
    box = (0 if left else cw - tw, 0 if top else ch - th, tw if left else cw, th if top else ch)
    return filled, box, filled.crop(box), mask.crop(box), (res_w, res_h)


def mk2_latent_mask(size: tuple[int, int], mask_size: tuple[int, int], res: tuple[int, int], px: int, side: str,
                    mask_blur_x: int, mask_blur_y: int) -> Image.Image:
    """A1111's latent mask of an mk2 pass: `size` = the processing size, `mask_size` = the cropped mask's, `res` =
    the last picture's grown size; inset `2·mask_blur` (and its right/bottom edge from the cropped mask)."""
    left, right, top, bottom = (side == d for d in DIRECTIONS)
    return _rect_mask(size, (px + 2 * mask_blur_x if left else 0, px + 2 * mask_blur_y if top else 0,
                             mask_size[0] - px - 2 * mask_blur_x if right else res[0],
                             mask_size[1] - px - 2 * mask_blur_y if bottom else res[1]), "RGB")


def outpainting_mk2(pipe, image: Image.Image, prompt: str, negative_prompt: str = "", *, pixels: int = 128,
                    mask_blur: int = 8, direction: str | Iterable[str] = DIRECTIONS, noise_q: float = 1.0,
                    color_variation: float = 0.05, width: int = 512, height: int = 512, seed: int = -1,
                    **settings: Any) -> Result:
    """A1111's "Outpainting mk2" (`Pixels to expand`, `Mask blur`, `Outpainting direction`, `Fall-off exponent
    (lower=higher detail)` = noise_q, `Color variation`); `width × height` bound the processed part (the img2img
    sliders). Other keywords: any inpaint setting; `batch_size` pictures grow side by side."""
    _check(settings, "Outpainting mk2", ("mask", "mask_blur_y", "masked_content"))
    if pixels <= 0 or mask_blur < 0:
        raise ScriptError(f"pixels must be > 0 and mask_blur >= 0, got {pixels} and {mask_blur}")
    if not 0 <= noise_q <= 4 or not 0 <= color_variation <= 1:
        raise ScriptError(f"noise_q must be in [0, 4] and color_variation in [0, 1], got {noise_q}, {color_variation}")
    chosen = _directions(direction)
    start = image.convert("RGB")
    e = expansion(start.width, start.height, pixels, chosen)
    bx = mask_blur if e.left or e.right else 0
    by = mask_blur if e.up or e.down else 0
    batch = settings.pop("batch_size", 1)
    strength = settings.get("subseed_strength", 0.0)
    images = [start] * batch
    first = None
    for side in DIRECTIONS:
        px = getattr(e, side)
        if not px:
            continue
        # A1111 never fixes the seed: with -1 each pass draws its own (its batch then counts up from it).
        pass_seed = _fixed_seed(seed)
        subseed = settings.get("subseed", -1)
        pass_subseed = _fixed_seed(subseed) if strength else subseed
        grown = []
        for k, picture in enumerate(images):
            filled, box, init, mask, res = mk2_inputs(picture, px, side, bx, by, width, height, noise_q,
                                                      color_variation)
            tw, th = init.size
            if tw % 8 or th % 8:
                raise ScriptError(f"Outpainting mk2 would process {tw}x{th} (the picture plus its new {side} pixels); "
                                  "give a width and height not above it, or a picture whose side plus pixels is a "
                                  "multiple of 8")
            latent = mk2_latent_mask((tw, th), mask.size, res, px, side, bx, by)
            own = dict(settings, subseed=pass_subseed + k) if strength else settings
            out = _inpaint(pipe, init, mask, prompt, negative_prompt, own, ScriptMasks(latent, 4 * by),
                           width=tw, height=th, seed=pass_seed + (0 if strength else k), mask_blur=4 * bx,
                           masked_content="original")
            first = first or out
            generated = out.images[0]
            filled.paste(generated, (box[0], box[1]))
            grown.append(filled.crop((0, 0, *res)))
        images = grown
    return Result(images=images, infotexts=[first.infotext] * len(images), seeds=[first.seeds[0]] * len(images))
