"""Inpaint Anything's "Cleaner" with the `lama` model: lama-cleaner's LaMa call with HDStrategy.ORIGINAL.

    1. (Inpaint Anything first floors the size to multiples of 8: LANCZOS resize + centre crop, `ia_resize=True`.)
    2. Image and mask are padded symmetrically at the bottom / right to multiples of 8 (`np.pad(mode="symmetric")`).
    3. The model sees RGB / 255 and the hole `mask > 0`: every non-zero mask pixel, soft edges included. LaMa's
       wrapper zeroes the hole, runs the generator and keeps the known pixels:
       `m * pred + (1 - m) * image`, then `clip(x * 255, 0, 255)` truncated to uint8; the padding is cropped away.
    4. The result is blended with the original by the unthresholded mask, in float64:
       `out * (mask / 255) + image * (1 - mask / 255)`, and truncated to uint8 (Inpaint Anything's `astype`).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .model import FFCResNetGenerator, LamaError

PAD_MOD = 8


def _rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise LamaError(f"image must be an HxWx3 uint8 RGB array or a PIL image, got {a.dtype} {a.shape}")
    return a[:, :, :3]


def _gray(mask, size: tuple[int, int]) -> np.ndarray:
    """The mask as lama-cleaner gets it: PIL `convert("L")` of an image, or an HxW / HxWx3 uint8 array."""
    if isinstance(mask, Image.Image):
        m = np.asarray(mask.convert("L"))
    else:
        m = np.asarray(mask)
        if m.dtype == np.bool_:
            m = m.astype(np.uint8) * 255
        if m.dtype != np.uint8:
            raise LamaError(f"mask must be uint8 (0..255) or bool, got {m.dtype}")
        if m.ndim == 3 and m.shape[2] in (3, 4):
            m = np.asarray(Image.fromarray(np.ascontiguousarray(m[:, :, :3])).convert("L"))
        elif m.ndim == 3 and m.shape[2] == 1:
            m = m[:, :, 0]
    if m.ndim != 2 or m.shape != size:
        got = f"{m.shape[1]}x{m.shape[0]}" if m.ndim == 2 else f"of shape {m.shape}"
        raise LamaError(f"mask is {got}, image is {size[1]}x{size[0]}: they must be the same size")
    return m


def ia_auto_resize(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inpaint Anything's `auto_resize_to_pil`: floor W and H to multiples of 8 by a LANCZOS resize with scale
    max(W8/W, H8/H) and a centre crop (torchvision's rounding), applied to the image and the mask alike."""
    h, w = image.shape[:2]
    w8, h8 = w // 8 * 8, h // 8 * 8
    if w8 == w and h8 == h:
        return image, mask
    scale = h8 / h if w8 / w < h8 / h else w8 / w
    rh, rw = int(h * scale + 0.5), int(w * scale + 0.5)
    img_p, mask_p = Image.fromarray(image), Image.fromarray(mask)
    if (rh, rw) != (h, w):
        img_p, mask_p = img_p.resize((rw, rh), Image.LANCZOS), mask_p.resize((rw, rh), Image.LANCZOS)
    top, left = int(round((rh - h8) / 2.0)), int(round((rw - w8) / 2.0))
    box = (left, top, left + w8, top + h8)
    return np.asarray(img_p.crop(box)), np.asarray(mask_p.crop(box))


def pad_to_modulo(x: np.ndarray, mod: int = PAD_MOD) -> np.ndarray:
    """lama-cleaner's `pad_img_to_modulo`: symmetric padding at the bottom and right up to multiples of `mod`."""
    h, w = x.shape[:2]
    pad = ((0, -h % mod), (0, -w % mod)) + ((0, 0),) * (x.ndim - 2)
    return np.pad(x, pad, mode="symmetric")


@torch.no_grad()
def run_lama(model: FFCResNetGenerator, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """LaMa's inpainting wrapper on an RGB uint8 image and a 0/1 hole (sizes multiples of 8) -> uint8 RGB."""
    dev, dt = model.device, model.dtype
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(dev, torch.float32) / 255.0
    m = torch.from_numpy(np.ascontiguousarray(hole)).to(dev, torch.float32)[None, None]
    pred = model(torch.cat([img * (1 - m), m], dim=1).to(dt)).float()
    out = m * pred + (1 - m) * img
    return (out[0].permute(1, 2, 0).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)


def clean(image, mask, lama, *, ia_resize: bool = False, device: torch.device | str | None = None) -> np.ndarray:
    """Remove the masked area with LaMa, as Inpaint Anything's Cleaner does (module docstring) -> HxWx3 uint8 RGB.

    image: PIL or HxWx3 uint8 RGB (alpha dropped); mask: PIL (converted to L) or HxW / HxWx3 uint8 (255 = remove) or
    bool, the image's size; lama: a generator from `load_lama`, or a LaMa file path. Any size works: the padding to
    multiples of 8 is undone. ia_resize: first floor the size to multiples of 8 like Inpaint Anything (the output
    then has that size). Inputs are not modified.
    """
    from .load import load_lama

    rgb = _rgb(image)
    m = _gray(mask, rgb.shape[:2])
    if ia_resize:
        rgb, m = ia_auto_resize(rgb, m)
    model = lama if isinstance(lama, FFCResNetGenerator) else load_lama(lama, device=device or "cpu")
    h, w = rgb.shape[:2]
    hole = (pad_to_modulo(m) > 0).astype(np.float32)
    out = run_lama(model, pad_to_modulo(rgb), hole)[:h, :w]
    a = m.astype(np.float64)[:, :, None] / 255.0
    return (out * a + rgb * (1 - a)).astype(np.uint8)
