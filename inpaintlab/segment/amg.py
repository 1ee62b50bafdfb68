"""Pieces of the automatic mask generator, with segment_anything's semantics: point grids, crop boxes, greedy box
NMS, mask boxes, stability scores, column-major run-length encoding and small-region removal."""
from __future__ import annotations

import math
from itertools import product

import cv2
import numpy as np
import torch


def point_grid(n: int) -> np.ndarray:
    """n² points in [0,1]² at the centres of an n×n grid, x fastest: [n², 2]."""
    offset = 1 / (2 * n)
    side = np.linspace(offset, 1 - offset, n)
    return np.stack([np.tile(side[None, :], (n, 1)), np.tile(side[:, None], (1, n))], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """Crop layer i samples int(n / downscale**i) points per side."""
    return [point_grid(int(n_per_side / (downscale ** i))) for i in range(n_layers + 1)]


def crop_boxes(size: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """XYXY crops: the whole image (layer 0), then (2^i)² overlapping crops per layer i, x0 the outer loop."""
    h, w = size
    boxes, layers = [[0, 0, w, h]], [0]
    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        cw = int(math.ceil((overlap * (n - 1) + w) / n))
        ch = int(math.ceil((overlap * (n - 1) + h) / n))
        x0s = [int((cw - overlap) * j) for j in range(n)]
        y0s = [int((ch - overlap) * j) for j in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + cw, w), min(y0 + ch, h)])
            layers.append(i + 1)
    return boxes, layers


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS (torchvision's rule): visit boxes by decreasing score (ties in index order), drop every later box
    whose IoU with a kept one exceeds the threshold. Returns kept indices, by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    area = box_area(boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        suppressed |= inter / (area[i] + area - inter) > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes [n, 4] around bool masks [n, h, w] with inclusive max indices; [0,0,0,0] for an empty mask."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ar_h, ar_w = torch.arange(h, device=masks.device), torch.arange(w, device=masks.device)
    bottom = (rows * ar_h).amax(dim=1)
    top = torch.where(rows, ar_h, h).amin(dim=1)
    right = (cols * ar_w).amax(dim=1)
    left = torch.where(cols, ar_w, w).amin(dim=1)
    out = torch.stack([left, top, right, bottom], dim=1)
    empty = (right < left) | (bottom < top)
    return (out * (~empty)[:, None]).cpu()


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """|logits > t + off| / |logits > t − off| per mask (float32), counted exactly."""
    inter = (logits > threshold + offset).sum(dim=(-1, -2), dtype=torch.int64).to(torch.int32)
    union = (logits > threshold - offset).sum(dim=(-1, -2), dtype=torch.int64).to(torch.int32)
    return inter / union


def near_crop_edge(boxes: torch.Tensor, crop: list[int], full: list[int], atol: float = 20.0) -> torch.Tensor:
    """Boxes (crop frame) within atol of a crop edge that is not also an image edge."""
    offset = torch.tensor([crop[0], crop[1], crop[0], crop[1]])
    b = (boxes + offset).float()
    near_crop = torch.isclose(b, torch.tensor(crop, dtype=torch.float)[None], atol=atol, rtol=0)
    near_image = torch.isclose(b, torch.tensor(full, dtype=torch.float)[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def rle_encode(masks: torch.Tensor, crop: list[int], size: tuple[int, int]) -> list[dict]:
    """Uncompressed COCO RLE ({"size": [H, W], "counts": [...]}, column-major, starting with a 0-run) of crop masks
    [n, h, w] placed at `crop` in an H×W image, without building the full-size masks."""
    big_h, big_w = size
    x0, y0, x1, y1 = crop
    if masks.shape[0] == 0:
        return []
    cols = torch.nn.functional.pad(masks, (0, 0, y0, big_h - y1)).transpose(1, 2).reshape(masks.shape[0], -1)
    change = (cols[:, 1:] ^ cols[:, :-1]).nonzero()
    before, after = x0 * big_h, (big_w - x1) * big_h
    out = []
    length = cols.shape[1]
    for i in range(masks.shape[0]):
        idx = change[change[:, 0] == i, 1] + 1
        bounds = torch.cat([torch.zeros(1, dtype=idx.dtype), idx, torch.full((1,), length, dtype=idx.dtype)])
        runs = (bounds[1:] - bounds[:-1]).tolist()
        first, last = bool(cols[i, 0]), bool(cols[i, -1])
        if first:
            runs = [before] + runs
        else:
            runs[0] += before
        if last:
            if after:
                runs.append(after)
        else:
            runs[-1] += after
        out.append({"size": [big_h, big_w], "counts": runs})
    return out


def rle_to_mask(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(w, h).T


def rle_area(rle: dict) -> int:
    return sum(rle["counts"][1::2])


def remove_small_regions(mask: np.ndarray, area: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than `area` (8-connectivity); when every island is
    small the largest stays. Returns (mask, changed)."""
    holes = mode == "holes"
    work = (holes ^ mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(work, 8)
    sizes = stats[:, -1][1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True
