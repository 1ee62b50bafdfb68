"""SAM's two-way transformer: prompt tokens and image tokens attend to each other (shared by every family; SAM 2
names the MLP `mlp.layers.{0,1}` instead of `mlp.lin1/lin2`, hence `sam2_mlp`)."""
from __future__ import annotations

import torch
from torch import nn

from .common import MLP, Attention, MLPBlock


class TwoWayAttentionBlock(nn.Module):
    """Self-attention of the tokens (no positions and no residual in the first block), tokens -> image
    cross-attention, token MLP, image -> tokens cross-attention; a LayerNorm after each."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool, *, sam2_mlp: bool = False,
                 kernels: str = "torch"):
        super().__init__()
        self.self_attn = Attention(dim, num_heads, kernels=kernels)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, 2, kernels=kernels)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2) if sam2_mlp else MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, 2, kernels=kernels)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048, *,
                 sam2_mlp: bool = False, kernels: str = "torch"):
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, i == 0, sam2_mlp=sam2_mlp, kernels=kernels)
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, 2, kernels=kernels)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                point_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B,C,h,w], its positions (same shape), tokens [B,N,C] -> (tokens [B,N,C], image [B,hw,C])."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys
