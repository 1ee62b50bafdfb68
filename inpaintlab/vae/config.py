"""Configuration of the SD1.x KL autoencoder (ldm `AutoencoderKL` with the `ddconfig` of v1-inference.yaml)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VAEConfig:
    """Widths and levels of the VAE; defaults are SD1.x (`first_stage_config` of v1-inference.yaml).

    `attn_resolutions` is empty in every SD1 file, so attention appears only in the two mid blocks, and `double_z` is
    always true (the encoder emits mean and log-variance), so neither is a field.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    in_channels: int = 3
    out_ch: int = 3
    scale_factor: float = 0.18215  # not stored in the weights; latents are sample * scale_factor

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(f"VAEConfig: ch_mult must be a non-empty tuple of positive ints, got {self.ch_mult}")
        for width in self.widths:
            if width % 32:
                raise ValueError(f"VAEConfig: every width must be a multiple of 32 (GroupNorm 32), got {self.widths}")
        for name in ("num_res_blocks", "z_channels", "embed_dim", "in_channels", "out_ch"):
            if getattr(self, name) < 1:
                raise ValueError(f"VAEConfig: {name} must be >= 1, got {getattr(self, name)}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each resolution level, highest resolution first (128, 256, 512, 512 for SD1)."""
        return tuple(self.ch * m for m in self.ch_mult)

    @property
    def downscale(self) -> int:
        """Pixel size of one latent cell (8 for SD1)."""
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], scale_factor: float = 0.18215) -> VAEConfig:
        """Infer the config from a prefix-free VAE state dict (`encoder.*`, `decoder.*`, `quant_conv.*`, ...).

        Widths come from conv shapes and level/block counts from the key names, like sd.cpp's weight detection.
        `scale_factor` is not recorded in a checkpoint and is passed through.
        """

        def shape(key: str) -> tuple[int, ...]:
            if key not in sd:
                raise KeyError(f"VAEConfig.from_state_dict: missing key {key!r} "
                               "(expected a prefix-free VAE state dict)")
            return tuple(sd[key].shape)

        ch, in_channels = shape("encoder.conv_in.weight")[:2]
        levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
        if not levels or levels != list(range(len(levels))):
            raise ValueError(f"VAEConfig.from_state_dict: encoder.down levels are {levels}, expected 0..N-1")
        blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
        ch_mult = []
        for level in levels:
            width = shape(f"encoder.down.{level}.block.0.conv1.weight")[0]
            if width % ch:
                raise ValueError(f"VAEConfig.from_state_dict: width {width} of level {level} is not a multiple of {ch}")
            ch_mult.append(width // ch)
        z_channels = shape("decoder.conv_in.weight")[1]
        embed_dim = shape("post_quant_conv.weight")[1]
        out_ch = shape("decoder.conv_out.weight")[0]
        if shape("encoder.conv_out.weight")[0] != 2 * z_channels:
            raise ValueError("VAEConfig.from_state_dict: encoder.conv_out must emit 2 * z_channels (double_z)")
        return cls(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=len(blocks), z_channels=z_channels,
                   embed_dim=embed_dim, in_channels=in_channels, out_ch=out_ch, scale_factor=scale_factor)
