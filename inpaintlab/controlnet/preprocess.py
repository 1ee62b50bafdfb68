"""The inpaint ControlNet's hint and its pixel-side steps, as sd-webui-controlnet (v1.1.455) prepares them.

Arrays at the edge are HxWx4 (RGB + mask, 255 = repaint) as the extension passes them around; tensors are
[1,4,H,W] float32 in [0,1] ("hint4": RGB, then the binarised mask). Mask values are 1 = repaint throughout.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..masking import blur_mask
from . import binary_maps

from ..names import PREPROCESSORS  # noqa: E402,F401
# The extension's internal module names, written to the infotext's "Module:" field.
MODULE_NAMES = {"inpaint_only": "inpaint_only", "inpaint_global_harmonious": "inpaint",
                "inpaint_only+lama": "inpaint_only+lama"}
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
# A1111's img2img resize mode -> the unit's resize mode when the unit takes A1111's image (3 = latent upscale).
A1111_RESIZE_MODES = {0: "Just Resize", 1: "Crop and Resize", 2: "Resize and Fill", 3: "Just Resize"}
PASTE_BLUR = 7  # option control_net_inpaint_blur_sigma, default 7


def check_preprocessor(name: str) -> str:
    if name not in PREPROCESSORS:
        raise ValueError(f"unknown ControlNet preprocessor {name!r}; expected one of {', '.join(PREPROCESSORS)}")
    return name


def restores_latent(preprocessor: str) -> bool:
    """inpaint_only and inpaint_only+lama: x0 restore at every UNet call and pixel paste-back at the end."""
    return "inpaint_only" in check_preprocessor(preprocessor)


# --- where the hint comes from ---------------------------------------------------------------------------------

def extension_mask(mask: Image.Image, mask_blur: float = 0, invert: bool = False) -> Image.Image:
    """A1111's mask as the extension reads it: `convert("L")` (an RGBA mask's alpha is ignored, unlike A1111's own
    intake), inverted for "Inpaint not masked", then A1111's separable OpenCV blur."""
    mask = mask.convert("L")
    if invert:
        mask = ImageOps.invert(mask)
    return blur_mask(mask, mask_blur, mask_blur) if mask_blur > 0 else mask


def combine_image_and_mask(image: Image.Image, mask: Image.Image | None = None) -> np.ndarray:
    """HxWx4 uint8: the image's RGB plus the mask's first channel (zeros, nothing masked, without a mask)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if mask is None:
        alpha = np.zeros(rgb.shape[:2], dtype=np.uint8)
    else:
        if mask.size != image.size:
            raise ValueError(f"ControlNet mask {mask.size} and image {image.size} differ in size")
        m = np.asarray(mask, dtype=np.uint8)
        alpha = m if m.ndim == 2 else m[:, :, 0]
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)


# --- detectmap_proc: the hint at the processing size -----------------------------------------------------------

def high_quality_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx4 RGB+mask array (float32, or uint8 for the non-inpaint modules) to size=(w, h) like the
    extension's `high_quality_resize`.

    RGB and mask use one interpolation: nearest if the RGB has 3..199 distinct colours, area when shrinking, cubic
    otherwise. A black-and-white two-colour RGB (`binary_maps.is_binary`) is made binary again after the resize
    (Otsu; one-pixel edge maps also non-maximum suppression and thinning, `binary_maps.rebinarise`). The mask is
    then binarised (>127 -> 255) whether or not the size changed; the result is float32.
    """
    rgb, mask = x[:, :, :3], x[:, :, 3]
    w, h = size
    if rgb.shape[:2] != (h, w):
        colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
        binary = binary_maps.is_binary(rgb)
        one_pixel_edge = binary and binary_maps.is_one_pixel_edge(rgb)
        shrinking, enlarging = w * h < rgb.shape[0] * rgb.shape[1], w * h > rgb.shape[0] * rgb.shape[1]
        if 2 < colours < 200:
            interpolation = cv2.INTER_NEAREST
        elif shrinking:
            interpolation = cv2.INTER_AREA
        else:
            interpolation = cv2.INTER_CUBIC
        rgb = cv2.resize(rgb, size, interpolation=interpolation)
        mask = cv2.resize(mask, size, interpolation=interpolation)
        if binary:
            rgb = binary_maps.rebinarise(rgb, one_pixel_edge, enlarging).astype(x.dtype)
    mask = (mask > 127).astype(np.float32) * 255.0
    return np.concatenate([rgb, mask[:, :, None]], axis=2)


def detectmap(rgba: np.ndarray, width: int, height: int, resize_mode: str = "Crop and Resize",
              inpaint: bool = True) -> np.ndarray:
    """HxWx4 -> (height//8*8)x(width//8*8)x4 float32 in [0,255], mask in {0,255} (the extension's detectmap_proc for
    inpaint modules). "Resize and Fill" pads with each channel's median border value and marks the padding masked.

    inpaint False: the other modules' path, on a uint8 map with an all-zero 4th channel: resized as uint8 (cv2
    rounds each resize to integers, as the extension's), padding colour truncated to uint8 and left unmasked."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize_mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an HxWx4 RGB+mask array, got shape {rgba.shape}")
    x = rgba.astype(np.float32) if inpaint else rgba.astype(np.uint8)
    h, w = height // 8 * 8, width // 8 * 8
    old_h, old_w = x.shape[:2]
    k0, k1 = h / old_h, w / old_w
    if resize_mode == "Just Resize":
        return high_quality_resize(x, (w, h))
    if resize_mode == "Resize and Fill":
        k = min(k0, k1)
        borders = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]], axis=0)
        colour = np.median(borders, axis=0).astype(np.float32 if inpaint else np.uint8)
        if inpaint:
            colour[3] = 255.0
        canvas = np.tile(colour[None, None], (h, w, 1)).astype(np.float32)
        inner = high_quality_resize(x, (int(np.round(old_w * k)), int(np.round(old_h * k))))
        nh, nw = inner.shape[:2]
        ph, pw = max(0, (h - nh) // 2), max(0, (w - nw) // 2)
        canvas[ph:ph + nh, pw:pw + nw] = inner
        return canvas
    k = max(k0, k1)
    inner = high_quality_resize(x, (int(np.round(old_w * k)), int(np.round(old_h * k))))
    nh, nw = inner.shape[:2]
    ph, pw = max(0, (nh - h) // 2), max(0, (nw - w) // 2)
    return inner[ph:ph + h, pw:pw + w]


def make_hint(rgba: np.ndarray, width: int, height: int, resize_mode: str = "Crop and Resize") -> torch.Tensor:
    """The unit's hint tensor [1,4,h,w] float32: RGB in [0,1] and the mask in {0,1} (value / 255)."""
    array = detectmap(rgba, width, height, resize_mode)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None] / 255.0


def control_input(hint4: torch.Tensor) -> torch.Tensor:
    """[N,4,H,W] hint -> the ControlNet's [N,3,H,W] input: RGB where unmasked, -1 on all channels where the mask
    is > 0.5 (the ControlNet 1.1 inpaint protocol)."""
    c, m = hint4[:, :3], (hint4[:, 3:4] > 0.5).to(hint4.dtype)
    return c * (1 - m) - m


# --- inpaint_only: latent restore and pixel paste-back ----------------------------------------------------------

def restore_mask(hint4: torch.Tensor) -> torch.Tensor:
    """Latent mask for the x0 restore: max-pool 10, stride 8, padding 1, so latent cell i covers pixels
    [8i-1, 8i+9), a 1-pixel dilation on each side. [N,1,h,w]."""
    return F.max_pool2d(hint4[:, 3:4], kernel_size=10, stride=8, padding=1)


def inpaint_model_mask(hint4: torch.Tensor) -> torch.Tensor:
    """Latent mask that replaces a 9-channel UNet's conditioning mask: max-pool 8 of the binarised mask."""
    return F.max_pool2d((hint4[:, 3:4] > 0.5).to(hint4.dtype), kernel_size=8)


def paste_back_mask(hint4: torch.Tensor, sigma: int = PASTE_BLUR) -> torch.Tensor:
    """[1,1,H,W] float32 weight of the generated pixels: the hint mask dilated by a sigma x sigma square, then
    box-blurred with the same size (OpenCV, float32)."""
    if isinstance(sigma, bool) or not isinstance(sigma, int) or not 0 <= sigma <= 64:
        raise ValueError(f"paste-back blur must be an integer in [0, 64], got {sigma!r}")
    m = hint4[0, 3].detach().cpu().numpy().astype(np.float32)
    if sigma > 0:
        m = cv2.dilate(m, np.ones((sigma, sigma), dtype=np.uint8))
        m = cv2.blur(m, (sigma, sigma))
    return torch.from_numpy(np.ascontiguousarray(m))[None, None]


def paste_back(x: torch.Tensor, raw: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Decoded images x [B,3,H,W] in [0,1] -> `clip(m*clip(x,0,1) + (1-m)*raw, 0, 1)`; raw [1,3,H,W] is the hint's
    RGB. Images of another size are returned unchanged (the extension logs an error and skips them)."""
    if x.shape[-2:] != raw.shape[-2:]:
        return x
    r, m = raw.to(x), m.to(x)
    return (m * x.clip(0, 1) + (1 - m) * r).clip(0, 1)


# --- inpaint_only+lama ----------------------------------------------------------------------------------------

def _resize_with_pad(x: np.ndarray, resolution: int = 256) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    h, w = x.shape[:2]
    k = resolution / min(h, w)
    nh, nw = int(np.round(h * k)), int(np.round(w * k))
    x = cv2.resize(x, (nw, nh), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    ph, pw = -nh % 64, -nw % 64
    padded = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return padded, lambda y: y[:nh, :nw]


def is_lama_source(lama: Any) -> bool:
    """A LaMa generator module or the path of a LaMa file (as opposed to a function or a filled image)."""
    return isinstance(lama, (str, os.PathLike, torch.nn.Module))


def lama_function(lama: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A LaMa generator (`inpaintlab.lama.load_lama`) or its file -> the function `lama_fill` calls: the generator on
    cat(colour with the hole zeroed, mask) as sd-webui-controlnet's LamaInpainting feeds it, in fp32 on its device."""
    from ..lama import load_lama

    model = load_lama(lama) if isinstance(lama, (str, os.PathLike)) else lama

    @torch.no_grad()
    def run(color: np.ndarray, m: np.ndarray) -> np.ndarray:
        feed = np.concatenate([color, m[:, :, None]], axis=2).astype(np.float32)
        param = next(model.parameters())
        x = torch.from_numpy(feed).permute(2, 0, 1)[None].to(param.device, param.dtype)
        return model(x)[0].permute(1, 2, 0).float().cpu().numpy()

    return run


def lama_fill(rgba: np.ndarray, lama: Any = None, filled: np.ndarray | Image.Image | None = None) -> np.ndarray:
    """inpaint_only+lama's preprocessing: HxWx4 uint8 RGB+mask -> HxWx4 uint8 with the masked area filled.

    Give either `lama`: a LaMa generator (`inpaintlab.lama.load_lama`), the path of a LaMa file (ControlNetLama.pth,
    best.ckpt, .safetensors), or the network as a function (colour HxWx3 float32 in [0,1] with masked pixels zeroed,
    mask HxW float32 in {0,1}) -> HxWx3 prediction in [0,1]; it is run like the extension (shorter side to 256,
    edge-pad to multiples of 64, composite, back to full size bilinearly). Or `filled`, an already LaMa-filled HxWx3
    image at full size. Either way the result is `fill * a + raw * (1 - a)` with the unthresholded mask
    a = mask / 255, plus the mask as 4th channel.
    """
    if (lama is None) == (filled is None):
        raise ValueError("inpaint_only+lama needs exactly one of `lama` (a LaMa model, file or function) or `filled` "
                         "(an image)")
    if lama is not None and is_lama_source(lama):
        lama = lama_function(lama)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"expected an HxWx4 uint8 RGB+mask array, got {rgba.dtype} {rgba.shape}")
    h, w = rgba.shape[:2]
    raw, raw_mask = rgba[:, :, :3], rgba[:, :, 3]
    if filled is not None:
        prediction = np.asarray(filled.convert("RGB") if isinstance(filled, Image.Image) else filled)
        if prediction.shape != (h, w, 3):
            raise ValueError(f"LaMa-filled image must be {w}x{h} RGB, got shape {prediction.shape}")
    else:
        small, unpad = _resize_with_pad(rgba)
        color = small[:, :, :3].astype(np.float32) / 255.0
        m = (small[:, :, 3].astype(np.float32) / 255.0 > 0.5).astype(np.float32)
        pred = np.asarray(lama(color * (1 - m[:, :, None]), m), dtype=np.float32)
        if pred.shape != color.shape:
            raise ValueError(f"LaMa function returned shape {pred.shape}, expected {color.shape}")
        pred = pred * m[:, :, None] + color * (1 - m[:, :, None])
        pred = (pred * 255.0).clip(0, 255).astype(np.uint8)
        prediction = cv2.resize(unpad(pred), (w, h), interpolation=cv2.INTER_LINEAR)
    a = raw_mask.astype(np.float32)[:, :, None] / 255.0
    fin = (prediction.astype(np.float32) * a + raw.astype(np.float32) * (1 - a)).clip(0, 255).astype(np.uint8)
    return np.concatenate([fin, raw_mask[:, :, None]], axis=2)
