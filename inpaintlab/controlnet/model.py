"""The SD1.x and SDXL ControlNet (ldm/sgm `cldm.ControlNet` as sd-webui-controlnet runs it): the UNet encoder plus a
hint encoder, one zero conv per input block and a middle-block output conv; SDXL's also has the UNet's ADM embedding
(`label_emb`). Attribute names are the file's keys after `control_model.`, so a ControlNet file in the original layout
loads with `load_state_dict(strict=True)`; the encoder is built from the UNet's own blocks. Files in diffusers'
single-file layout are renamed to these keys by `diffusers_layout`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..kernels import check_backend
from ..unet.attention import SpatialTransformer
from ..unet.blocks import Conv2d, Downsample, ResBlock, timestep_embedding
from ..unet.config import UNetConfig
from ..unet.model import TimestepEmbedSequential

HINT_KEY = "input_hint_block.0.weight"


@dataclass(frozen=True)
class ControlNetConfig:
    """An SD1.x or SDXL ControlNet: the encoder half of `unet` (its `in_channels` is the ControlNet's, 4 in every
    published ControlNet, even for use with a 9-channel inpainting UNet) plus the hint encoder. An SDXL ControlNet's
    `unet` has SDXL's `adm_in_channels` (2816): it adds the same ADM vector y as the UNet to its timestep embedding.

    `hint_widths` are the hint encoder's inner widths (ldm: 16, 32, 96, 256): one conv into the first, then per
    later width a conv at the old width and a stride-2 conv into the new one, then a conv to `model_channels`.
    """

    unet: UNetConfig = UNetConfig()
    hint_channels: int = 3
    hint_widths: tuple[int, ...] = (16, 32, 96, 256)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hint_widths", tuple(int(w) for w in self.hint_widths))
        if self.hint_channels < 1 or not self.hint_widths or min(self.hint_widths) < 1:
            raise ValueError(f"bad hint encoder: hint_channels {self.hint_channels}, widths {self.hint_widths}")

    @property
    def family(self) -> str:
        """The checkpoint family it belongs to: "sdxl" with the ADM embedding (label_emb), else "sd1"."""
        return "sdxl" if self.unet.adm_in_channels is not None else "sd1"

    @property
    def num_outputs(self) -> int:
        """Residuals per call: one per UNet input block, plus the middle block (13 for SD1.5, 10 for SDXL)."""
        return 1 + len(self.unet.channel_mult) * (self.unet.num_res_blocks + 1)

    @property
    def hint_downsample(self) -> int:
        """Pixels per latent cell along each side: the hint is this many times the latent size (8 for SD1)."""
        return 2 ** (len(self.hint_widths) - 1)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> ControlNetConfig:
        """Infer the config from ControlNet weights in the original layout, any `control_model.` prefix already
        stripped (SD1: 1x1-conv projections, 8 heads; SDXL: `label_emb`, Linear projections, 64-channel heads).

        Raises ValueError naming the problem for files that are not such ControlNets (a checkpoint, a control-LoRA,
        a "diff" or an SD2 ControlNet, SDXL's attention-free "small" ControlNets).
        """
        if HINT_KEY not in sd:
            if "controlnet_cond_embedding.conv_in.weight" in sd:
                raise ValueError("diffusers-format ControlNet (controlnet_cond_embedding.*): rename its keys with "
                                 "controlnet.diffusers_layout.to_original first")
            if any(k.startswith("lora_controlnet") for k in sd):
                raise ValueError("control-LoRA weights (lora_controlnet): merge them with the UNet first "
                                 "(controlnet.control_lora.merge_control_lora)")
            if any(k.startswith("model.diffusion_model.") for k in sd):
                raise ValueError("this is a Stable Diffusion checkpoint, not a ControlNet (no input_hint_block)")
            raise ValueError(f"not a ControlNet: no {HINT_KEY!r}")
        if "difference" in sd:
            raise ValueError("'diff' ControlNets (difference key: weights to add to a UNet) are not supported")
        if any(k.startswith("output_blocks.") for k in sd):
            raise ValueError("unexpected UNet decoder weights (output_blocks.*) in a ControlNet file")
        if any(k.startswith(("control_add_embedding.", "task_embedding")) for k in sd):
            raise ValueError("ControlNet Union (control_add_embedding / task_embedding) is not supported")
        if not any(k.endswith(".attn2.to_k.weight") for k in sd):
            raise ValueError("ControlNet without attention layers (SDXL 'small' ControlNets) is not supported")
        for key in sd:
            if key.endswith(".proj_in.weight") and not any(
                    k.startswith(key[: -len("proj_in.weight")] + "transformer_blocks.") for k in sd):
                raise ValueError(f"spatial transformer without blocks at {key[: -len('.proj_in.weight')]!r} (SDXL "
                                 "'mid' ControlNets) is not supported")
        # The encoder has the UNet's layout and names; UNetConfig reads everything it needs from it except the
        # output conv, which a ControlNet lacks, so a stand-in for that one key is supplied.
        width = sd["input_blocks.0.0.weight"].shape[0] if "input_blocks.0.0.weight" in sd else 0
        encoder = dict(sd)
        encoder["out.2.weight"] = torch.empty(4, width, 3, 3, device="meta")
        unet = UNetConfig.from_state_dict(encoder)
        if unet.adm_in_channels is not None and not unet.use_linear_in_transformer:
            raise ValueError("unexpected ControlNet: label_emb (SDXL) with 1x1-conv projections")
        if unet.adm_in_channels is None and (unet.use_linear_in_transformer or unet.context_dim == 1024):
            raise ValueError(f"SD2-style ControlNet (context width {unet.context_dim}, "
                             f"{'Linear' if unet.use_linear_in_transformer else '1x1-conv'} projections) is not "
                             "supported; only SD1.x and SDXL ControlNets")
        convs = sorted((int(m.group(1)), v.shape) for k, v in sd.items()
                       if (m := re.fullmatch(r"input_hint_block\.(\d+)\.weight", k)))
        n = len(convs)
        if n < 2 or [i for i, _ in convs] != list(range(0, 2 * n, 2)) or n % 2:
            raise ValueError(f"unexpected hint encoder layout: conv indices {[i for i, _ in convs]}")
        outs = [s[0] for _, s in convs]
        hint_widths = tuple(outs[0:n - 1:2])
        if outs[-1] != unet.model_channels or any(outs[2 * j + 1] != hint_widths[j] for j in range(len(hint_widths) - 1)):
            raise ValueError(f"unexpected hint encoder widths {outs}")
        return cls(unet=unet, hint_channels=convs[0][1][1], hint_widths=hint_widths)


def hint_encoder(config: ControlNetConfig) -> nn.Sequential:
    """ldm's input_hint_block: 3x3 convs with SiLU between them, three of them stride 2 (SiLUs keep the
    checkpoint's even conv indices)."""
    widths, layers = config.hint_widths, []

    def conv(c_in: int, c_out: int, stride: int = 1) -> None:
        if layers:
            layers.append(nn.SiLU())
        layers.append(Conv2d(c_in, c_out, 3, stride=stride, padding=1))

    conv(config.hint_channels, widths[0])
    for a, b in zip(widths, widths[1:]):
        conv(a, a)
        conv(a, b, stride=2)
    conv(widths[-1], config.unet.model_channels)
    return nn.Sequential(*layers)


class ControlNet(nn.Module):
    """ControlNet(x, hint, t, context, y=None) -> residuals for the UNet's skips and middle block (cldm.ControlNet);
    y is SDXL's ADM vector, the one the UNet gets.

    `kernels` ("torch", "triton" or "auto") picks GroupNorm and attention like the UNet's.
    """

    def __init__(self, config: ControlNetConfig | None = None, kernels: str = "torch"):
        super().__init__()
        config = config or ControlNetConfig()
        self.config, self.kernels = config, check_backend(kernels)
        cfg = config.unet
        mc, emb_dim = cfg.model_channels, cfg.model_channels * 4

        def transformer(ch: int, depth: int) -> SpatialTransformer:
            heads, d_head = cfg.heads_at(ch)
            return SpatialTransformer(ch, heads, d_head, depth, cfg.context_dim,
                                      use_linear=cfg.use_linear_in_transformer, kernels=kernels)

        def zero_conv(ch: int) -> TimestepEmbedSequential:
            return TimestepEmbedSequential(Conv2d(ch, ch, 1))

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.adm_in_channels is not None:  # sgm's nested Sequential: keys label_emb.0.0 / label_emb.0.2
            self.label_emb = nn.Sequential(nn.Sequential(
                nn.Linear(cfg.adm_in_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)))
        self.input_hint_block = hint_encoder(config)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(Conv2d(cfg.in_channels, mc, 3, padding=1))])
        self.zero_convs = nn.ModuleList([zero_conv(mc)])
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, kernels=kernels)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch, cfg.depth_at(level)))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                self.zero_convs.append(zero_conv(ch))
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                self.zero_convs.append(zero_conv(ch))
                ds *= 2
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, emb_dim, kernels=kernels),
                                                    transformer(ch, cfg.middle_depth),
                                                    ResBlock(ch, emb_dim, kernels=kernels))
        self.middle_block_out = zero_conv(ch)

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x [N,C,h,w] (the UNet input), hint [1 or N, hint_channels, 8h, 8w], timesteps [N] (or scalar),
        context [N,L,context_dim], y [N,adm_in_channels] (SDXL only) -> `num_outputs` residuals in x's dtype (input
        blocks 0.., then the middle).

        Like sd-webui-controlnet, everything is cast to the ControlNet's dtype first, so in fp16 the timesteps are
        rounded to fp16 (the UNet itself embeds the unrounded fp32 t).
        """
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.unet.in_channels:
            raise ValueError(f"ControlNet input must be [N,{cfg.unet.in_channels},h,w], got {list(x.shape)}")
        n, d = x.shape[0], cfg.hint_downsample
        want = (cfg.hint_channels, x.shape[2] * d, x.shape[3] * d)
        if hint.ndim != 4 or tuple(hint.shape[1:]) != want or hint.shape[0] not in (1, n):
            raise ValueError(f"hint must be [1 or {n},{want[0]},{want[1]},{want[2]}] for latents {list(x.shape)}, "
                             f"got {list(hint.shape)}")
        if context.ndim != 3 or context.shape[0] != n or context.shape[2] != cfg.unet.context_dim:
            raise ValueError(f"context must be [N={n},L,{cfg.unet.context_dim}], got {list(context.shape)}")
        adm = cfg.unet.adm_in_channels
        if adm is None and y is not None:
            raise ValueError("this ControlNet has no ADM (label_emb) input; y must be None")
        if adm is not None and (y is None or tuple(y.shape) != (n, adm)):
            raise ValueError(f"this SDXL ControlNet needs the ADM vector y [N={n},{adm}], "
                             f"got {None if y is None else list(y.shape)}")
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0 or timesteps.shape == (1,):
            timesteps = timesteps.reshape(1).expand(n)
        if timesteps.shape != (n,):
            raise ValueError(f"timesteps must be a scalar or [N={n}], got {list(timesteps.shape)}")

        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps.to(dtype), cfg.unet.model_channels).to(dtype))
        if y is not None:
            emb = emb + self.label_emb(y.to(dtype))
        guided = self.input_hint_block(hint.to(dtype))  # [1 or N, model_channels, h, w]
        h, context = x.to(dtype), context.to(dtype)
        outs = []
        for k, (block, zero) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb, context)
            if k == 0:
                h = h + guided
            outs.append(zero(h, emb, context))
        h = self.middle_block(h, emb, context)
        outs.append(self.middle_block_out(h, emb, context))
        return [o.to(x.dtype) for o in outs]

