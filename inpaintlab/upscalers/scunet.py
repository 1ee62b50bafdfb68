"""SCUNet (Zhang et al. 2022, "Practical blind denoising via Swin-Conv-UNet"), A1111's "ScuNET GAN" / "ScuNET PSNR",
with the key names of the KAIR release files. A ×1 restoration network.

A four-level UNet (`m_head` conv → `m_down1..3` → `m_body` → `m_up3..1` → `m_tail` conv, skips added). Every level is
a run of Swin-Conv blocks: a 1×1 conv, then half of the channels through a residual conv pair and half through a Swin
transformer block (window 8, head width 32, every second block on windows shifted by 4), concatenated, a second 1×1
conv, and a skip. Levels are joined by stride-2 2×2 convs going down and transposed convs going up. The input is
reflect-padded to a multiple of 64 and the output cropped back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UpscalerError

WINDOW, HEAD_DIM = 8, 32


@dataclass(frozen=True)
class SCUNetConfig:
    in_nc: int = 3
    dim: int = 64
    config: tuple[int, ...] = (4, 4, 4, 4, 4, 4, 4)   # blocks per stage: down1-3, body, up3-1
    input_resolution: int = 256   # training size: a stage whose size is within one window never shifts

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> SCUNetConfig:
        if "m_head.0.weight" not in sd or "m_tail.0.weight" not in sd:
            raise UpscalerError("not an SCUNet state dict (no m_head / m_tail)")

        def length(stage: str) -> int:
            idx = [int(m.group(1)) for k in sd if (m := re.match(re.escape(stage) + r"\.(\d+)\.", k))]
            return max(idx) + 1 if idx else 0

        # the down stages end and the up stages start with their resampling conv, which is not a block
        counts = [length(s) - 1 for s in ("m_down1", "m_down2", "m_down3")] + [length("m_body")]
        counts += [length(s) - 1 for s in ("m_up3", "m_up2", "m_up1")]
        dim, in_nc = sd["m_head.0.weight"].shape[:2]
        return cls(in_nc=in_nc, dim=dim, config=tuple(counts))


def _window_mask(nh: int, nw: int, p: int, s: int, device: torch.device) -> torch.Tensor:
    """(nh·nw, p², p²) boolean mask of the shifted windows: in the last window row (column), tokens from the two
    sides of the wrap-around (first `s` rows vs the rest) do not see each other."""
    m = torch.zeros(nh, nw, p, p, p, p, dtype=torch.bool, device=device)
    m[-1, :, :s, :, s:, :] = True
    m[-1, :, s:, :, :s, :] = True
    m[:, -1, :, :s, :, s:] = True
    m[:, -1, :, s:, :, :s] = True
    return m.view(nh * nw, p * p, p * p)


class WMSA(nn.Module):
    """Window multi-head self-attention; `relative_position_params` is stored as (heads, 2w−1, 2w−1)."""

    def __init__(self, dim: int, shifted: bool):
        super().__init__()
        self.heads, self.shifted = dim // HEAD_DIM, shifted
        self.embedding_layer = nn.Linear(dim, 3 * dim)
        self.relative_position_params = nn.Parameter(torch.zeros(self.heads, 2 * WINDOW - 1, 2 * WINDOW - 1))
        self.linear = nn.Linear(dim, dim)
        ys, xs = torch.meshgrid(torch.arange(WINDOW), torch.arange(WINDOW), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        self.register_buffer("_rel", torch.stack([ys[:, None] - ys[None, :], xs[:, None] - xs[None, :]]) + WINDOW - 1,
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) with H, W multiples of the window."""
        b, h, w, c = x.shape
        p, shift, nh = WINDOW, WINDOW // 2, self.heads
        if self.shifted:
            x = torch.roll(x, (-shift, -shift), (1, 2))
        hw, ww = h // p, w // p
        win = x.view(b, hw, p, ww, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hw * ww, p * p, c)
        qkv = self.embedding_layer(win).view(b, hw * ww, p * p, 3 * nh, HEAD_DIM).permute(3, 0, 1, 2, 4)
        q, k, v = qkv[:nh], qkv[nh:2 * nh], qkv[2 * nh:]                        # (heads, B, nW, N, d)
        sim = (q @ k.transpose(-2, -1)) * HEAD_DIM ** -0.5
        rel = self.relative_position_params[:, self._rel[0], self._rel[1]]       # (heads, N, N)
        sim = sim + rel[:, None, None]
        if self.shifted:
            sim = sim.masked_fill(_window_mask(hw, ww, p, p - shift, x.device), float("-inf"))
        out = (sim.softmax(-1) @ v).permute(1, 2, 3, 0, 4).reshape(b, hw * ww, p * p, c)
        out = self.linear(out).view(b, hw, ww, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.shifted:
            out = torch.roll(out, (shift, shift), (1, 2))
        return out


class Block(nn.Module):
    """Swin transformer block on (B, H, W, C): x + msa(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, dim: int, shifted: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WMSA(dim, shifted)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.msa(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ConvTransBlock(nn.Module):
    def __init__(self, conv_dim: int, trans_dim: int, shifted: bool):
        super().__init__()
        self.conv_dim = conv_dim
        both = conv_dim + trans_dim
        self.trans_block = Block(trans_dim, shifted)
        self.conv1_1 = nn.Conv2d(both, both, 1)
        self.conv1_2 = nn.Conv2d(both, both, 1)
        self.conv_block = nn.Sequential(nn.Conv2d(conv_dim, conv_dim, 3, padding=1, bias=False), nn.ReLU(),
                                        nn.Conv2d(conv_dim, conv_dim, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1_1(x)
        conv_x, trans_x = y[:, : self.conv_dim], y[:, self.conv_dim:]
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), 1))


def _blocks(n: int, half: int, resolution: int) -> list[nn.Module]:
    # SCUNet alternates plain and shifted windows; a stage trained at one window or less never shifts
    return [ConvTransBlock(half, half, i % 2 == 1 and resolution > WINDOW) for i in range(n)]


class SCUNet(nn.Module):
    """SCUNet with the release files' parameter names. Input and output in [0, 1], same size."""

    def __init__(self, cfg: SCUNetConfig):
        super().__init__()
        self.cfg = cfg
        d, r, n = cfg.dim, cfg.input_resolution, cfg.config
        self.m_head = nn.Sequential(nn.Conv2d(cfg.in_nc, d, 3, padding=1, bias=False))
        self.m_down1 = nn.Sequential(*_blocks(n[0], d // 2, r), nn.Conv2d(d, 2 * d, 2, 2, bias=False))
        self.m_down2 = nn.Sequential(*_blocks(n[1], d, r // 2), nn.Conv2d(2 * d, 4 * d, 2, 2, bias=False))
        self.m_down3 = nn.Sequential(*_blocks(n[2], 2 * d, r // 4), nn.Conv2d(4 * d, 8 * d, 2, 2, bias=False))
        self.m_body = nn.Sequential(*_blocks(n[3], 4 * d, r // 8))
        self.m_up3 = nn.Sequential(nn.ConvTranspose2d(8 * d, 4 * d, 2, 2, bias=False), *_blocks(n[4], 2 * d, r // 4))
        self.m_up2 = nn.Sequential(nn.ConvTranspose2d(4 * d, 2 * d, 2, 2, bias=False), *_blocks(n[5], d, r // 2))
        self.m_up1 = nn.Sequential(nn.ConvTranspose2d(2 * d, d, 2, 2, bias=False), *_blocks(n[6], d // 2, r))
        self.m_tail = nn.Sequential(nn.Conv2d(d, cfg.in_nc, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % 64, -w % 64
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        y = self.m_up3(self.m_body(x4) + x4)
        y = self.m_up2(y + x3)
        y = self.m_up1(y + x2)
        return self.m_tail(y + x1)[..., :h, :w]
