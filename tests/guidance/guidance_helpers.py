"""Guidance test helpers: a tiny UNet with attention at every level (so token merging and the middle block act),
three level widths (so every FreeU stage exists), visibly re-initialised weights."""
from __future__ import annotations

import torch

from inpaintlab.tiny import reinit_
from inpaintlab.unet import UNetConfig, UNetModel


def tiny_unet(seed: int = 0, middle_depth: int | None = None) -> UNetModel:
    cfg = UNetConfig(model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1, attention_resolutions=(1, 2, 4),
                     num_heads=4, context_dim=64, transformer_depth_middle=middle_depth)
    unet = UNetModel(cfg)
    with torch.no_grad():
        reinit_(unet, seed)
    return unet.eval()


def unet_inputs(b: int = 2, hw: tuple[int, int] = (16, 12), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 4, *hw, generator=g), torch.tensor([10.5, 700.0, 300.0, 5.0][:b]),
            torch.randn(b, 7, 64, generator=g))


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
