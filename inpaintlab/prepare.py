"""Image-side preparation of an inpaint job (A1111 steps 2–7): everything that happens before the VAE sees the image.

`prepare_inpaint` takes the user's image and mask and returns the processing-size init image, the mask at each stage
and the overlay that will be composited back at the end. It is pure (PIL in, PIL out), so each setting's effect on the
inputs can be inspected without a model.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from PIL import Image

from . import masking

log = logging.getLogger(__name__)
FILL_SPACES = ("pixel", "latent")


@dataclasses.dataclass
class Prepared:
    """init: W×H RGB image to encode. image_mask: W×H blurred mask (L) for the latent mask and 9-channel conditioning.
    overlay: RGBA original to composite over the result; paste_to: (x, y, w, h) of the crop in only-masked mode.
    repaint_mask / overlay_mask: binary (after mask mode) and blurred composite masks at the output size.
    latent_mask: a script's own W×H mask (A1111's `p.latent_mask`) for the latent mask and the fill, in place of
    image_mask; None: image_mask serves. extra: infotext keys in A1111's insertion order. All mask fields are None
    for plain img2img."""

    init: Image.Image
    image_mask: Image.Image | None = None
    overlay: Image.Image | None = None
    overlay_mask: Image.Image | None = None
    repaint_mask: Image.Image | None = None
    paste_to: tuple[int, int, int, int] | None = None
    latent_mask: Image.Image | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")
    return value


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """RGBA → pasted over the background colour (A1111 `img2img_background_color`); anything else → RGB."""
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, background)
        canvas.alpha_composite(image)
        return canvas.convert("RGB")
    return image.convert("RGB")


def processing_size(image_size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """W×H to process at. Explicit sizes must be multiples of 8 (latents are 1/8 size); None takes the image's size,
    rounded down to a multiple of 8 (A1111's UI sliders also move in steps of 8)."""
    sizes = []
    for name, value, default in (("width", width, image_size[0]), ("height", height, image_size[1])):
        if value is None:
            value = default - default % 8
            if value != default:
                log.info("%s %d rounded down to %d (a multiple of 8)", name, default, value)
        if value < 8 or value % 8:
            raise ValueError(f"{name} must be a positive multiple of 8, got {value}")
        sizes.append(value)
    return sizes[0], sizes[1]


def fill_space_ignored(masked_content: str) -> str:
    return (f"fill_space 'latent' only moves masked content 'fill' to the latents; masked content {masked_content!r} "
            "ignores it")


def prepare_inpaint(image: Image.Image, mask: Image.Image | None, width: int, height: int, *, mask_blur: int = 4,
                    mask_mode: str = "masked", masked_content: str = "original", inpaint_area: str = "whole",
                    padding: int = 32, resize_mode: int = 0, fill_space: str = "pixel",
                    mask_round: bool = True, mask_blur_y: int | None = None,
                    latent_mask: Image.Image | None = None) -> Prepared:
    """A1111 steps 2–7 for one init image: mask intake, invert, blur, geometry, resize/crop, overlay and pixel fill.

    mask_round=False (soft inpainting, Differential Diffusion) keeps an RGBA mask's alpha unthresholded.
    mask_blur_y: the vertical blur when it differs from `mask_blur` (A1111's `mask_blur_x` / `mask_blur_y`, set by
    Outpainting mk2); "Mask blur" is then not written, as A1111's `mask_blur` reads None when they differ.
    latent_mask: A1111's `p.latent_mask` (the outpainting scripts): a W×H mask used as is, without blur or resize,
    for the fill and the latent mask; the blurred mask still makes the overlay and the 9-channel conditioning."""
    check_choice("mask_mode", mask_mode, masking.MASK_MODES)
    check_choice("masked_content", masked_content, masking.MASKED_CONTENT)
    check_choice("inpaint_area", inpaint_area, masking.INPAINT_AREAS)
    check_choice("fill_space", fill_space, FILL_SPACES)
    if fill_space == "latent" and masked_content != "fill":
        log.warning("%s", fill_space_ignored(masked_content))
    if not isinstance(image, Image.Image) or not (mask is None or isinstance(mask, Image.Image)):
        raise TypeError(f"image and mask must be PIL images, got {type(image).__name__} and {type(mask).__name__}")
    blur_y = mask_blur if mask_blur_y is None else mask_blur_y
    for name, value in (("mask_blur", mask_blur), ("mask_blur_y", blur_y), ("padding", padding)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if resize_mode not in (0, 1, 2):
        # Mode 3 resizes latents instead of pixels; A1111's overlay then no longer matches the output's size.
        raise ValueError(f"resize_mode must be 0 (just resize), 1 (crop and resize) or 2 (resize and fill), got "
                         f"{resize_mode!r}; 3 (latent upscale) is not supported")
    source = flatten(image)
    if mask is None:
        return Prepared(masking.resize_image(resize_mode, source, width, height))

    # Mask intake at the image's size: binarise, invert (before the blur, as A1111), blur with OpenCV.
    extra: dict[str, Any] = {}
    if mask.size != source.size:
        log.warning("mask %s resized to the image size %s", mask.size, source.size)
        mask = mask.resize(source.size, Image.Resampling.LANCZOS)
    binary = masking.binary_mask(mask, round=mask_round)
    if mask_mode == "not_masked":
        binary = masking.invert_mask(binary)
        extra["Mask mode"] = "Inpaint not masked"
    blurred = masking.blur_mask(binary, mask_blur, blur_y)
    if blur_y == mask_blur > 0:
        extra["Mask blur"] = mask_blur
    if latent_mask is not None:
        if inpaint_area != "whole":
            raise ValueError("a separate latent mask works in inpaint_area 'whole' only (as the scripts use it)")
        if latent_mask.size != (width, height):
            raise ValueError(f"latent mask size {latent_mask.size} must be the processing size {(width, height)}")
        latent_mask = latent_mask.convert("L")

    if inpaint_area == "only_masked":
        crop = masking.get_crop_region_v2(blurred, padding)
        if crop is None:
            log.warning("mask is empty: 'only_masked' falls back to plain img2img (A1111 >= 1.9.1)")
            return Prepared(masking.resize_image(resize_mode, source, width, height), extra=extra)
        x1, y1, x2, y2 = masking.expand_crop_region(crop, width, height, source.width, source.height)
        crop = (x1, y1, x2, y2)
        init, image_mask = masking.crop_for_only_masked(source, blurred, crop, width, height)
        prepared = Prepared(
            init=init, image_mask=image_mask,
            overlay_mask=masking.mask_for_overlay(blurred, only_masked=True),
            repaint_mask=binary, paste_to=(x1, y1, x2 - x1, y2 - y1), extra=extra)
        prepared.overlay = masking.make_overlay(source, prepared.overlay_mask)
        extra["Inpaint area"] = "Only masked"
        extra["Masked area padding"] = padding
    else:
        image_mask = masking.resize_image(resize_mode, blurred, width, height).convert("L")
        init = masking.resize_image(resize_mode, source, width, height)
        overlay_mask = masking.mask_for_overlay(image_mask)
        prepared = Prepared(init, image_mask, masking.make_overlay(init, overlay_mask), overlay_mask,
                            masking.resize_image(resize_mode, binary, width, height).convert("L"),
                            latent_mask=latent_mask, extra=extra)

    # A1111 fills the pixels for every mode but "original"; fill_space="latent" moves only "fill" to the latents.
    if masked_content != "original" and not (masked_content == "fill" and fill_space == "latent"):
        prepared.init = masking.fill(prepared.init, prepared.image_mask if latent_mask is None else latent_mask)
    if masked_content == "fill":
        extra["Masked content"] = "fill"
        if fill_space == "latent":
            extra["Fill space"] = "latent"  # not an A1111 key: without it the infotext would claim A1111's pixel fill
    return prepared
