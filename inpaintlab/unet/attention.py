"""Spatial transformer of the SD UNet, following ldm `modules/attention.py` (1x1-conv or Linear projections, GEGLU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import GroupNorm, attention


class GEGLU(nn.Module):
    """Linear to 2x the width, then value * gelu(gate) with exact (erf) gelu."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return F.gelu(gate).mul_(x)  # in place on gelu's fresh output (gelu's backward needs only its input)


class FeedForward(nn.Module):
    """GEGLU feed-forward, inner width 4x; Dropout kept at net.1 so the output Linear loads as `ff.net.2`."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttention(nn.Module):
    """Multi-head attention over `context` (self-attention when context is None); ldm attention.CrossAttention.

    Dropout kept at to_out.1 so the output Linear loads as `to_out.0`.
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64, *,
                 kernels: str = "torch"):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads, self.dim_head, self.scale, self.kernels = heads, dim_head, dim_head ** -0.5, kernels
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x [B,N,C], context [B,L,Cc] -> [B,N,C]
        context = x if context is None else context
        b, n, _ = x.shape
        q = self.to_q(x).view(b, n, self.heads, self.dim_head).transpose(1, 2)  # [B,Hd,N,D]
        k = self.to_k(context).view(b, -1, self.heads, self.dim_head).transpose(1, 2)  # [B,Hd,L,D]
        v = self.to_v(context).view(b, -1, self.heads, self.dim_head).transpose(1, 2)
        out = attention(q, k, v, scale=self.scale, backend=self.kernels)  # [B,Hd,N,D]
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))


class BasicTransformerBlock(nn.Module):
    """Pre-LN block: self-attention, cross-attention on the text context, GEGLU feed-forward (LayerNorm eps 1e-5)."""

    def __init__(self, dim: int, n_heads: int, d_head: int, context_dim: int, *, kernels: str = "torch"):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads=n_heads, dim_head=d_head, kernels=kernels)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads=n_heads, dim_head=d_head, kernels=kernels)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # Residuals added in place into the fresh output of each branch's last Linear (autograd-safe).
        x = self.attn1(self.norm1(x)).add_(x)
        x = self.attn2(self.norm2(x), context).add_(x)
        return self.ff(self.norm3(x)).add_(x)


class SpatialTransformer(nn.Module):
    """ldm attention.SpatialTransformer: GroupNorm eps 1e-6, then tokens.

    x [B,C,H,W] -> [B,C,H,W]; the transformer runs on the H*W tokens of width C. proj_in/proj_out are 1x1 convs
    (SD1) or, with `use_linear`, Linear layers on the tokens (SD2/SDXL `use_linear_in_transformer`); both compute
    the same per-token matmul, only the stored weight shape differs ([C,C,1,1] vs [C,C]).
    """

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int, context_dim: int, *,
                 use_linear: bool = False, kernels: str = "torch"):
        super().__init__()
        inner_dim = n_heads * d_head
        self.norm = GroupNorm(32, in_channels, 1e-6, kernels=kernels)  # eps 1e-6 here, unlike ResBlock
        self.proj_in = nn.Linear(in_channels, inner_dim) if use_linear else nn.Conv2d(in_channels, inner_dim, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, n_heads, d_head, context_dim, kernels=kernels) for _ in range(depth))
        self.proj_out = nn.Linear(inner_dim, in_channels) if use_linear else nn.Conv2d(inner_dim, in_channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # The 1x1 convs run as Linear on the tokens (same weights viewed [C,C]): the NCHW <-> token transposes then
        # ride along the matmul and the residual add instead of costing two copies.
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B,C,H,W] -> [B,H*W,C] (view)
        tokens = F.linear(tokens, self.proj_in.weight.flatten(1), self.proj_in.bias)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        out = F.linear(tokens, self.proj_out.weight.flatten(1), self.proj_out.bias)
        return x + out.transpose(1, 2).view(b, c, h, w)  # x first: the sum keeps x's NCHW layout
