"""SAM 2's prompt encoder and mask decoder (sam2==1.1.0 `modeling/sam/`), named after the checkpoint keys.

The prompt encoder is SAM's: random-Fourier position encoding of points in the 1024 frame, learned point-type
embeddings and a strided-conv mask encoder. The decoder is SAM's two-way transformer with SAM 2's changes: MLPs named
`mlp.layers.{0,1}`, an object-score token before the IoU token, sigmoid IoU, and high-resolution skip features
(`conv_s0`, `conv_s1`) added during upscaling. The MLPs are SAM's own (`segment.common.MLP`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...kernels import attention
from ..common import MLP

_PAD_LABEL = -1  # the "not a point" label of the padding point appended when no box is given


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (eps 1e-6), as SAM computes it: biased variance, then affine."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features: [sin, cos](2pi (2c - 1) G) for c in [0,1]^2; G is a stored buffer [2, 128]."""

    def __init__(self, num_pos_feats: int = 128):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        g = self.positional_encoding_gaussian_matrix
        coords = (2 * coords.to(g.dtype) - 1) @ g  # fp32 models: fp32 throughout, as the reference
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an h x w grid -> [C, h, w]."""
        h, w = size
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device, dtype=torch.float32)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._pe_encoding(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encoding of pixel coordinates [B, N, 2] (x, y) in an image of `image_size` (h, w)."""
        coords = torch.stack([coords[..., 0] / image_size[1], coords[..., 1] / image_size[0]], dim=-1)
        return self._pe_encoding(coords.float())


class PromptEncoder(nn.Module):
    """sam.PromptEncoder: points (labels -1 pad, 0 bg, 1 fg, 2/3 box corners), boxes and a low-res mask."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024), mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2), LayerNorm2d(mask_in_chans),
            nn.GELU(), nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), _PAD_LABEL)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        emb = torch.where((labels == _PAD_LABEL)[..., None], self.not_a_point_embed.weight.expand_as(emb), emb)
        for label, table in enumerate(self.point_embeddings):
            emb = torch.where((labels == label)[..., None], emb + table.weight, emb)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = self.pe_layer.forward_with_coords((boxes + 0.5).reshape(-1, 2, 2), self.input_image_size)
        offsets = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return corners + offsets

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> sparse [B, N, C], dense [B, C, 64, 64]."""
        bs = points[0].shape[0] if points is not None else boxes.shape[0] if boxes is not None else (
            masks.shape[0] if masks is not None else 1)
        weight = self.no_mask_embed.weight
        sparse = weight.new_empty((bs, 0, self.embed_dim))
        if points is not None:
            sparse = torch.cat([sparse, self._embed_points(points[0], points[1], pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense


class Attention(nn.Module):
    """SAM's attention with an optional internal width of embedding_dim / downsample_rate."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, kernels: str = "auto"):
        super().__init__()
        internal = embedding_dim // downsample_rate
        self.num_heads = num_heads
        self.kernels = kernels
        self.q_proj = nn.Linear(embedding_dim, internal)
        self.k_proj = nn.Linear(embedding_dim, internal)
        self.v_proj = nn.Linear(embedding_dim, internal)
        self.out_proj = nn.Linear(internal, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v)),
                        backend=self.kernels)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, MLP, image->token cross-attention (post-norm)."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool,
                 kernels: str = "auto"):
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads, kernels=kernels)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2, kernels=kernels)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=2, kernels=kernels)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:  # the first layer replaces the tokens (no PE, no residual)
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048,
                 kernels: str = "auto"):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, i == 0, kernels)
                                    for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2, kernels=kernels)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding, image_pe, point_embedding):
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys
