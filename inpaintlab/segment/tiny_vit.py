"""MobileSAM's image encoder: TinyViT-5M (conv stages, then windowed attention with learned offset biases), with
SAM's neck. Parameter names are the `image_encoder.` keys of `mobile_sam.pt` (`Conv2d_BN` = `.c` + `.bn`)."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d

# MobileSAM's TinyViT-5M at 1024².
MOBILE_SAM_CONFIG = dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
                         window_sizes=(7, 7, 14, 7))


class Conv2d_BN(nn.Sequential):  # noqa: N801  the checkpoint's class, kept so its layout reads the same
    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.seq = nn.Sequential(Conv2d_BN(3, embed_dim // 2, 3, 2, 1), nn.GELU(),
                                 Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, dim: int, expand: float = 4.0):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = Conv2d_BN(dim, hidden)
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2d_BN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1×1 -> GELU -> depthwise 3×3 -> GELU -> 1×1, to tokens. The depthwise conv has stride 1 (not 2) when the
    output width is 320, 448 or 576: that is how TinyViT-SAM keeps its last stage at 64×64."""

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int):
        super().__init__()
        self.resolution = resolution
        self.conv1 = Conv2d_BN(dim, out_dim)
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, out_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim) for _ in range(depth))
        self.downsample = PatchMerging(resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def offset_index(window: int) -> tuple[torch.Tensor, int]:
    """idx[p1, p2] = index of (|dy|, |dx|) in first-seen order over the window's points, and the number of offsets."""
    points = list(itertools.product(range(window), range(window)))
    seen: dict[tuple[int, int], int] = {}
    idx = [seen.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(seen)) for a in points for b in points]
    return torch.tensor(idx).view(len(points), len(points)), len(seen)


class Attention(nn.Module):
    """LayerNorm, qkv laid out per head as [q_h, k_h, v_h], softmax(q·kᵀ·d^-½ + bias[offset]), proj."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        idx, n = offset_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n))
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.key_dim, dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.expand(b, -1, -1, -1))
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class TinyViTBlock(nn.Module):
    """x + window_attn(x); local depthwise conv (no residual); x + mlp(x)."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int):
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, 4 * dim)
        self.local_conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        ws = self.window
        if h == ws and w == ws:
            y = self.attn(x)
        else:
            y = x.view(b, h, w, c)
            pb, pr = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pb or pr:
                y = F.pad(y, (0, 0, 0, pr, 0, pb))
            ph, pw = h + pb, w + pr
            y = y.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
            y = self.attn(y).view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            y = y[:, :h, :w].reshape(b, n, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 out_dim: int | None):
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, resolution, num_heads, window) for _ in range(depth))
        self.downsample = PatchMerging(resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """[B,3,1024,1024] -> ([B,256,64,64], interm): `interm[0]` is the second stage's output as [B,64,64,C], the
    feature HQ-SAM's light model (`sam_hq_vit_tiny`) reads. `norm_head`/`head` (ImageNet classifier) are unused."""

    def __init__(self, img_size: int = 1024, embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2),
                 num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), num_classes: int = 1000):
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(embed_dims[0])
        res = img_size // 4
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            r = res // 2 ** (i - 1 if i == 3 else i)  # the last stage keeps the third's resolution
            out = embed_dims[i + 1] if i + 1 < len(embed_dims) else None
            if i == 0:
                self.layers.append(ConvLayer(dim, (r, r), depths[0], out))
            else:
                self.layers.append(BasicLayer(dim, (r, r), depths[i], num_heads[i], window_sizes[i], out))
        self.grid = res // 4
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], 256, 1, bias=False), LayerNorm2d(256),
            nn.Conv2d(256, 256, 3, padding=1, bias=False), LayerNorm2d(256))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.patch_embed(x)
        interm = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == 1:
                interm.append(x.view(x.shape[0], self.grid, self.grid, -1))
        b, _, c = x.shape
        return self.neck(x.view(b, self.grid, self.grid, c).permute(0, 3, 1, 2)), interm
