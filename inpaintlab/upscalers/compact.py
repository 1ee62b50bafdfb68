"""SRVGGNetCompact (Real-ESRGAN's "realesr-general-x4v3", "realesr-animevideov3"): a plain VGG-style stack.

conv → PReLU → (conv → PReLU) × num_conv → conv → PixelShuffle(scale), plus the nearest-upsampled input. Keys are
``body.<i>.weight`` / ``.bias`` in one ModuleList (PReLU weights at the odd indices), as in Real-ESRGAN's files.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UpscalerError


@dataclass(frozen=True)
class CompactConfig:
    in_nc: int = 3
    out_nc: int = 3
    num_feat: int = 64
    num_conv: int = 32
    scale: int = 4

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> CompactConfig:
        idx = [int(m.group(1)) for k in sd if (m := re.fullmatch(r"body\.(\d+)\.weight", k))]
        if not idx or "body.0.weight" not in sd:
            raise UpscalerError("not an SRVGGNetCompact state dict (no body.0.weight)")
        last = max(idx)
        in_nc, num_feat = sd["body.0.weight"].shape[1], sd["body.0.weight"].shape[0]
        out_ch = sd[f"body.{last}.weight"].shape[0]
        # Real-ESRGAN's Compact models map RGB to RGB: out_ch = in_nc · scale².
        scale = math.isqrt(out_ch // in_nc)
        if scale * scale * in_nc != out_ch:
            raise UpscalerError(f"SRVGGNetCompact: last conv has {out_ch} channels, not {in_nc}·scale²")
        return cls(in_nc=in_nc, out_nc=in_nc, num_feat=num_feat, num_conv=(last - 2) // 2, scale=scale)


class SRVGGNetCompact(nn.Module):
    def __init__(self, cfg: CompactConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg
        layers: list[nn.Module] = [nn.Conv2d(c.in_nc, c.num_feat, 3, padding=1), nn.PReLU(c.num_feat)]
        for _ in range(c.num_conv):
            layers += [nn.Conv2d(c.num_feat, c.num_feat, 3, padding=1), nn.PReLU(c.num_feat)]
        layers.append(nn.Conv2d(c.num_feat, c.out_nc * c.scale * c.scale, 3, padding=1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.cfg.scale)
        return out + F.interpolate(x, scale_factor=self.cfg.scale, mode="nearest")
