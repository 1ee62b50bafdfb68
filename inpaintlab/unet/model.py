"""The SD UNet (SD1.x, SD2.x, SDXL), following ldm/sgm `openaimodel.UNetModel`; attribute names are the checkpoint
keys after `model.diffusion_model.`, so a checkpoint loads with `load_state_dict(strict=True)` and no renaming."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import GroupNorm, check_backend
from .attention import SpatialTransformer
from .blocks import Conv2d, Downsample, ResBlock, Upsample, timestep_embedding
from .config import UNetConfig


def skip_cat(h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Concatenate a decoder feature map with its skip connection along channels.

    A latent that is not a multiple of the UNet's downscale (600x400 pixels -> 75x50) shrinks to odd sizes on the way
    down (75 -> 38 -> 19 -> 10), so the x2 upsampled map can be one larger than its skip (20 vs 19). A1111 v1.10
    generates at such sizes: its UNet hijack (for ldm and sgm alike, and sd-webui-controlnet's decoder) resizes the
    first tensor to the second's size with nearest interpolation before the concatenation; we do the same.
    """
    if h.shape[-2:] != skip.shape[-2:]:
        h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
    return torch.cat([h, skip], dim=1)


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that hands the timestep embedding to ResBlocks and the context to SpatialTransformers."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """Noise (or v) predictor of SD1.x/SD2.x/SDXL (ldm/sgm openaimodel.UNetModel, use_spatial_transformer=True).

    SDXL's UNet (`adm_in_channels`) also takes the ADM vector `y` (pooled text and size embeddings), added to the
    timestep embedding through `label_emb` (sgm `num_classes="sequential"`).
    `kernels` ("torch", "triton" or "auto") picks the GroupNorm and attention implementation for every layer.
    """

    def __init__(self, config: UNetConfig | None = None, kernels: str = "torch"):
        super().__init__()
        config = config or UNetConfig()
        self.config, self.kernels = config, check_backend(kernels)
        mc, ctx = config.model_channels, config.context_dim
        emb_dim = mc * 4

        def transformer(ch: int, depth: int) -> SpatialTransformer:
            heads, d_head = config.heads_at(ch)
            return SpatialTransformer(ch, heads, d_head, depth, ctx, use_linear=config.use_linear_in_transformer,
                                      kernels=kernels)

        # SiLU kept at time_embed.1 so the second Linear loads as time_embed.2.
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if config.adm_in_channels is not None:
            # Nested like sgm's Sequential(Sequential(Linear, SiLU, Linear)): the keys are label_emb.0.0 / label_emb.0.2.
            self.label_emb = nn.Sequential(nn.Sequential(
                nn.Linear(config.adm_in_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)))

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(Conv2d(config.in_channels, mc, 3, padding=1))])
        skip_channels, ch, ds = [mc], mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, kernels=kernels)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers.append(transformer(ch, config.depth_at(level)))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, kernels=kernels), transformer(ch, config.middle_depth),
            ResBlock(ch, emb_dim, kernels=kernels))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mc * mult, kernels=kernels)]
                ch = mc * mult
                if ds in config.attention_resolutions:
                    layers.append(transformer(ch, config.depth_at(level)))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        # GroupNorm + SiLU fused at out.0; Identity keeps the SiLU's index so the conv loads as out.2.
        self.out = nn.Sequential(
            GroupNorm(32, ch, 1e-5, silu=True, kernels=kernels),
            nn.Identity(),
            Conv2d(mc, config.out_channels, 3, padding=1),
        )

    def _check_inputs(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                      y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"UNet input must be [B,{cfg.in_channels},H,W], got {list(x.shape)}")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"UNet input height and width must be at least 1, got {x.shape[2]}x{x.shape[3]}")
        b = x.shape[0]
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != cfg.context_dim:
            raise ValueError(f"UNet context must be [B={b},L,{cfg.context_dim}], got {list(context.shape)}")
        if cfg.adm_in_channels is None:
            if y is not None:
                raise ValueError("this UNet has no ADM (label_emb) input; y must be None")
        elif y is None or y.ndim != 2 or y.shape != (b, cfg.adm_in_channels):
            got = None if y is None else list(y.shape)
            raise ValueError(f"this UNet needs the ADM vector y [B={b},{cfg.adm_in_channels}] (SDXL: pooled text and "
                             f"size embeddings), got {got}")
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0 or timesteps.shape == (1,):
            timesteps = timesteps.reshape(1).expand(b)
        if timesteps.shape != (b,):
            raise ValueError(f"UNet timesteps must be a scalar or [B={b}], got {list(timesteps.shape)}")
        return timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None, control: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x [B,C,H,W], timesteps [B] (float allowed), context [B,L,context_dim], y [B,adm_in_channels] (SDXL only)
        -> eps (or v) [B,out_channels,H,W].

        control: optional ControlNet residuals, one per input block then one for the middle block (13 for SD1):
        residual k is added to skip k as it enters the decoder, the last to the middle block's output
        (sd-webui-controlnet's hooked forward; diffusers' down/mid_block_additional_residual).
        """
        timesteps = self._check_inputs(x, timesteps, context, y)
        if control is not None and len(control) != len(self.input_blocks) + 1:
            raise ValueError(f"control must hold {len(self.input_blocks) + 1} residuals, got {len(control)}")
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(dtype))
        if y is not None:
            emb = emb + self.label_emb(y.to(dtype))
        h, context = x.to(dtype), context.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        if control is not None:
            h = h + control[-1].to(dtype)
            skips = [s + c.to(dtype) for s, c in zip(skips, control)]
        for block in self.output_blocks:
            h = block(skip_cat(h, skips.pop()), emb, context)
        return self.out(h)
