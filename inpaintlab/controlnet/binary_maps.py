"""sd-webui-controlnet's resize of black-and-white control maps (`high_quality_resize`'s binary path).

A map with exactly two colours, the darkest value below 16 and the brightest above 240, is *binary*. After the
ordinary resize (area when shrinking, cubic otherwise) it is made binary again: the channel mean, truncated to
uint8, then Otsu's threshold. A binary map whose white pixels are mostly one pixel wide (an edge map such as
canny's) first has every pixel that is not a maximum along one of the four line directions removed, and after
Otsu is thinned to one-pixel lines by repeated hit-or-miss removal (with end pruning when the map was enlarged).
"""
from __future__ import annotations

import cv2
import numpy as np

_SQUARE = np.ones((3, 3), dtype=np.uint8)
# The four line directions of the non-maximum test: horizontal, vertical and the two diagonals.
_LINES = (np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], np.uint8), np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], np.uint8),
          np.eye(3, dtype=np.uint8), np.fliplr(np.eye(3, dtype=np.uint8)).copy())


def _rotations(*patterns: list[list[int]]) -> list[np.ndarray]:
    """Each hit-or-miss pattern (1 white, -1 black, 0 either) in its four quarter turns, all of the first pattern's
    turn before the next turn: [p0, p1, p0 turned once, p1 turned once, ...]."""
    arrays = [np.array(p, dtype=np.int32) for p in patterns]
    return [np.ascontiguousarray(np.rot90(a, k=turn)) for turn in range(4) for a in arrays]


# Thinning: remove a white pixel whose neighbourhood matches an edge side or a corner.
THIN_PATTERNS = _rotations([[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]])
# Pruning: remove the end pixel of a two-pixel spur.
PRUNE_PATTERNS = _rotations([[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]])


def is_binary(rgb: np.ndarray) -> bool:
    """Two distinct colours, the smallest value < 16 and the largest > 240."""
    colours = np.unique(rgb.reshape(-1, rgb.shape[2]), axis=0)
    return len(colours) == 2 and rgb.min() < 16 and rgb.max() > 240


def is_one_pixel_edge(rgb: np.ndarray) -> bool:
    """Whether a 3x3 opening (erode then dilate) removes more than half of the white values (counted per channel)."""
    opened = cv2.dilate(cv2.erode(rgb, _SQUARE, iterations=1), _SQUARE, iterations=1)
    return int(np.count_nonzero(opened < rgb)) * 2 > int(np.count_nonzero(rgb > 127))


def line_maxima(gray: np.ndarray) -> np.ndarray:
    """Keep a pixel where it is the maximum of its 3-pixel line in at least one of the four directions; 0 elsewhere."""
    out = np.zeros_like(gray)
    for line in _LINES:
        keep = cv2.dilate(gray, kernel=line) == gray
        out[keep] = gray[keep]
    return out


def _remove_matches(x: np.ndarray, patterns: list[np.ndarray]) -> bool:
    """One pass: for each pattern in turn, black out its hit-or-miss matches (in place). True if anything changed."""
    changed = False
    for pattern in patterns:
        hits = cv2.morphologyEx(x, cv2.MORPH_HITMISS, pattern) > 127
        if hits.any():
            x[hits] = 0
            changed = True
    return changed


def thin(binary: np.ndarray, prune: bool) -> np.ndarray:
    """Thin a 0/255 uint8 map: up to 32 passes of the thinning patterns (stopping at the first pass that changes
    nothing), then, when `prune`, one pass of the pruning patterns. The input is not modified."""
    x = binary.copy()
    for _ in range(32):
        if not _remove_matches(x, THIN_PATTERNS):
            break
    if prune:
        _remove_matches(x, PRUNE_PATTERNS)
    return x


def rebinarise(resized: np.ndarray, one_pixel_edge: bool, enlarged: bool) -> np.ndarray:
    """The resized HxWx3 map of a binary map -> HxWx3 uint8 in {0, 255}."""
    gray = np.mean(resized.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
    if one_pixel_edge:
        gray = line_maxima(gray)
    _, gray = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if one_pixel_edge:
        gray = thin(gray, prune=enlarged)
    return np.stack([gray] * 3, axis=2)
