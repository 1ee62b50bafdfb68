"""A NumPy (float64 where arithmetic is involved) re-derivation of sd-webui-controlnet's two-colour map resize, as
the spec describes it (§7.2 step 7), independent of `inpaintlab.controlnet.binary_maps`: morphology by shifted
array comparisons, Otsu's threshold by its between-class variance, hit-or-miss by explicit pattern matching. Only
the interpolation itself is OpenCV's resize (the rule under test is what happens around it)."""
from __future__ import annotations

import cv2
import numpy as np


def _windows(x: np.ndarray, fill) -> np.ndarray:
    """[9, H, W(, C)]: the 3x3 neighbourhood of every pixel, row-major; outside the image `fill`."""
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 2)
    p = np.pad(x, pad, constant_values=fill)
    h, w = x.shape[:2]
    return np.stack([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def opening(x: np.ndarray) -> np.ndarray:
    eroded = _windows(x, 255).min(axis=0)  # outside the image never lowers the minimum
    return _windows(eroded, 0).max(axis=0)


def line_maxima(gray: np.ndarray) -> np.ndarray:
    win = _windows(gray, 0)
    lines = ((3, 4, 5), (1, 4, 7), (0, 4, 8), (2, 4, 6))
    keep = np.zeros(gray.shape, bool)
    for line in lines:
        keep |= win[list(line)].max(axis=0) == gray
    return np.where(keep, gray, 0).astype(np.uint8)


def otsu(gray: np.ndarray) -> np.ndarray:
    p = np.bincount(gray.ravel(), minlength=256).astype(np.float64) / gray.size
    i = np.arange(256, dtype=np.float64)
    q1 = np.cumsum(p)
    q2 = 1.0 - q1
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1 = np.cumsum(i * p) / q1
        mu2 = (np.sum(i * p) - q1 * mu1) / q2
        sigma = q1 * q2 * (mu1 - mu2) ** 2
    eps = np.finfo(np.float32).eps
    valid = (np.minimum(q1, q2) >= eps) & (np.maximum(q1, q2) <= 1 - eps)
    sigma = np.where(valid, sigma, -1.0)
    t = int(np.argmax(sigma)) if sigma.max() > 0 else 0  # the first maximum
    return np.where(gray > t, 255, 0).astype(np.uint8)


def _patterns(raw):
    out = []
    for turn in range(4):
        out += [np.rot90(np.array(r), k=turn) for r in raw]
    return out


THIN = _patterns([[[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]]])
PRUNE = _patterns([[[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]]])


def _strip(x: np.ndarray, patterns) -> bool:
    changed = False
    for pattern in patterns:
        white, black = _windows(x == 255, True), _windows(x == 0, True)  # outside the image: matches either
        flat = pattern.ravel()
        hit = np.ones(x.shape, bool)
        for k in range(9):
            if flat[k] == 1:
                hit &= white[k]
            elif flat[k] == -1:
                hit &= black[k]
        if hit.any():
            x[hit] = 0
            changed = True
    return changed


def thin(x: np.ndarray, prune: bool) -> np.ndarray:
    x = x.copy()
    for _ in range(32):
        if not _strip(x, THIN):
            break
    if prune:
        _strip(x, PRUNE)
    return x


def resize_binary(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A two-colour black-and-white HxWx3 uint8 map resized to size=(w, h) the extension's way."""
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) == 2 and rgb.min() < 16 and rgb.max() > 240
    old, new = rgb.shape[0] * rgb.shape[1], size[0] * size[1]
    edge = np.count_nonzero(opening(rgb) < rgb) * 2 > np.count_nonzero(rgb > 127)
    y = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if new < old else cv2.INTER_CUBIC)
    gray = np.trunc(np.clip(y.astype(np.float64).mean(axis=2), 0, 255)).astype(np.uint8)
    if edge:
        gray = thin(otsu(line_maxima(gray)), prune=new > old)
    else:
        gray = otsu(gray)
    return np.stack([gray] * 3, axis=2)
