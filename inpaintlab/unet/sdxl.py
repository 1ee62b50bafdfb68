"""SDXL's ADM vector: what sgm's GeneralConditioner puts under "vector" for the UNet's `label_emb`.

    y = cat[pooled text (OpenCLIP bigG, 1280), E(original h), E(original w), E(crop top), E(crop left),
            E(target h), E(target w)]                                                        -> [B, 1280 + 6*256]

E is the UNet's sinusoidal timestep embedding at width 256 (cosines first), applied to each number on its own (sgm
ConcatTimestepEmbedderND with outdim 256, one embedder per size pair, in the conditioner's order).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .blocks import timestep_embedding
from .config import SDXL_SIZE_EMBED_DIM


def size_embedding(original_size: Sequence[int], crop_coords_top_left: Sequence[int], target_size: Sequence[int],
                   batch: int = 1, dim: int = SDXL_SIZE_EMBED_DIM) -> torch.Tensor:
    """[batch, 6*dim] float32 embedding of (orig h, orig w, crop top, crop left, target h, target w).

    Sizes are (height, width) as sgm's `original_size_as_tuple` / `target_size_as_tuple`; the crop is (top, left).
    """
    numbers = [*original_size, *crop_coords_top_left, *target_size]
    if len(numbers) != 6:
        raise ValueError(f"need (h, w) sizes and a (top, left) crop, got {original_size}, {crop_coords_top_left}, "
                         f"{target_size}")
    emb = timestep_embedding(torch.tensor(numbers, dtype=torch.float32), dim)  # [6, dim]
    return emb.reshape(1, 6 * dim).expand(batch, -1)


def sdxl_adm_vector(pooled: torch.Tensor, original_size: Sequence[int], crop_coords_top_left: Sequence[int],
                    target_size: Sequence[int]) -> torch.Tensor:
    """y [B, pooled width + 1536] from the pooled text embedding [B, P] and the size conditioning (h, w order)."""
    if pooled.ndim != 2:
        raise ValueError(f"pooled must be [B, P], got {tuple(pooled.shape)}")
    sizes = size_embedding(original_size, crop_coords_top_left, target_size, pooled.shape[0])
    return torch.cat([pooled.float(), sizes.to(pooled.device)], dim=1)
