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


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same keys) that runs small CPU convolutions with large weights as unfold + GEMM.

    PyTorch's CPU convolution (oneDNN) copies the weight into a blocked layout on every call. For the 1280-channel
    3x3 convs that copy costs more than the arithmetic once batch x output pixels is small (the 4x4 and 8x8 levels of
    small latents), while the [Co, Ci*kh*kw] weight is already a GEMM operand. There the input is unfolded and
    multiplied instead: the same sums in another order (fp32 rounding). Elsewhere, and off the CPU, nn.Conv2d runs.
    """

    gemm_max_pixels = 128  # batch * output pixels at or below which the GEMM path is taken ...
    gemm_min_weight = 1280 * 640 * 9  # ... for weights at least this large (measured crossovers, fp32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or self.weight.numel() < self.gemm_min_weight or x.ndim != 4 \
                or isinstance(self.padding, str):
            return super().forward(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
        if x.shape[0] * ho * wo > self.gemm_max_pixels or self.groups != 1 or self.dilation != (1, 1) \
                or self.padding_mode != "zeros":
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # [B, Ci*kh*kw, Ho*Wo]
        out = F.linear(cols.transpose(1, 2), self.weight.flatten(1), self.bias)  # [B, Ho*Wo, Co]
        return out.transpose(1, 2).reshape(x.shape[0], -1, ho, wo).contiguous()  # NCHW, like the conv


class Downsample(nn.Module):
    """3x3 conv with stride 2 (ldm openaimodel.Downsample, use_conv=True); the conv is named `op`."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv (ldm openaimodel.Upsample, use_conv=True)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

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
            Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm(32, out_channels, 1e-5, silu=True, kernels=kernels),
            nn.Identity(),
            nn.Dropout(0.0),
            Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # The in-place adds write into fresh conv outputs, which autograd does not need: safe with gradients too.
        h = self.in_layers(x)
        h += self.emb_layers(emb)[:, :, None, None]  # per-channel bias from the timestep, [B,C] -> [B,C,1,1]
        return self.out_layers(h).add_(self.skip_connection(x))
