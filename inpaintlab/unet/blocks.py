"""Convolutional UNet blocks, following ldm `openaimodel.py` and `diffusionmodules/util.py`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import GroupNorm


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B] -> [B, dim] in fp32, cosines first (ldm util.timestep_embedding).

    Timesteps may be fractional (k-diffusion interpolates t between the 1000 training steps).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Downsample(nn.Module):
    """3x3 conv with stride 2 (ldm openaimodel.Downsample, use_conv=True); the conv is named `op`."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv (ldm openaimodel.Upsample, use_conv=True)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(nn.Module):
    """Follows ldm openaimodel.ResBlock (no scale-shift norm, no up/down resampling).

    ldm's `GroupNorm, SiLU` pairs run as one fused GroupNorm(silu=True); an Identity keeps the SiLU's index and the
    Dropout stays at out_layers.2, so the convs still load as `in_layers.2` and `out_layers.3`.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *, kernels: str = "torch"):
        super().__init__()
        out_channels = out_channels or channels
        self.channels, self.out_channels = channels, out_channels
        self.in_layers = nn.Sequential(
            GroupNorm(32, channels, 1e-5, silu=True, kernels=kernels),
            nn.Identity(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm(32, out_channels, 1e-5, silu=True, kernels=kernels),
            nn.Identity(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]  # per-channel bias from the timestep, [B,C] -> [B,C,1,1]
        h = self.out_layers(h)
        return self.skip_connection(x) + h
