"""SwinIR (Liang et al. 2021), with the key names of the official release files.

conv_first → residual Swin transformer blocks (RSTB: window attention with relative position bias, shifted windows
on every second block, then a conv) → LayerNorm → conv_after_body (+ skip) → one of four reconstruction heads:
"nearest+conv" (real-world SR, e.g. "SwinIR 4x"), "pixelshuffle" (classical SR), "pixelshuffledirect" (lightweight)
or none (denoising / JPEG: the output is added to the input). The input is reflect-padded to a multiple of the
window, shifted by the dataset mean and scaled by `img_range`. Files hold the buffers `relative_position_index` and,
for shifted blocks, `attn_mask` (computed for the training size `img_size`; other sizes get a fresh mask).
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

_MEAN_RGB = (0.4488, 0.4371, 0.4040)  # DIV2K mean used by every SwinIR release (applied to BGR input too)


@dataclass(frozen=True)
class SwinIRConfig:
    in_nc: int = 3
    out_nc: int = 3
    embed_dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    window: int = 8
    mlp_ratio: float = 2.0
    img_size: int = 64
    upsampler: str = "pixelshuffle"   # "nearest+conv", "pixelshuffle", "pixelshuffledirect" or ""
    upscale: int = 4
    resi_connection: str = "1conv"    # or "3conv"
    num_feat: int = 64
    masks_in_file: bool = True

    @property
    def scale(self) -> int:
        return self.upscale

    @property
    def img_range(self) -> float:
        return 255.0 if self.window == 7 else 1.0  # the JPEG models (window 7) work in [0, 255]

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> SwinIRConfig:
        if "conv_first.1.weight" in sd:
            raise UpscalerError("SwinIR with a pixel-unshuffled input (conv_first.1) is not supported")
        b0 = "layers.0.residual_group.blocks.0."
        if b0 + "attn.relative_position_index" not in sd or "conv_first.weight" not in sd:
            raise UpscalerError("not a SwinIR state dict (no conv_first / relative_position_index)")
        in_nc, embed_dim = sd["conv_first.weight"].shape[1], sd["conv_first.weight"].shape[0]
        out_nc = sd["conv_last.weight"].shape[0] if "conv_last.weight" in sd else in_nc
        window = math.isqrt(sd[b0 + "attn.relative_position_index"].shape[0])
        mask = sd.get("layers.0.residual_group.blocks.1.attn_mask")
        img_size = math.isqrt(mask.shape[0]) * window if mask is not None else 64
        n_layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k)))
        depths, heads = [], []
        for i in range(n_layers):
            p = f"layers.{i}.residual_group.blocks."
            depths.append(1 + max(int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"(\d+)\.", k))))
            heads.append(sd[p + "0.attn.relative_position_bias_table"].shape[1])
        num_feat, upscale = 64, 1
        if "conv_before_upsample.0.weight" in sd:
            num_feat = sd["conv_before_upsample.0.weight"].shape[0]
            if "conv_up1.weight" in sd:
                upsampler = "nearest+conv"
                upscale = 2 ** len([k for k in sd if re.fullmatch(r"conv_up\d+\.weight", k)])
            else:
                upsampler = "pixelshuffle"
                for k in sorted(k for k in sd if re.fullmatch(r"upsample\.\d+\.weight", k)):
                    upscale *= math.isqrt(sd[k].shape[0] // num_feat)
        elif "upsample.0.weight" in sd:
            upsampler = "pixelshuffledirect"
            upscale = math.isqrt(sd["upsample.0.weight"].shape[0] // out_nc)
        else:
            upsampler = ""
        return cls(in_nc=in_nc, out_nc=out_nc, embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(heads),
                   window=window, mlp_ratio=sd[b0 + "mlp.fc1.bias"].shape[0] / embed_dim, img_size=img_size,
                   upsampler=upsampler, upscale=upscale,
                   resi_connection="1conv" if "conv_after_body.weight" in sd else "3conv", num_feat=num_feat,
                   masks_in_file=mask is not None)


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) → (B·nW, w·w, C), windows in row-major order."""
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    return x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(nW, w², w²) additive mask: −100 between tokens that came from different regions before the cyclic shift."""
    label = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    n = 0
    for hs in cuts:
        for ws in cuts:
            label[:, hs, ws, :] = n
            n += 1
    lw = _windows(label, window).squeeze(-1)
    diff = lw.unsqueeze(1) - lw.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()])
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    def __init__(self, cfg: SwinIRConfig, heads: int, shift: int):
        super().__init__()
        window = cfg.window
        if cfg.img_size <= window:  # as in SwinIR: a training size within one window means no shift
            shift, window = 0, cfg.img_size
        self.window, self.shift, self.img_size = window, shift, cfg.img_size
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        if shift > 0:
            self.register_buffer("attn_mask", shift_mask(cfg.img_size, cfg.img_size, window, shift),
                                 persistent=cfg.masks_in_file)
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            if size == (self.img_size, self.img_size):
                mask = self.attn_mask
            else:
                mask = shift_mask(h, w, self.window, self.shift).to(x)
        y = _unwindows(self.attn(_windows(y, self.window), mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


def _resi_conv(dim: int, kind: str) -> nn.Module:
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, padding=1)
    return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(dim // 4, dim // 4, 1),
                         nn.LeakyReLU(0.2), nn.Conv2d(dim // 4, dim, 3, padding=1))


class _Group(nn.Module):
    """The `residual_group` of an RSTB (key level kept: `layers.i.residual_group.blocks.j`)."""

    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(SwinTransformerBlock(cfg, heads, 0 if j % 2 == 0 else cfg.window // 2)
                                    for j in range(depth))


class RSTB(nn.Module):
    def __init__(self, cfg: SwinIRConfig, depth: int, heads: int):
        super().__init__()
        self.residual_group = _Group(cfg, depth, heads)
        self.conv = _resi_conv(cfg.embed_dim, cfg.resi_connection)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = x
        for block in self.residual_group.blocks:
            y = block(y, size)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return y.flatten(2).transpose(1, 2) + x


class _PatchEmbed(nn.Module):
    """Holds only the patch LayerNorm (`patch_embed.norm`); patch size is 1 in every SwinIR release."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)


class SwinIR(nn.Module):
    def __init__(self, cfg: SwinIRConfig):
        super().__init__()
        self.cfg = c = cfg
        dim = c.embed_dim
        mean = _MEAN_RGB if c.in_nc == 3 else (0.0,) * c.in_nc
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(c.in_nc, dim, 3, padding=1)
        self.patch_embed = _PatchEmbed(dim)
        self.layers = nn.ModuleList(RSTB(c, d, h) for d, h in zip(c.depths, c.num_heads))
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = _resi_conv(dim, c.resi_connection)
        if c.upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, c.num_feat, 3, padding=1), nn.LeakyReLU(0.01))
        if c.upsampler == "pixelshuffle":
            ups: list[nn.Module] = []
            if c.upscale & (c.upscale - 1) == 0:
                for _ in range(int(math.log2(c.upscale))):
                    ups += [nn.Conv2d(c.num_feat, 4 * c.num_feat, 3, padding=1), nn.PixelShuffle(2)]
            else:
                ups += [nn.Conv2d(c.num_feat, 9 * c.num_feat, 3, padding=1), nn.PixelShuffle(3)]
            self.upsample = nn.Sequential(*ups)
            self.conv_last = nn.Conv2d(c.num_feat, c.out_nc, 3, padding=1)
        elif c.upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(dim, c.upscale ** 2 * c.out_nc, 3, padding=1),
                                          nn.PixelShuffle(c.upscale))
        elif c.upsampler == "nearest+conv":
            for i in range(1, int(math.log2(c.upscale)) + 1):
                setattr(self, f"conv_up{i}", nn.Conv2d(c.num_feat, c.num_feat, 3, padding=1))
            self.conv_hr = nn.Conv2d(c.num_feat, c.num_feat, 3, padding=1)
            self.conv_last = nn.Conv2d(c.num_feat, c.out_nc, 3, padding=1)
        else:
            self.conv_last = nn.Conv2d(dim, c.out_nc, 3, padding=1)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            t = layer(t, (h, w))
        t = self.norm(t).transpose(1, 2).reshape(b, c, h, w)
        return self.conv_after_body(t) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % c.window, 0, -h % c.window), mode="reflect")
        x = (x - self.mean.to(x)) * c.img_range
        if c.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(self._body(self.conv_first(x)))))
        elif c.upsampler == "pixelshuffledirect":
            x = self.upsample(self._body(self.conv_first(x)))
        elif c.upsampler == "nearest+conv":
            x = self.conv_before_upsample(self._body(self.conv_first(x)))
            for i in range(1, int(math.log2(c.upscale)) + 1):
                up = getattr(self, f"conv_up{i}")
                x = F.leaky_relu(up(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
            x = self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2))
        else:
            x = x + self.conv_last(self._body(self.conv_first(x)))
        x = x / c.img_range + self.mean.to(x)
        return x[..., : h * c.upscale, : w * c.upscale]
