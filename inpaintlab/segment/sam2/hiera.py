"""SAM 2's image encoder: the Hiera trunk and the FPN neck (sam2==1.1.0 `modeling/backbones/`).

Hiera works on BHWC token maps. Each stage change halves the map by max-pooling the queries (and the projected
shortcut) inside the attention windows, doubles the width and the head count. Window sizes lag a block behind the
stage: the pooling block still uses the previous stage's window. The neck keeps strides 4, 8, 16 (`scalp` 1 drops
stride 32 after it has been added into stride 16 by nearest upsampling); only levels 2 and 3 get the top-down path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...kernels import attention
from .config import D_MODEL, HieraConfig
from ..common import MLP


def window_partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, H, W, C] -> [B * nW, ws, ws, C], zero-padding H and W up to multiples of ws."""
    b, h, w, c = x.shape
    ph, pw = -h % ws, -w % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, ws: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = windows.shape[0] // (hp * wp // ws // ws)
    x = windows.reshape(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :size[0], :size[1], :]


def _pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool of a BHWC map."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: bool, kernels: str = "auto"):
        super().__init__()
        self.num_heads = num_heads
        self.kernels = kernels
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)  # each [B, HW, heads, hd]
        if self.q_pool:
            q = _pool(q.reshape(b, h, w, -1))
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), backend=self.kernels)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: bool, window_size: int,
                 kernels: str = "auto"):
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.window_size = window_size
        self.q_stride = q_stride
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=q_stride, kernels=kernels)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, 4 * dim_out, dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:  # the shortcut is the projected *normed* input, pooled like the queries
            shortcut = self.proj(x)
            if self.q_stride:
                shortcut = _pool(shortcut)
        ws = self.window_size
        h, w = x.shape[1:3]
        if ws > 0:
            x, padded = window_partition(x, ws)
        x = self.attn(x)
        if self.q_stride:  # the windows shrank with the queries; padding follows the pooled map
            ws //= 2
            h, w = shortcut.shape[1:3]
            padded = (h + -h % ws, w + -w % ws) if ws > 0 else (h, w)
        if self.window_size > 0:
            x = window_unpartition(x, ws, padded, (h, w))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The trunk: -> NCHW features at the end of each stage, finest first (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: HieraConfig, kernels: str = "auto"):
        super().__init__()
        stage_ends = [sum(cfg.stages[:i + 1]) - 1 for i in range(len(cfg.stages))]
        q_pool_blocks = [e + 1 for e in stage_ends[:-1]]
        self.stage_ends = stage_ends
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        ws0 = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, ws0, ws0))
        self.blocks = nn.ModuleList()
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        for i in range(sum(cfg.stages)):
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]  # before the stage advances
            dim_out = dim
            if i - 1 in stage_ends:
                dim_out, heads, stage = 2 * dim, 2 * heads, stage + 1
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, q_stride=i in q_pool_blocks, window_size=window,
                                               kernels=kernels))
            dim = dim_out

    def _get_pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile([1, 1, h // win.shape[2], w // win.shape[3]])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._get_pos_embed(*x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class FpnNeck(nn.Module):
    """1x1 lateral convs (`convs.{j}.conv`, coarsest first); top-down nearest x2 only into levels 2 and 3."""

    def __init__(self, backbone_channel_list: tuple[int, ...], d_model: int = D_MODEL,
                 fpn_top_down_levels: tuple[int, ...] = (2, 3)):
        super().__init__()
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(lateral)
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [None] * (n + 1)  # type: ignore[list-item]
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """Trunk + neck; `scalp` coarsest levels dropped: -> [stride 4, stride 8, stride 16] maps of width 256."""

    def __init__(self, cfg: HieraConfig, scalp: int = 1, kernels: str = "auto"):
        super().__init__()
        self.trunk = Hiera(cfg, kernels)
        self.neck = FpnNeck(tuple(reversed(cfg.channels)))
        self.scalp = scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.neck(self.trunk(x))
        return features[:len(features) - self.scalp] if self.scalp else features
