"""The blocks of DAT (Dual Aggregation Transformer, Chen et al. 2023), named after the release files' keys.

DAT alternates two attention blocks inside each residual group: even blocks attend within rectangular windows
(half of the channels in `split = (sh, sw)` windows, the other half in the transposed `(sw, sh)` windows; some of
them cyclically shifted by half a window), odd blocks attend across channels (the "transposed" attention of XCiT: an
head_dim × head_dim map over L2-normalised features with a learned temperature). Both mix their result with a
depth-wise conv branch through the "adaptive interaction": a channel gate from one branch and a spatial gate from the
other. The feed-forward network (SGFN) gates half of its hidden channels with a depth-wise conv of the other half.

Tokens travel as (B, H·W, C); a (B, H, W, C) view permuted to (B, C, H, W) is a channels-last image, so the convs
read tokens without a copy. BatchNorms run on their running statistics only (the networks are inference-only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def as_image(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H·W, C) tokens → (B, C, H, W) channels-last view (no copy when `t` is contiguous)."""
    return t.view(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)


def as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, C)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics (keys as nn.BatchNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def region_mask(h: int, w: int, wh: int, ww: int, sh: int, sw: int, dtype: torch.dtype) -> torch.Tensor:
    """(nW, wh·ww, wh·ww) additive mask for windows of wh × ww after a cyclic shift by (sh, sw): −100 between tokens
    from different regions of the unshifted picture (the three bands per axis Swin and DAT cut), 0 within one."""
    label = torch.zeros(h, w, dtype=dtype)
    bands_h = (slice(0, -wh), slice(-wh, -sh), slice(-sh, None))
    bands_w = (slice(0, -ww), slice(-ww, -sw), slice(-sw, None))
    n = 0
    for bh in bands_h:
        for bw in bands_w:
            label[bh, bw] = n
            n += 1
    win = label.view(h // wh, wh, w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class DynamicPosBias(nn.Module):
    """Relative position bias computed by a small MLP from the (dy, dx) offsets (DAT's `pos`, non-residual form)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        pd = dim // 4
        self.pos_proj = nn.Linear(2, pd)
        self.pos1 = nn.Sequential(nn.LayerNorm(pd), nn.ReLU(), nn.Linear(pd, pd))
        self.pos2 = nn.Sequential(nn.LayerNorm(pd), nn.ReLU(), nn.Linear(pd, pd))
        self.pos3 = nn.Sequential(nn.LayerNorm(pd), nn.ReLU(), nn.Linear(pd, heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class SpatialWindowAttention(nn.Module):
    """Attention within wh × ww windows for one half of the channels (`attns.0`: split, `attns.1`: transposed)."""

    def __init__(self, dim: int, heads: int, wh: int, ww: int):
        super().__init__()
        self.heads, self.wh, self.ww = heads, wh, ww
        self.scale = (dim // heads) ** -0.5
        self.pos = DynamicPosBias(dim // 4, heads)
        dy, dx = torch.meshgrid(torch.arange(1 - wh, wh), torch.arange(1 - ww, ww), indexing="ij")
        self.register_buffer("rpe_biases", torch.stack([dy.flatten(), dx.flatten()], 1).float())
        ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        rel = (ys[:, None] - ys[None, :] + wh - 1) * (2 * ww - 1) + (xs[:, None] - xs[None, :] + ww - 1)
        self.register_buffer("relative_position_index", rel)

    def forward(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """qkv: (B, H, W, 3, c) with H, W multiples of the window; returns (B, H, W, c)."""
        b, h, w, _, c = qkv.shape
        wh, ww, nh = self.wh, self.ww, self.heads
        n, nw = wh * ww, (h // wh) * (w // ww)
        win = qkv.reshape(b, h // wh, wh, w // ww, ww, 3, nh, c // nh).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = win.reshape(3, b, nw * nh, n, c // nh).unbind(0)
        bias = self.pos(self.rpe_biases)[self.relative_position_index.view(-1)].view(n, n, nh).permute(2, 0, 1)
        if mask is None:
            bias = bias.unsqueeze(0).expand(nw, nh, n, n)
        else:
            bias = bias.unsqueeze(0) + mask.unsqueeze(1)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.reshape(1, nw * nh, n, n)
        out = attn.softmax(-1) @ v                                          # (B, nW·heads, N, d)
        out = out.view(b, h // wh, w // ww, nh, wh, ww, c // nh).permute(0, 1, 4, 2, 5, 3, 6)
        return out.reshape(b, h, w, c)


def _interaction(dim: int) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    """The conv branch and the two gates of the adaptive interaction (`dwconv`, `channel_interaction`,
    `spatial_interaction`; parameterless layers keep their Sequential indices)."""
    dwconv = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), FrozenBatchNorm2d(dim), nn.GELU())
    channel = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // 8, 1), FrozenBatchNorm2d(dim // 8),
                            nn.GELU(), nn.Conv2d(dim // 8, dim, 1))
    spatial = nn.Sequential(nn.Conv2d(dim, dim // 16, 1), FrozenBatchNorm2d(dim // 16), nn.GELU(),
                            nn.Conv2d(dim // 16, 1, 1))
    return dwconv, channel, spatial


class AdaptiveSpatialAttention(nn.Module):
    """DAT's spatial block attention: two window branches on the channel halves, mixed with a depth-wise conv of V."""

    def __init__(self, dim: int, heads: int, split: tuple[int, int], shifted: bool, img_size: int, qkv_bias: bool):
        super().__init__()
        self.split, self.shifted, self.img_size = split, shifted, img_size
        self.shift = (split[0] // 2, split[1] // 2)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        sh, sw = split
        self.attns = nn.ModuleList([SpatialWindowAttention(dim // 2, heads // 2, sh, sw),
                                    SpatialWindowAttention(dim // 2, heads // 2, sw, sh)])
        if shifted:  # the release files hold the masks for the training size
            m0, m1 = self.masks(img_size, img_size, torch.float32)
            self.register_buffer("attn_mask_0", m0)
            self.register_buffer("attn_mask_1", m1)
        self.dwconv, self.channel_interaction, self.spatial_interaction = _interaction(dim)

    def masks(self, h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        (sh, sw), (th, tw) = self.split, self.shift
        return region_mask(h, w, sh, sw, th, tw, dtype), region_mask(h, w, sw, sh, tw, th, dtype)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, length, c = x.shape
        qkv = self.qkv(x).view(b, h, w, 3, c)
        v_img = qkv[:, :, :, 2].permute(0, 3, 1, 2)                           # (B, C, H, W), channels-last
        big = max(self.split)
        ph, pw = -h % big, -w % big
        if ph or pw:  # zero padding to whole windows, as DAT
            qkv = F.pad(qkv, (0, 0, 0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        half = c // 2
        q0, q1 = qkv[..., :half], qkv[..., half:]
        attended = x.new_empty(b, h, w, c)
        if self.shifted:
            (th, tw) = self.shift
            if hp == self.img_size and wp == self.img_size:
                m0, m1 = self.attn_mask_0, self.attn_mask_1
            else:
                m0, m1 = (m.to(x.device) for m in self.masks(hp, wp, x.dtype))
            y0 = self.attns[0](torch.roll(q0, (-th, -tw), (1, 2)), m0)
            y1 = self.attns[1](torch.roll(q1, (-tw, -th), (1, 2)), m1)
            y0, y1 = torch.roll(y0, (th, tw), (1, 2)), torch.roll(y1, (tw, th), (1, 2))
        else:
            y0, y1 = self.attns[0](q0, None), self.attns[1](q1, None)
        attended[..., :half] = y0[:, :h, :w]
        attended[..., half:] = y1[:, :h, :w]
        conv = self.dwconv(v_img)
        channel_gate = torch.sigmoid(self.channel_interaction(conv)).view(b, 1, 1, c)
        spatial_gate = torch.sigmoid(self.spatial_interaction(attended.permute(0, 3, 1, 2)))   # (B, 1, H, W)
        mixed = attended * channel_gate + (spatial_gate * conv).permute(0, 2, 3, 1)
        return self.proj(mixed.reshape(b, length, c))


class AdaptiveChannelAttention(nn.Module):
    """DAT's channel block attention (head_dim × head_dim maps), mixed with a depth-wise conv of V."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.dwconv, self.channel_interaction, self.spatial_interaction = _interaction(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, length, c = x.shape
        nh = self.heads
        qkv = self.qkv(x).view(b, length, 3, nh, c // nh).permute(2, 0, 3, 4, 1)   # (3, B, heads, d, L)
        q, k, v = qkv.unbind(0)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(-1)
        attended = (attn @ v).permute(0, 3, 1, 2).reshape(b, length, c)
        conv = self.dwconv(v.reshape(b, c, h, w))
        channel_gate = torch.sigmoid(self.channel_interaction(as_image(attended, h, w)))       # (B, C, 1, 1)
        spatial_gate = torch.sigmoid(self.spatial_interaction(conv)).view(b, length, 1)
        mixed = attended * spatial_gate + as_tokens(conv * channel_gate)
        return self.proj(mixed)


class SpatialGate(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        gate = self.conv(as_image(self.norm(x2), h, w))
        return x1 * as_tokens(gate)


class SGFN(nn.Module):
    """Spatial-gate feed-forward: fc1 → GELU → half × depth-wise conv(LayerNorm(other half)) → fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(self.sg(F.gelu(self.fc1(x)), h, w))


class DATB(nn.Module):
    """One DAT block: x + attn(norm1(x)), then x + ffn(norm2(x))."""

    def __init__(self, attn: nn.Module, dim: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = SGFN(dim, hidden)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.ffn(self.norm2(x), h, w)
