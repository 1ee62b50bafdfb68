"""resize / to_pil_image / to_tensor / normalize / rotate with torchvision's semantics for the inputs the oracles pass.

PIL images are resized by Pillow (what torchvision does for them); tensors by ``F.interpolate`` with antialiasing,
which is the kernel torchvision's tensor resize calls.
"""
import enum

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL = {InterpolationMode.NEAREST: Image.NEAREST, InterpolationMode.BILINEAR: Image.BILINEAR,
        InterpolationMode.BICUBIC: Image.BICUBIC, InterpolationMode.BOX: Image.BOX,
        InterpolationMode.HAMMING: Image.HAMMING, InterpolationMode.LANCZOS: Image.LANCZOS}


def _target(size, h, w):
    if isinstance(size, int) or len(size) == 1:
        s = size if isinstance(size, int) else size[0]
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = s, int(s * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)
    return int(size[0]), int(size[1])


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    if isinstance(interpolation, int):
        interpolation = {v: k for k, v in _PIL.items()}[interpolation]
    if isinstance(img, Image.Image):
        h, w = _target(size, img.height, img.width)
        return img.resize((w, h), _PIL[interpolation])
    h, w = _target(size, img.shape[-2], img.shape[-1])
    x = img.unsqueeze(0) if img.dim() == 3 else img
    mode = interpolation.value
    aa = antialias and mode in ("bilinear", "bicubic")
    out = F.interpolate(x.float() if not x.is_floating_point() else x, size=(h, w), mode=mode,
                        align_corners=False if mode in ("bilinear", "bicubic") else None, antialias=aa)
    if not img.is_floating_point():
        out = out.round().clamp(0, 255).to(img.dtype)
    return out[0] if img.dim() == 3 else out


def to_pil_image(pic, mode=None):
    if isinstance(pic, torch.Tensor):
        pic = pic.detach().cpu().numpy()
        if pic.ndim == 3:
            pic = pic.transpose(1, 2, 0)
        if pic.dtype != np.uint8:
            pic = (pic * 255).astype(np.uint8)
    if pic.ndim == 3 and pic.shape[2] == 1:
        pic = pic[:, :, 0]
    return Image.fromarray(pic, mode=mode)


def to_tensor(pic):
    arr = np.array(pic, copy=True)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.transpose(2, 0, 1).copy())
    return t.float().div(255) if t.dtype == torch.uint8 else t.float()


def normalize(tensor, mean, std, inplace=False):
    mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    return (tensor - mean) / std


def rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False, center=None, fill=None):
    """Only the right-angle turns spandrel's LaMa makes."""
    if angle % 90:
        raise NotImplementedError("the test shim rotates by multiples of 90 degrees only")
    return torch.rot90(img, int(angle // 90) % 4, dims=(-2, -1))
