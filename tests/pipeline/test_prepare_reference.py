"""``prepare_inpaint`` recomputed step by step from A1111 v1.10's mask and image preparation, compared byte for byte.

The expected values are built here from the spec, not from ``prepare_inpaint``'s code path: mask intake, inversion
and the crop box in numpy, the blur with OpenCV directly (step 4's kernel rule), the crop expansion re-derived from
§5, the overlay's premultiply/un-premultiply arithmetic in numpy. Only the resize modes (``resize_image``, §3) and the
pixel fill (``fill``, §4) are taken from ``inpaintlab.masking``; each has its own test against Pillow or a numpy
reference (tests/masking/test_crop.py, tests/masking/test_fill_reference.py).

The image (120×80) is not square and the processing sizes (64×96, 96×56, 64×72, 48×40) differ from it in size
and aspect, so that in "Only masked" mode the expanded crop box is often clamped by the image and resize mode 2 has
to add bars. Without such cases a crop resized with mode 1, or a mask resized with mode 0, would give the same
bytes (they do for the one case whose box has exactly the processing ratio).
"""

import itertools

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from inpaintlab.masking import fill, resize_image
from inpaintlab.prepare import prepare_inpaint

IMAGE_SIZE = (120, 80)


# --- reference, one function per spec step ---------------------------------------------------------------------


def _binary(mask: Image.Image) -> np.ndarray:
    """Step 2: an RGBA mask with a non-opaque alpha gives 255 where alpha > 128; anything else becomes L (luma)."""
    if mask.mode == "RGBA":
        alpha = np.asarray(mask)[..., 3]
        if alpha.min() < 255:
            return np.where(alpha > 128, 255, 0).astype(np.uint8)
    return np.asarray(mask.convert("L"))


def _blur(mask: np.ndarray, sigma: int) -> np.ndarray:
    """Step 4: horizontal then vertical 1-D OpenCV Gaussian, kernel length 2·int(2.5σ + 0.5) + 1."""
    k = 2 * int(2.5 * sigma + 0.5) + 1
    return cv2.GaussianBlur(cv2.GaussianBlur(mask, (k, 1), sigma), (1, k), sigma)


def _crop_box(mask: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    """§5 get_crop_region_v2: bounding box of the non-zero pixels (x2, y2 exclusive), grown by pad, clamped."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (max(int(xs.min()) - pad, 0), max(int(ys.min()) - pad, 0),
            min(int(xs.max()) + 1 + pad, w), min(int(ys.max()) + 1 + pad, h))


def _grow(lo: int, hi: int, desired: float, limit: int) -> tuple[int, int]:
    d = int(desired - (hi - lo))
    lo, hi = lo - d // 2, hi + d - d // 2
    if hi >= limit:
        lo, hi = lo - (hi - limit), limit
    if lo < 0:
        lo, hi = 0, hi - lo
    return lo, min(hi, limit)


def _expand(box, pw: int, ph: int, iw: int, ih: int) -> tuple[int, int, int, int]:
    """§5 expand_crop_region: grow the short side to the processing aspect ratio, shift inside, clamp."""
    x1, y1, x2, y2 = box
    if (x2 - x1) / (y2 - y1) > pw / ph:
        y1, y2 = _grow(y1, y2, (x2 - x1) / (pw / ph), ih)
    else:
        x1, x2 = _grow(x1, x2, (y2 - y1) * (pw / ph), iw)
    return x1, y1, x2, y2


def _overlay(image: np.ndarray, mask_for_overlay: np.ndarray) -> np.ndarray:
    """Step 7.4: the image pasted (premultiplied, RGBa) through ``255 − mask`` onto a transparent canvas, then RGBA.

    Premultiplying rounds ``c·α/255``; converting back truncates ``255·p/α`` (Pillow's rule, pinned in
    tests/masking/test_fill_reference.py); at α = 0 everything is 0.
    """
    alpha = 255 - mask_for_overlay.astype(np.int64)[..., None]
    premultiplied = (image.astype(np.int64) * alpha * 2 + 255) // 510  # round half up of c·α/255
    straight = np.where(alpha == 255, image, np.minimum(255 * premultiplied // np.maximum(alpha, 1), 255))
    straight = np.where(alpha == 0, 0, straight)
    return np.concatenate([straight, alpha], axis=-1).astype(np.uint8)


def _l(x) -> np.ndarray:
    """Resize modes 1/2 return RGB with three equal channels; every consumer takes it as L."""
    arr = np.asarray(x)
    if arr.ndim == 3:
        assert (arr == arr[..., :1]).all()
        arr = arr[..., 0]
    return arr


def _expected(image, mask, width, height, blur, mask_mode, content, area, padding, resize_mode):
    image_rgb = image.convert("RGB")  # step 7.1 (an RGB image: nothing to flatten)
    binary = _binary(mask)  # steps 2/3
    if mask_mode == "not_masked":
        binary = 255 - binary
    blurred = _blur(binary, blur)
    extra = {**({"Mask mode": "Inpaint not masked"} if mask_mode == "not_masked" else {}), "Mask blur": blur}
    if area == "whole":  # step 5, step 7.2-7.4
        image_mask = _l(resize_image(resize_mode, Image.fromarray(blurred), width, height))
        init = resize_image(resize_mode, image_rgb, width, height)
        overlay_mask = np.minimum(image_mask.astype(np.int64) * 2, 255).astype(np.uint8)
        overlay = _overlay(np.asarray(init), overlay_mask)
        repaint = _l(resize_image(resize_mode, Image.fromarray(binary), width, height))
        paste_to = None
    else:  # step 6, step 7.4-7.5
        x1, y1, x2, y2 = box = _expand(_crop_box(blurred, padding), width, height, *IMAGE_SIZE)
        image_mask = _l(resize_image(2, Image.fromarray(blurred).crop(box), width, height))
        init = resize_image(2, image_rgb.crop(box), width, height)
        overlay_mask, repaint, paste_to = blurred, binary, (x1, y1, x2 - x1, y2 - y1)
        overlay = _overlay(np.asarray(image_rgb), overlay_mask)
        extra.update({"Inpaint area": "Only masked", "Masked area padding": padding})
    if content != "original":  # step 7.6: fill for every masked content but "original"
        init = fill(init, Image.fromarray(image_mask))
    if content == "fill":
        extra["Masked content"] = "fill"
    return {"init": np.asarray(init), "image_mask": image_mask, "overlay_mask": overlay_mask, "overlay": overlay,
            "repaint_mask": repaint, "paste_to": paste_to, "extra": extra}


# --- inputs --------------------------------------------------------------------------------------------------------


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = IMAGE_SIZE
    coarse = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8))


def _mask(kind: str, seed: int) -> Image.Image:
    """An ellipse and a rectangle, as a white-on-black L mask or as the alpha of a painted RGBA mask.

    "L" / "RGBA": medium shapes at a random place. "small": small shapes well inside the image, so that the expanded
    crop box keeps the processing aspect ratio. "edge": small shapes at the left border, so that the box is shifted
    back inside the image.
    """
    rng = np.random.default_rng(100 + seed)
    w, h = IMAGE_SIZE
    size = 22 if kind in ("L", "RGBA") else 8
    x = {"edge": 1, "small": int(rng.integers(40, 70))}.get(kind, int(rng.integers(20, 60)))
    y = int(rng.integers(30, 40)) if kind in ("small", "edge") else int(rng.integers(14, 36))
    m = Image.new("L", IMAGE_SIZE)
    draw = ImageDraw.Draw(m)
    draw.ellipse((x, y, x + size, y + size * 3 // 4), fill=255)
    draw.rectangle((x + size * 4 // 5, y + size // 2, x + size * 7 // 5, y + size), fill=255)
    if kind != "RGBA":
        return m
    # A painted RGBA mask: random colours, alpha a soft ramp around the strokes (only alpha > 128 counts).
    alpha = cv2.GaussianBlur(np.asarray(m), (7, 7), 2)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


_PRODUCT = list(itertools.product(("whole", "only_masked"), (3, 6), ("fill", "latent_noise"), ("masked", "not_masked")))
# Per case: processing size, resize mode (whole picture) and padding (only masked) vary with the case index.
CASES = [
    (area, blur, content, mode, (64, 96) if i % 2 == 0 else (96, 56), i % 3, (0, 8, 20)[i % 3],
     "L" if i % 4 < 2 else "RGBA", i)
    for i, (area, blur, content, mode) in enumerate(_PRODUCT)
] + [  # only masked with unclamped boxes, and with a box shifted in from the border; "original" (no fill)
    ("only_masked", 3, "fill", "masked", (96, 56), 0, 4, "small", 16),
    ("only_masked", 6, "latent_noise", "masked", (64, 72), 0, 0, "small", 17),
    ("only_masked", 3, "latent_noise", "masked", (96, 56), 0, 6, "edge", 18),
    ("only_masked", 6, "fill", "masked", (48, 40), 0, 2, "edge", 19),
    ("only_masked", 3, "original", "masked", (64, 96), 0, 8, "L", 20),
    ("whole", 6, "original", "not_masked", (96, 56), 2, 0, "RGBA", 21),
]


@pytest.mark.parametrize("area, blur, content, mask_mode, size, resize_mode, padding, mask_kind, seed", CASES)
def test_prepare_inpaint_matches_step_by_step_reference(area, blur, content, mask_mode, size, resize_mode, padding,
                                                        mask_kind, seed):
    image, mask = _picture(seed), _mask(mask_kind, seed)
    before = (image.tobytes(), mask.tobytes())
    width, height = size
    got = prepare_inpaint(image, mask, width, height, mask_blur=blur, mask_mode=mask_mode, masked_content=content,
                          inpaint_area=area, padding=padding, resize_mode=resize_mode)
    want = _expected(image, mask, width, height, blur, mask_mode, content, area, padding, resize_mode)

    assert (image.tobytes(), mask.tobytes()) == before  # inputs untouched
    assert got.paste_to == want["paste_to"]
    assert got.extra == want["extra"] and list(got.extra) == list(want["extra"])  # A1111's insertion order
    out_size = size if area == "whole" else IMAGE_SIZE
    for name, mode, shape_size in (("init", "RGB", size), ("image_mask", "L", size), ("overlay_mask", "L", out_size),
                                   ("overlay", "RGBA", out_size), ("repaint_mask", "L", out_size)):
        field = getattr(got, name)
        assert field.mode == mode and field.size == shape_size, (name, field.mode, field.size)
        expected = want[name]
        assert field.tobytes() == np.ascontiguousarray(expected).tobytes(), (
            f"{name}: {int((np.asarray(field) != expected).sum())} values differ")
