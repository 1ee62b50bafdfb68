"""SD1.x KL autoencoder: follows ldm `modules/diffusionmodules/model.py` (Encoder, Decoder) and `models/autoencoder.py`.

Attribute names reproduce the ldm checkpoint keys after the `first_stage_model.` prefix (none in standalone VAE files),
so a state dict loads with `load_state_dict(strict=True)`. Images are [-1, 1]; `decode` takes unscaled latents (the
caller divides by `scale_factor`). Every GroupNorm is (32 groups, eps 1e-6), unlike the UNet's 1e-5.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import GroupNorm, attention, check_backend
from .config import VAEConfig


def _norm(channels: int, kernels: str, silu: bool = False) -> GroupNorm:
    return GroupNorm(32, channels, 1e-6, silu=silu, kernels=kernels)


class ResnetBlock(nn.Module):
    """ldm ResnetBlock without time embedding (temb_channels=0) or dropout (0 in SD1); 1x1 `nin_shortcut` when the
    widths differ.

    ldm applies `nonlinearity()` as a function right after norm1/norm2, so the SiLU is fused into the norms here
    without moving any checkpoint key.
    """

    def __init__(self, in_channels: int, out_channels: int, kernels: str = "torch"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels, kernels, silu=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, kernels, silu=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.norm2(self.conv1(self.norm1(x))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """ldm AttnBlock: single-head self-attention over the H*W positions, q/k/v/proj_out as 1x1 convs [C,C,1,1]."""

    def __init__(self, channels: int, kernels: str = "torch"):
        super().__init__()
        self.norm = _norm(channels, kernels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:  # [B,C,H,W] -> [B,1,HW,C]
            return t.reshape(b, 1, c, height * width).transpose(2, 3)

        # Always the torch path: one head of dimension 512 is outside the tile sizes the Triton flash kernel is
        # written for (head dims up to 160), and SDPA already dispatches to a fused kernel on CUDA. It runs once per
        # encode/decode, at 1/64 of the image's pixels.
        h = attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)), scale=c ** -0.5, backend="torch")
        h = h.transpose(2, 3).reshape(b, c, height, width)  # [B,1,HW,C] -> [B,C,H,W]
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with ldm's asymmetric zero pad (right and bottom only) and no conv padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    """ldm's anonymous `mid` module: block_1, attn_1, block_2 at the lowest resolution."""

    def __init__(self, channels: int, kernels: str):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, kernels)
        self.attn_1 = AttnBlock(channels, kernels)
        self.block_2 = ResnetBlock(channels, channels, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """ldm's anonymous per-resolution module: `block` list plus `downsample` (encoder) or `upsample` (decoder).

    ldm also creates an empty `attn` ModuleList here (no attention at any level in SD1); it has no keys and is omitted.
    """

    def __init__(self, widths: list[tuple[int, int]], resample: nn.Module | None, name: str, kernels: str):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin, cout, kernels) for cin, cout in widths)
        if resample is not None:
            setattr(self, name, resample)
        self.resample_name = name if resample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.resample_name is not None:
            x = getattr(self, self.resample_name)(x)
        return x


class Encoder(nn.Module):
    """ldm Encoder: conv_in, `down.{i}` levels (downsample on all but the last), mid, norm_out+SiLU, conv_out."""

    def __init__(self, config: VAEConfig, kernels: str = "torch"):
        super().__init__()
        widths = config.widths
        self.conv_in = nn.Conv2d(config.in_channels, config.ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = config.ch
        for level, cout in enumerate(widths):
            blocks = [(cin if i == 0 else cout, cout) for i in range(config.num_res_blocks)]
            last = level == len(widths) - 1
            self.down.append(_Level(blocks, None if last else Downsample(cout), "downsample", kernels))
            cin = cout
        self.mid = _Mid(cin, kernels)
        self.norm_out = _norm(cin, kernels, silu=True)
        self.conv_out = nn.Conv2d(cin, 2 * config.z_channels, 3, padding=1)  # double_z: mean and log-variance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(self.norm_out(self.mid(h)))


class Decoder(nn.Module):
    """ldm Decoder: conv_in, mid, `up.{N-1}` first ... `up.0` last (num_res_blocks + 1 blocks each, upsample on all
    but `up.0`), norm_out+SiLU, conv_out. ldm builds the list back to front (`up.insert(0, ...)`), hence the order."""

    def __init__(self, config: VAEConfig, kernels: str = "torch"):
        super().__init__()
        widths = config.widths
        cin = widths[-1]
        self.conv_in = nn.Conv2d(config.z_channels, cin, 3, padding=1)
        self.mid = _Mid(cin, kernels)
        levels: list[_Level] = []
        for level in reversed(range(len(widths))):
            cout = widths[level]
            blocks = [(cin if i == 0 else cout, cout) for i in range(config.num_res_blocks + 1)]
            levels.insert(0, _Level(blocks, Upsample(cout) if level != 0 else None, "upsample", kernels))
            cin = cout
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin, kernels, silu=True)
        self.conv_out = nn.Conv2d(cin, config.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(self.norm_out(h))


class DiagonalGaussian:
    """ldm DiagonalGaussianDistribution over latents: moments [B,2E,h,w] split into mean and log-variance."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise, the noise drawn in fp32 on the generator's device (CPU by default) and then moved.

        ldm draws `torch.randn(mean.shape)` on the CPU and moves it, so a CPU generator reproduces it on any device.
        As in ldm the fp32 noise promotes an fp16/bf16 mean: the sample is fp32.
        """
        device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=torch.float32)
        return self.mean + self.std * noise.to(self.mean.device)


class AutoencoderKL(nn.Module):
    """ldm AutoencoderKL (inference part): encoder, decoder, quant_conv [2E,2Z,1,1], post_quant_conv [Z,E,1,1]."""

    def __init__(self, config: VAEConfig | None = None, kernels: str = "torch"):
        super().__init__()
        self.config = config = config if config is not None else VAEConfig()
        self.kernels = check_backend(kernels)
        self.encoder = Encoder(config, kernels)
        self.decoder = Decoder(config, kernels)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Posterior over unscaled latents for images x [B,3,H,W] in [-1, 1]; latents are [B,E,H/8,W/8]."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"AutoencoderKL.encode: expected images [B,{self.config.in_channels},H,W], "
                             f"got shape {tuple(x.shape)}")
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images [B,3,8h,8w] in about [-1, 1] from UNSCALED latents z [B,E,h,w] (divide by scale_factor first)."""
        if z.ndim != 4 or z.shape[1] != self.config.embed_dim:
            raise ValueError(f"AutoencoderKL.decode: expected latents [B,{self.config.embed_dim},h,w], "
                             f"got shape {tuple(z.shape)}")
        return self.decoder(self.post_quant_conv(z))

    def extra_repr(self) -> str:
        return f"kernels={self.kernels!r}, scale_factor={self.config.scale_factor}"


_ATTN_WEIGHT = re.compile(r"(^|\.)mid\.attn_1\.(q|k|v|proj_out)\.weight$")


def conv_attention_weights(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return a new dict in which Linear-shaped [C,C] mid-attention weights become the 1x1 convs [C,C,1,1] of ldm.

    Some converted VAE files store `*.mid.attn_1.{q,k,v,proj_out}.weight` as Linear weights; the values are the same.
    Works with any key prefix; other entries are passed through. The input mapping and its tensors are not modified.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if _ATTN_WEIGHT.search(key) and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[key] = value
    return out
