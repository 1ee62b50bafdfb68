"""SAM v1's ViT image encoder (ViTDet backbone): patch embedding, windowed / global blocks with decomposed relative
positions, and the neck. HQ-SAM also reads the output of the first global block (`interm`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import attention
from .common import LayerNorm2d, MLPBlock

# (embed_dim, depth, heads, global blocks) of the released encoders, picked by width and depth.
VIT_CONFIGS = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def window_partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B,H,W,C] -> [B·nw, ws, ws, C], zero-padded at the bottom/right to a multiple of ws (after the norm)."""
    b, h, w, c = x.shape
    ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(x: torch.Tensor, ws: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // (hp * wp // ws // ws)
    x = x.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :size[0], :size[1]]


def relative_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """rel_pos[(i − j) + k_size − 1] for query i, key j: [q_size, k_size, dim]. The table is linearly resized first
    when its length is not 2·max(q,k) − 1 (segment_anything's get_rel_pos)."""
    n = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != n:
        rel_pos = F.interpolate(rel_pos.T[None], size=n, mode="linear")[0].T
    qc = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    kc = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    return rel_pos[((qc - kc) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


class Attention(nn.Module):
    """Multi-head attention over an [B,H,W,C] grid with decomposed relative positions (MViTv2):
    score[(i,j),(k,l)] = q·k·d^-½ + q·Rh[i,k] + q·Rw[j,l], with q unscaled in the two position terms."""

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int], *, kernels: str = "torch"):
        super().__init__()
        self.num_heads, self.kernels = num_heads, kernels
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        rq = q.reshape(b, self.num_heads, h, w, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, relative_table(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, relative_table(w, w, self.rel_pos_w))
        if self.kernels != "torch" and x.is_cuda:
            out = self._fused(q, k, v, rel_h, rel_w)
        else:
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))

    def _fused(self, q, k, v, rel_h, rel_w):
        """The position terms as extra dimensions of one plain attention: q' = [q·d^-½, rel_h, rel_w] against
        k' = [k, one-hot(row), one-hot(col)] gives the same scores, so the fused kernel (no bias input) runs it."""
        b, n, hw, d = q.shape
        h, w = rel_h.shape[2], rel_h.shape[3]
        rows = torch.arange(hw, device=q.device) // w
        cols = torch.arange(hw, device=q.device) % w
        eye_h = F.one_hot(rows, h).to(q.dtype).expand(b, n, hw, h)
        eye_w = F.one_hot(cols, w).to(q.dtype).expand(b, n, hw, w)
        qa = torch.cat([q * self.scale, rel_h.reshape(b, n, hw, h), rel_w.reshape(b, n, hw, w)], dim=-1)
        ka = torch.cat([k, eye_h, eye_w], dim=-1)
        va = F.pad(v, (0, qa.shape[-1] - d))
        return attention(qa, ka, va, scale=1.0, backend=self.kernels)[..., :d]


class Block(nn.Module):
    """x + attn(norm1(x)) (windowed when window_size > 0), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, window_size: int, input_size: tuple[int, int], *,
                 kernels: str = "torch"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, size, kernels=kernels)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, 4 * dim)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, x = x, self.norm1(x)
        if self.window_size > 0:
            size = x.shape[1:3]
            x, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """[B,3,S,S] normalised, padded image -> ([B,256,S/16,S/16], interm): `interm` is the list of the global
    blocks' outputs ([B,S/16,S/16,C]), which only HQ-SAM reads (its first entry)."""

    def __init__(self, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, window_size: int = 14, global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
                 out_chans: int = 256, *, kernels: str = "torch"):
        super().__init__()
        self.img_size, self.embed_dim = img_size, embed_dim
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, 0 if i in global_attn_indexes else window_size, (grid, grid), kernels=kernels)
            for i in range(depth))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, 1, bias=False), LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.patch_embed(x) + self.pos_embed
        interm = []
        for blk in self.blocks:
            x = blk(x)
            if blk.window_size == 0:
                interm.append(x)
        return self.neck(x.permute(0, 3, 1, 2)), interm
