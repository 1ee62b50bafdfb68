"""SAM's prompt encoder (shared by v1, HQ-SAM, MobileSAM and SAM 2): random-Fourier positions for points and box
corners, learned point-type embeddings, and a small conv stack for a 256×256 mask prompt."""
from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """pe(c ∈ [0,1]²) = [sin(2π(2c−1)G), cos(2π(2c−1)G)] with G [2, n] a stored random matrix."""

    def __init__(self, num_pos_feats: int = 128):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        g = self.positional_encoding_gaussian_matrix  # in fp32 whatever the model's dtype (segment_anything's)
        coords = 2 * math.pi * ((2 * coords.float() - 1) @ g.float())
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).to(g.dtype)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """The grid of pixel centres of an (h, w) map -> [C, h, w]."""
        h, w = size
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device)
        y = (grid.cumsum(0) - 0.5) / h
        x = (grid.cumsum(1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Pixel coordinates [B, N, 2] (x, y) in an (h, w) input frame -> [B, N, C]."""
        # Divided in the coordinates' own precision (float64 from the mask generator), then fp32, as the reference.
        scale = torch.tensor([image_size[1], image_size[0]], device=coords.device, dtype=coords.dtype)
        return self._encode((coords / scale).float())


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024), mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))  # neg, pos, 2 corners
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, 2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, 2, stride=2), LayerNorm2d(mask_in_chans), nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, 1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # the centre of the pixel
        if pad:  # without a box, a "not a point" token is appended
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        emb = torch.where((labels == -1)[..., None], self.not_a_point_embed.weight, emb)
        for value, table in ((0, self.point_embeddings[0]), (1, self.point_embeddings[1])):
            emb = emb + (labels == value)[..., None] * table.weight
        # SAM 2 encodes box corners as points labelled 2 and 3 (its predictor's box form).
        for value, table in ((2, self.point_embeddings[2]), (3, self.point_embeddings[3])):
            emb = emb + (labels == value)[..., None] * table.weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = self.pe_layer.forward_with_coords((boxes + 0.5).reshape(-1, 2, 2), self.input_image_size)
        return torch.stack([corners[:, 0] + self.point_embeddings[2].weight[0],
                            corners[:, 1] + self.point_embeddings[3].weight[0]], dim=1)

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> sparse [B, N, C] (points, then box corners) and dense [B, C, h, w] embeddings."""
        dev = self.no_mask_embed.weight.device
        bs = points[0].shape[0] if points is not None else boxes.shape[0] if boxes is not None else \
            masks.shape[0] if masks is not None else 1
        sparse = torch.empty((bs, 0, self.embed_dim), device=dev, dtype=self.no_mask_embed.weight.dtype)
        if points is not None:
            sparse = torch.cat([sparse, self._embed_points(points[0], points[1], pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense
