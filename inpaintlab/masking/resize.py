"""A1111's ``resize_image`` (spec §3): the four img2img resize modes, all with Pillow Lanczos.

No upscaler models: this is A1111 with ``upscaler_for_img2img`` = None, where every resize is Lanczos.
"""

from __future__ import annotations

from PIL import Image

__all__ = ["RESIZE_MODES", "resize_image"]

# A1111 labels, indexed by resize_mode.
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")

_LANCZOS = Image.Resampling.LANCZOS


def _check_size(width: int, height: int) -> None:
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise ValueError(f"target size must be positive integers, got {width}x{height}")


def _fit_size(im: Image.Image, width: int, height: int, cover: bool) -> tuple[int, int]:
    """Size of ``im`` scaled to the target with the aspect kept (integer division, as A1111).

    ``cover=True`` (mode 1) fills the target and overflows on one axis; ``cover=False`` (mode 2) fits inside.
    """
    ratio, src_ratio = width / height, im.width / im.height
    # Mode 1 matches the target width when the target is relatively wider; mode 2 when it is relatively narrower.
    match_width = ratio > src_ratio if cover else ratio < src_ratio
    if match_width:
        return width, im.height * width // im.width
    return im.width * height // im.height, height


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int) -> Image.Image:
    """Resize ``im`` to ``width x height`` the way A1111's img2img does.

    * 0 "Just resize": stretch; keeps the image mode.
    * 1 "Crop and resize": scale to cover, centre, crop the overflow.
    * 2 "Resize and fill" (and 3, which behaves as 2 here): scale to fit, centre, fill the bars by stretching the
      resized image's first/last row (top/bottom bars) or column (side bars) with a zero-height/width Pillow box.

    Modes 1-3 paste onto a black RGB canvas and therefore return RGB even for an L input.
    """
    if not isinstance(im, Image.Image):
        raise TypeError(f"im must be a PIL.Image.Image, got {type(im).__name__}")
    if resize_mode not in (0, 1, 2, 3):
        raise ValueError(f"resize_mode must be one of 0, 1, 2, 3 ({', '.join(RESIZE_MODES)}), got {resize_mode!r}")
    _check_size(width, height)
    if resize_mode == 0:
        return im.resize((width, height), resample=_LANCZOS)

    sw, sh = _fit_size(im, width, height, cover=resize_mode == 1)
    resized = im.resize((sw, sh), resample=_LANCZOS)
    res = Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - sw // 2, height // 2 - sh // 2))
    if resize_mode == 1:
        return res

    ratio, src_ratio = width / height, im.width / im.height
    if ratio < src_ratio:
        bar = height // 2 - sh // 2
        if bar > 0:
            # A zero-height source box makes Pillow sample at the edge and replicate it down the bar.
            top = resized.resize((width, bar), box=(0, 0, width, 0))
            bottom = resized.resize((width, bar), box=(0, resized.height, width, resized.height))
            res.paste(top, box=(0, 0))
            res.paste(bottom, box=(0, bar + sh))
    elif ratio > src_ratio:
        bar = width // 2 - sw // 2
        if bar > 0:
            left = resized.resize((bar, height), box=(0, 0, 0, height))
            right = resized.resize((bar, height), box=(resized.width, 0, resized.width, height))
            res.paste(left, box=(0, 0))
            res.paste(right, box=(bar + sw, 0))
    return res
