"""Small layers shared by the Segment Anything networks (SAM v1, HQ-SAM, MobileSAM; SAM 2 reuses them)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InpaintlabError
from ..kernels import attention


class SegmentError(InpaintlabError):
    """A file, model or input the segmentation code cannot use; the message names the problem in one line."""


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel of an NCHW map (biased variance), as segment_anything's."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class MLPBlock(nn.Module):
    """lin2(act(lin1(x))): the ViT block's MLP (GELU) and the two-way transformer's (ReLU)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """`layers.{0..n-1}` Linear layers with an activation between them (ReLU: the hypernetwork, IoU and HQ heads of
    both SAM versions; SAM 2's Hiera blocks pass GELU). The activation has no parameters, so no key."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 sigmoid_output: bool = False, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class Attention(nn.Module):
    """The two-way transformer's attention: q/k/v projections to `embedding_dim // downsample_rate`, heads split,
    softmax(q·kᵀ/√d)·v through `inpaintlab.kernels.attention`, heads merged, `out_proj`."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, *, kernels: str = "torch"):
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        if self.internal_dim % num_heads:
            raise SegmentError(f"attention: {num_heads} heads do not divide width {self.internal_dim}")
        self.num_heads, self.kernels = num_heads, kernels
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        out = attention(q, k, v, backend=self.kernels)  # [B, heads, N, d]
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))
