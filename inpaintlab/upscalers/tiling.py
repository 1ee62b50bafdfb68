"""A1111 v1.10's two ways of running an upscaler network over a picture in tiles, with its colour-order quirk.

**BGR.** A1111 turns the PIL image into a tensor with the channels reversed (RGB → BGR), divides by 255, runs the
network, clamps to [0, 1], multiplies by 255, rounds half to even (float32) and reverses the channels back. Every model
upscaler is fed BGR although the networks were trained on RGB; reproducing that is what makes outputs match A1111.

**Grid tiling** (`upscale_with_model`: ESRGAN, Real-ESRGAN, DAT folders): the image is cut with `split_grid`
(tiles spread evenly, the last flush with the edge; an image smaller than a tile is cropped at a negative offset,
so the network sees a black band), each tile is upscaled and rounded to uint8 on its own, and `combine_grid` pastes
the tiles back left to right and the rows top to bottom. Only the first `overlap` (scaled) pixels of each later
tile are blended, through a uint8 ramp `int(j·255/overlap)` with Pillow's masked-paste arithmetic
`((v + 128) + ((v + 128) >> 8)) >> 8` of `v = dst·(255 − m) + src·m`; the rest of the real overlap is simply
overwritten by the later tile.

**Averaging tiling** (`tiled_upscale_2`: SwinIR, ScuNET folders): tiles of `min(tile, H, W)` at stride
`tile − overlap` (plus one flush with the far edge), outputs summed in float and divided by the count.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

Net = Callable[[torch.Tensor], torch.Tensor]


def to_bgr_tensor(img: np.ndarray, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
                  ) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (1, 3, H, W) BGR in [0, 1]: divided by 255 in float64, then cast (as A1111)."""
    arr = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)) / 255
    return torch.from_numpy(arr).unsqueeze(0).to(device=device, dtype=dtype)


def from_bgr_tensor(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) BGR → (H, W, 3) uint8 RGB: clamp, ×255 and round half to even in float32, channels reversed."""
    arr = t[0].float().cpu().clamp(0, 1).mul(255.0).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(arr.transpose(1, 2, 0)[:, :, ::-1])


def run_patch(net: Net, img: np.ndarray, dtype: torch.dtype, device: str | torch.device) -> np.ndarray:
    """One network call on a whole uint8 RGB picture, the BGR way."""
    with torch.inference_mode():
        return from_bgr_tensor(net(to_bgr_tensor(img, dtype, device)))


def grid_positions(size: int, tile: int, overlap: int) -> list[int]:
    """`split_grid`'s offsets along one axis (may be negative when the image is smaller than the tile)."""
    n = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (n - 1) if n > 1 else 0
    out = []
    for i in range(n):
        p = int(i * step)
        out.append(size - tile if p + tile >= size else p)
    return out


def _crop(img: np.ndarray, y: int, x: int, h: int, w: int) -> np.ndarray:
    """PIL's crop: a (h, w) window at (y, x), black where it leaves the image."""
    out = np.zeros((h, w) + img.shape[2:], img.dtype)
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + h, img.shape[0]), min(x + w, img.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = img[y0:y1, x0:x1]
    return out


def _paste(dst: np.ndarray, src: np.ndarray, y: int, x: int, mask: np.ndarray | None = None) -> None:
    """PIL's paste (clipped to `dst`), with an optional uint8 mask blended the way Pillow's Paste.c does."""
    h, w = src.shape[:2]
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + h, dst.shape[0]), min(x + w, dst.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    s = src[y0 - y:y1 - y, x0 - x:x1 - x]
    if mask is None:
        dst[y0:y1, x0:x1] = s
        return
    m = mask[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.uint32)[..., None]
    v = dst[y0:y1, x0:x1].astype(np.uint32) * (255 - m) + s.astype(np.uint32) * m + 128
    dst[y0:y1, x0:x1] = ((v + (v >> 8)) >> 8).astype(np.uint8)


def _ramp(overlap: int) -> np.ndarray:
    return (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8) if overlap else np.zeros(0, np.uint8)


def upscale_grid(run: Callable[[np.ndarray], np.ndarray], img: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """A1111's `upscale_with_model`: `run` maps a uint8 RGB tile to its uint8 upscaled tile."""
    h, w = img.shape[:2]
    if tile <= 0 or min(h, w) <= overlap:
        # A1111 crashes on a side not longer than the overlap (no tiles in that direction); one untiled pass instead.
        return run(img)
    ys, xs = grid_positions(h, tile, overlap), grid_positions(w, tile, overlap)
    rows = []
    s = 1
    for y in ys:
        outs = []
        for x in xs:
            out = run(_crop(img, y, x, tile, tile))
            s = out.shape[1] // tile
            outs.append((x * s, out))
        rows.append((y * s, outs))
    return combine_grid(rows, tile * s, w * s, h * s, overlap * s)


def combine_grid(rows: list[tuple[int, list[tuple[int, np.ndarray]]]], tile_h: int, image_w: int, image_h: int,
                 overlap: int) -> np.ndarray:
    """A1111's `images.combine_grid` on uint8 tiles: `rows` = [(y, [(x, tile), …]), …]."""
    ramp = _ramp(overlap)
    mask_w = np.broadcast_to(ramp[None, :], (tile_h, overlap))
    mask_h = np.broadcast_to(ramp[:, None], (overlap, image_w))
    out = np.zeros((image_h, image_w, 3), np.uint8)
    for y, tiles in rows:
        h = tiles[0][1].shape[0]
        row = np.zeros((h, image_w, 3), np.uint8)
        for x, t in tiles:
            if x == 0:
                _paste(row, t, 0, x)
                continue
            _paste(row, _crop(t, 0, 0, h, overlap), 0, x, mask_w[:h])
            _paste(row, _crop(t, 0, overlap, h, t.shape[1] - overlap), 0, x + overlap)
        if y == 0:
            _paste(out, row, 0, 0)
            continue
        _paste(out, _crop(row, 0, 0, overlap, image_w), y, 0, mask_h)
        _paste(out, _crop(row, overlap, 0, h - overlap, image_w), y + overlap, 0)
    return out


def upscale_average(net: Net, x: torch.Tensor, tile: int, overlap: int, scale: int) -> torch.Tensor:
    """A1111's `tiled_upscale_2` on a (B, C, H, W) tensor: overlapping tiles averaged with equal weights."""
    b, c, h, w = x.shape
    tile = min(tile, h, w)
    if tile <= 0:
        return net(x)
    stride = tile - overlap
    ys = list(range(0, h - tile, stride)) + [h - tile]
    xs = list(range(0, w - tile, stride)) + [w - tile]
    acc = torch.zeros(b, c, h * scale, w * scale, dtype=x.dtype, device=x.device)
    cnt = torch.zeros_like(acc)
    for y in ys:
        for xx in xs:
            out = net(x[..., y:y + tile, xx:xx + tile])
            acc[..., y * scale:(y + tile) * scale, xx * scale:(xx + tile) * scale] += out
            cnt[..., y * scale:(y + tile) * scale, xx * scale:(xx + tile) * scale] += 1
    return acc / cnt
