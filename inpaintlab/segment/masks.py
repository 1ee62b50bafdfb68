"""Inpaint Anything's mask tools as functions on arrays, plus the ones its users ask for.

Masks are HxW uint8 arrays, 0 = keep, 255 = repaint (PIL "L" layout; `Image.fromarray(mask)` hands one to
`Pipeline.inpaint`). Inputs may also be bool arrays, HxWx3 arrays (channel 0 is read, as the extension reads its
sketch) or PIL images; inputs are never modified.

    masks = generate_masks(model, image)
    colours = segment_map(masks)                        # what the user clicks on
    mask = select(masks, points=[(120, 80)])            # the segments under the clicks (their visible parts)
    mask = expand_mask(mask, 4)                         # grow 4 px (square), or erode_mask / feather_mask
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageFilter

from .common import SegmentError

PAD_MODES = ("constant", "edge", "reflect", "mean", "median", "maximum", "minimum")


def colormap504() -> np.ndarray:
    """The PASCAL label colormap (512 entries, bits of the index spread over the high bits of R, G, B) without its
    8 entries darker than 64 in every channel: [504, 3] uint8, starting [128,0,0], [0,128,0], [128,128,0]."""
    cmap = np.zeros((512, 3), dtype=np.int64)
    index = np.arange(512)
    for shift in range(7, -1, -1):
        for channel in range(3):
            cmap[:, channel] |= ((index >> channel) & 1) << shift
        index = index >> 3
    return cmap[cmap.max(axis=1) >= 64].astype(np.uint8)


def as_mask(mask, what: str = "mask") -> np.ndarray:
    """A bool HxW view of a mask: any non-zero value of channel 0 counts."""
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L") if mask.mode not in ("L", "1") else mask)
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    if mask.ndim != 2 or 0 in mask.shape:
        raise SegmentError(f"{what} must be an HxW or HxWxC array or image, got shape {mask.shape}")
    return mask.astype(bool)


def _u8(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.uint8(255), np.uint8(0))


def _segmentations(masks) -> list[np.ndarray]:
    return [as_mask(m["segmentation"] if isinstance(m, dict) else m, "segmentation") for m in masks]


def sort_masks(masks, pad_mask=None) -> list:
    """By area, smallest first (a stable sort, like the extension), with the padded border (if any and non-empty)
    first: the order segment_map colours and select picks in."""
    out = sorted(masks, key=lambda m: int(as_mask(m["segmentation"] if isinstance(m, dict) else m).sum()))
    if pad_mask is not None:
        pad = as_mask(pad_mask, "pad_mask")
        if out and pad.shape != _segmentations(out[:1])[0].shape:
            raise SegmentError(f"pad_mask is {pad.shape[1]}x{pad.shape[0]}, the masks another size")
        if pad.any():
            out.insert(0, {"segmentation": pad})
    return out


def _owners(segs: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Per pixel, the index of the first segment covering it (-1 when none): each segment's visible region."""
    owner = np.full(size, -1, dtype=np.int64)
    for k, seg in enumerate(segs):
        if seg.shape != size:
            raise SegmentError(f"segment {k} is {seg.shape[1]}x{seg.shape[0]}, not {size[1]}x{size[0]}")
        owner[seg & (owner < 0)] = k
    return owner


def segment_map(masks, size: tuple[int, int] | None = None, pad_mask=None) -> np.ndarray:
    """The extension's segment colour image, HxWx3 uint8: segments sorted smallest first, each pixel coloured by the
    first segment covering it (colormap504()[k]); uncovered pixels and segments past the 504th stay black.
    `size` (H, W) is needed only when there are no masks."""
    segs = _segmentations(sort_masks(masks, pad_mask))
    if not segs and size is None:
        raise SegmentError("segment_map of no masks needs size=(H, W)")
    size = segs[0].shape if segs else tuple(size)
    lut = np.concatenate([colormap504(), np.zeros((1, 3), np.uint8)])
    owner = _owners(segs, size)
    return lut[np.where((owner >= 0) & (owner < 504), owner, 504)]


def select(masks, sketch=None, points=None, *, ignore_black: bool = True, invert: bool = False,
           pad_mask=None) -> np.ndarray:
    """The union of the visible regions (in segment_map's order) of every segment touched by the sketch (any
    non-zero pixel) or by the (x, y) points. ignore_black=False also selects every uncovered pixel when any is
    touched (all of them, as the extension does). -> HxW uint8 0/255 (inverted with invert=True)."""
    segs = _segmentations(sort_masks(masks, pad_mask))
    if not segs:
        raise SegmentError("no segments to select from: run generate_masks first")
    size = segs[0].shape
    touched = np.zeros(size, dtype=bool) if sketch is None else as_mask(sketch, "sketch").copy()
    if touched.shape != size:
        raise SegmentError(f"sketch is {touched.shape[1]}x{touched.shape[0]}, the segments {size[1]}x{size[0]}")
    for x, y in ([] if points is None else np.asarray(points, dtype=float).reshape(-1, 2)):
        if not (0 <= x < size[1] and 0 <= y < size[0]):
            raise SegmentError(f"point ({x:g}, {y:g}) lies outside the {size[1]}x{size[0]} image")
        touched[int(y), int(x)] = True
    if not touched.any():
        raise SegmentError("empty selection: give a sketch with painted pixels or at least one point")
    owner = _owners(segs, size)
    picked = np.unique(owner[touched])
    region = np.isin(owner, picked[picked >= 0])
    if not ignore_black and (picked < 0).any():  # every uncovered pixel, not only the touched component
        region |= owner < 0
    mask = _u8(region)
    return 255 - mask if invert else mask


def expand_mask(mask, iterations: int = 1) -> np.ndarray:
    """cv2.dilate with a 3×3 square, iterations clipped to 1..100: grows the mask n pixels (Chebyshev)."""
    n = int(np.clip(iterations, 1, 100))
    return cv2.dilate(_u8(as_mask(mask)), np.ones((3, 3), np.uint8), iterations=n)


def erode_mask(mask, iterations: int = 1) -> np.ndarray:
    """The opposite of expand_mask: cv2.erode with a 3×3 square (pixels outside the image count as set, so a mask
    touching the border keeps it). iterations clipped to 1..100."""
    n = int(np.clip(iterations, 1, 100))
    return cv2.erode(_u8(as_mask(mask)), np.ones((3, 3), np.uint8), iterations=n)


def feather_mask(mask, radius: float) -> np.ndarray:
    """A soft edge: PIL GaussianBlur(radius) of the 0/255 mask (radius is PIL's sigma), HxW uint8."""
    if radius < 0:
        raise SegmentError(f"feather radius must be >= 0, got {radius}")
    img = Image.fromarray(_u8(as_mask(mask)))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else img).copy()


def trim_mask(mask, sketch) -> np.ndarray:
    """The extension's "Trim mask by sketch": sketched pixels leave the mask."""
    m, s = as_mask(mask), as_mask(sketch, "sketch")
    _same(m, s, "sketch")
    return _u8(m & ~s)


def add_mask(mask, sketch) -> np.ndarray:
    """The extension's "Add mask by sketch": sketched pixels join the mask."""
    m, s = as_mask(mask), as_mask(sketch, "sketch")
    _same(m, s, "sketch")
    return _u8(m | s)


def invert_mask(mask) -> np.ndarray:
    return _u8(~as_mask(mask))


def restrict_to_region(mask, region: tuple[int, int, int, int]) -> np.ndarray:
    """The mask with everything outside the (x0, y0, x1, y1) box cleared."""
    m = as_mask(mask)
    x0, y0, x1, y1 = (int(v) for v in region)
    if not (0 <= x0 < x1 <= m.shape[1] and 0 <= y0 < y1 <= m.shape[0]):
        raise SegmentError(f"region {list(region)} is not a non-empty box inside the {m.shape[1]}x{m.shape[0]} mask")
    out = np.zeros_like(m)
    out[y0:y1, x0:x1] = m[y0:y1, x0:x1]
    return _u8(out)


def _same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise SegmentError(f"{what} is {b.shape[1]}x{b.shape[0]}, the mask {a.shape[1]}x{a.shape[0]}")


def mask_from_prompt(predictor, points=None, labels=None, box=None, *, multimask: bool = True) -> np.ndarray:
    """Select by clicks and/or a box through a predictor whose image is set: of SAM's masks for the prompt, the
    one with the highest predicted IoU, as HxW uint8 0/255. Labels default to 1 (include) for every point."""
    if points is not None and labels is None:
        labels = np.ones(len(np.asarray(points, dtype=float).reshape(-1, 2)), dtype=int)
    if points is None and box is None:
        raise SegmentError("empty selection: give points or a box")
    masks, iou, _ = predictor.predict(points=points, labels=labels, box=box, multimask=multimask)
    return _u8(masks[int(np.argmax(iou))])


def pad_image(image: np.ndarray, scale_w: float = 1.0, scale_h: float = 1.0, lr: float = 0.5, tb: float = 0.5,
              mode: str = "edge", fill: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """The extension's outpainting padding: grow W by int(W·scale_w) − W (left share int(total·lr)) and H likewise,
    in a np.pad mode (constant uses `fill`). -> (padded image, pad_mask HxW uint8 255 on the new border), the mask
    to pass as `pad_mask` so the border is one segment."""
    if mode not in PAD_MODES:
        raise SegmentError(f"padding mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    if not (1.0 <= scale_w <= 1.5 and 1.0 <= scale_h <= 1.5 and 0 <= lr <= 1 and 0 <= tb <= 1):
        raise SegmentError("padding scales must lie in [1.0, 1.5] and balances in [0, 1]")
    h, w = image.shape[:2]
    pw, ph = int(w * scale_w) - w, int(h * scale_h) - h
    left, top = int(pw * lr), int(ph * tb)
    pads = ((top, ph - top), (left, pw - left))
    kwargs = {"constant_values": fill} if mode == "constant" else {}
    padded = np.pad(image, pads + ((0, 0),) * (image.ndim - 2), mode=mode, **kwargs)
    return padded, np.pad(np.zeros((h, w), np.uint8), pads, constant_values=255)


def auto_resize(image: Image.Image, mask: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The extension's auto_resize_to_pil: floor W and H to multiples of 8 by scaling with max(W8/W, H8/H)
    (LANCZOS, image and mask alike) and centre-cropping. LANCZOS leaves soft mask edges, as in the extension."""
    w, h = image.size
    if mask.size != image.size:
        raise SegmentError(f"mask is {mask.size[0]}x{mask.size[1]}, the image {w}x{h}")
    w8, h8 = w // 8 * 8, h // 8 * 8
    if w8 == w and h8 == h:
        return image, mask
    if w8 == 0 or h8 == 0:
        raise SegmentError(f"a {w}x{h} image is too small to floor to a multiple of 8")
    scale = h8 / h if (w8 / w) < (h8 / h) else w8 / w
    rh, rw = int(h * scale + 0.5), int(w * scale + 0.5)
    if (rh, rw) != (h, w):
        image, mask = image.resize((rw, rh), Image.LANCZOS), mask.resize((rw, rh), Image.LANCZOS)
    if (rh, rw) != (h8, w8):
        top, left = int(round((rh - h8) / 2.0)), int(round((rw - w8) / 2.0))
        image = image.crop((left, top, left + w8, top + h8))
        mask = mask.crop((left, top, left + w8, top + h8))
    return image, mask
