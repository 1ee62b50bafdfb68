"""DAT (Dual Aggregation Transformer, Chen et al. ICCV 2023) with the key names of the release files.

conv_first → residual groups (DAT blocks alternating spatial-window and channel attention, then a conv, with a skip)
→ LayerNorm → conv_after_body (+ skip) → a pixel-shuffle head ("pixelshuffle": conv + LeakyReLU(0.01), ×2 or ×3
conv/PixelShuffle steps, conv_last; or "pixelshuffledirect": one conv and PixelShuffle, DAT-light). The input is
shifted by the DIV2K mean; it needs no padding (the window attention pads internally to whole windows).

Every hyper-parameter is read from the file the way spandrel reads it, which covers the four released variants:

| variant | embed | groups × depth | heads | split | expansion | residual conv | head |
|---|---|---|---|---|---|---|---|
| DAT (A1111's "DAT x2/x3/x4") | 180 | 6 × 6 | 6 | 8 × 32 | 4 | 1conv | pixelshuffle |
| DAT-S | 180 | 6 × 6 | 6 | 8 × 16 | 2 | 1conv | pixelshuffle |
| DAT-2 | 180 | 6 × 6 | 6 | 8 × 32 | 2 | 1conv | pixelshuffle |
| DAT-light | 60 | 1 × 18 | 6 | 8 × 32 | 2 | 3conv | pixelshuffledirect |

The window split is read from the values of the `rpe_biases` buffer (its last row is (split − 1)); the training
size `img_size`, for which the files hold the shifted blocks' masks, from the first mask's shape.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .dat_blocks import DATB, AdaptiveChannelAttention, AdaptiveSpatialAttention, as_image, as_tokens
from .errors import UpscalerError
from .swinir import _MEAN_RGB, _resi_conv


@dataclass(frozen=True)
class DATConfig:
    in_nc: int = 3
    embed_dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    split: tuple[int, int] = (8, 32)
    expansion: float = 4.0
    qkv_bias: bool = True
    img_size: int = 64
    upsampler: str = "pixelshuffle"   # or "pixelshuffledirect"
    upscale: int = 2
    resi_connection: str = "1conv"    # or "3conv"
    num_feat: int = 64

    @property
    def scale(self) -> int:
        return self.upscale

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> DATConfig:
        b0 = "layers.0.blocks.0.attn."
        if "conv_first.weight" not in sd or b0 + "attns.0.rpe_biases" not in sd:
            raise UpscalerError("not a DAT state dict (no conv_first / rpe_biases)")
        embed_dim, in_nc = sd["conv_first.weight"].shape[:2]
        n_layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k)))
        depths, heads = [], []
        for i in range(n_layers):
            p = f"layers.{i}.blocks."
            depths.append(1 + max(int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"(\d+)\.", k))))
            if depths[-1] >= 2:
                heads.append(sd[p + "1.attn.temperature"].shape[0])
            else:  # a one-block group has only the spatial block, whose two branches hold half of the heads each
                heads.append(2 * sd[p + "0.attn.attns.0.pos.pos3.2.weight"].shape[0])
        num_feat = 64
        if "conv_last.weight" in sd:
            upsampler, upscale = "pixelshuffle", 1
            num_feat = sd["conv_before_upsample.0.weight"].shape[0]
            for i in range(0, 10, 2):
                w = sd.get(f"upsample.{i}.weight")
                if w is None:
                    break
                upscale *= math.isqrt(w.shape[0] // w.shape[1])
        elif "upsample.0.weight" in sd:
            upsampler = "pixelshuffledirect"
            upscale = math.isqrt(sd["upsample.0.weight"].shape[0] // in_nc)
        else:
            raise UpscalerError("DAT state dict without an upsampling head (conv_last / upsample.0)")
        masks = [v for k, v in sd.items() if k.endswith(".attn.attn_mask_0")]
        img_size = math.isqrt(masks[0].shape[0] * masks[0].shape[1]) if masks else 64
        rpe = sd[b0 + "attns.0.rpe_biases"]
        if rpe.is_meta:
            raise UpscalerError("DAT's window split is read from the rpe_biases values, which a meta tensor lacks")
        split = tuple(int(v) + 1 for v in rpe[-1])
        return cls(in_nc=in_nc, embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(heads),
                   split=split,  # type: ignore[arg-type]
                   expansion=sd["layers.0.blocks.0.ffn.fc1.weight"].shape[0] / embed_dim,
                   qkv_bias=b0 + "qkv.bias" in sd, img_size=img_size, upsampler=upsampler, upscale=upscale,
                   resi_connection="1conv" if "conv_after_body.weight" in sd else "3conv", num_feat=num_feat)


def shifted_block(group: int, block: int) -> bool:
    """DAT's rule for which spatial blocks shift their windows: blocks 2, 6, 10 … in even groups, 0, 4, 8 … in odd."""
    if group % 2 == 0:
        return block > 0 and (block - 2) % 4 == 0
    return block % 4 == 0


class ResidualGroup(nn.Module):
    def __init__(self, cfg: DATConfig, index: int):
        super().__init__()
        dim, heads, hidden = cfg.embed_dim, cfg.num_heads[index], int(cfg.embed_dim * cfg.expansion)
        blocks = []
        for j in range(cfg.depths[index]):
            if j % 2 == 0:
                attn: nn.Module = AdaptiveSpatialAttention(dim, heads, cfg.split, shifted_block(index, j),
                                                           cfg.img_size, cfg.qkv_bias)
            else:
                attn = AdaptiveChannelAttention(dim, heads, cfg.qkv_bias)
            blocks.append(DATB(attn, dim, hidden))
        self.blocks = nn.ModuleList(blocks)
        self.conv = _resi_conv(dim, cfg.resi_connection)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = x
        for block in self.blocks:
            y = block(y, h, w)
        return x + as_tokens(self.conv(as_image(y, h, w)))


def _pixelshuffle(scale: int, nf: int) -> nn.Sequential:
    if scale & (scale - 1) == 0:
        steps: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            steps += [nn.Conv2d(nf, 4 * nf, 3, padding=1), nn.PixelShuffle(2)]
        return nn.Sequential(*steps)
    if scale == 3:
        return nn.Sequential(nn.Conv2d(nf, 9 * nf, 3, padding=1), nn.PixelShuffle(3))
    raise UpscalerError(f"DAT scale {scale} is not supported (powers of 2 and 3 are)")


class DAT(nn.Module):
    """DAT with the release files' parameter names (see the module docstring). Input and output in [0, 1]."""

    def __init__(self, cfg: DATConfig):
        super().__init__()
        self.cfg = c = cfg
        dim = c.embed_dim
        mean = _MEAN_RGB if c.in_nc == 3 else (0.0,) * c.in_nc
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(c.in_nc, dim, 3, padding=1)
        # index 0 of the file's `before_RG` is a parameterless reshape; the Identity keeps the LayerNorm at 1
        self.before_RG = nn.Sequential(nn.Identity(), nn.LayerNorm(dim))
        self.layers = nn.ModuleList(ResidualGroup(c, i) for i in range(len(c.depths)))
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = _resi_conv(dim, c.resi_connection)
        if c.upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, c.num_feat, 3, padding=1), nn.LeakyReLU(0.01))
            self.upsample = _pixelshuffle(c.upscale, c.num_feat)
            self.conv_last = nn.Conv2d(c.num_feat, c.in_nc, 3, padding=1)
        else:
            self.upsample = nn.Sequential(nn.Conv2d(dim, c.upscale ** 2 * c.in_nc, 3, padding=1),
                                          nn.PixelShuffle(c.upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mean = self.mean.to(x)
        feat = self.conv_first(x - mean)
        tokens = self.before_RG[1](as_tokens(feat))
        for layer in self.layers:
            tokens = layer(tokens, h, w)
        body = as_image(self.norm(tokens), h, w)
        feat = self.conv_after_body(body) + feat
        if self.cfg.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(F.leaky_relu(self.conv_before_upsample[0](feat), 0.01)))
        else:
            out = self.upsample(feat)
        return out + mean
