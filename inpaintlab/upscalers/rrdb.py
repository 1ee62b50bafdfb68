"""RRDBNet (ESRGAN, Real-ESRGAN, BSRGAN, 4x-UltraSharp …) in each of the three key layouts found in files.

The network (Wang et al. 2018): conv → [RRDB × nb, conv] with an outer residual → per ×2 step a nearest ×2 upsample,
conv and LeakyReLU(0.2) → conv + LeakyReLU(0.2) → conv. An RRDB is three residual dense blocks (five 3×3 convs with
dense concatenation, growth `gc`, LeakyReLU 0.2 on the first four, output `x5·0.2 + x`); the RRDB returns
`out·0.2 + x`. Files come in three layouts, and the module is built with the file's own names so that a raw file loads
with a strict `load_state_dict`:

* ``old``  (original ESRGAN, 4x-UltraSharp): one ``model`` Sequential: ``model.0`` conv, ``model.1.sub.i.RDBj.convk.0``,
  ``model.1.sub.<nb>`` trunk conv, then per ×2 step ``[Upsample, conv, LeakyReLU]`` (convs at ``model.3``,
  ``model.6`` …), HR conv at ``model.<3n+2>``, last conv at ``model.<3n+4>``.
* ``new``  (BasicSR / Real-ESRGAN): ``conv_first``, ``body.i.rdbj.convk``, ``conv_body``, ``conv_upN``, ``conv_hr``,
  ``conv_last``.
* ``kair`` (BSRGAN, RealSR, KAIR's ESRGAN.pth): ``conv_first``, ``RRDB_trunk.i.RDBj.convk``, ``trunk_conv``,
  ``upconvN``, ``HRconv``, ``conv_last``.

Real-ESRGAN's ×2 and ×1 files pixel-unshuffle the input first (12 or 48 input channels for RGB); ESRGAN+ files add a
bias-free 1×1 conv per dense block (``conv1x1``).
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

_SLOPE = 0.2


@dataclass(frozen=True)
class RRDBConfig:
    layout: str = "new"          # "old", "new" or "kair": the file's key names
    in_nc: int = 3               # channels of conv_first (after pixel-unshuffle)
    out_nc: int = 3
    nf: int = 64
    nb: int = 23
    gc: int = 32
    n_up: int = 2                # ×2 upsampling steps (internal scale 2**n_up)
    plus: bool = False           # ESRGAN+ 1×1 residual convs
    shuffle: int = 1             # pixel-unshuffle factor of the input (Real-ESRGAN ×2: 2, ×1: 4)

    @property
    def scale(self) -> int:
        """Output pixels per input pixel."""
        return 2 ** self.n_up // self.shuffle

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> RRDBConfig:
        if "model.0.weight" in sd:
            layout, first, ups_re = "old", "model.0.weight", None
            block = r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight"
        elif "body.0.rdb1.conv1.weight" in sd:
            layout, first, ups_re = "new", "conv_first.weight", r"conv_up(\d+)\.weight"
            block = r"body\.(\d+)\.rdb1\.conv1\.weight"
        elif "RRDB_trunk.0.RDB1.conv1.weight" in sd:
            layout, first, ups_re = "kair", "conv_first.weight", r"upconv(\d+)\.weight"
            block = r"RRDB_trunk\.(\d+)\.RDB1\.conv1\.weight"
        else:
            raise UpscalerError("not an RRDBNet state dict (no model.0 / conv_first with RRDB blocks)")
        blocks = [int(m.group(1)) for k in sd if (m := re.fullmatch(block, k))]
        if not blocks:
            raise UpscalerError("RRDBNet state dict without RRDB blocks")
        nb = max(blocks) + 1
        if layout == "old":
            convs = [int(m.group(1)) for k in sd if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
            last = max(convs)
            n_up = (last + 1 - 5) // 3
            out_nc = sd[f"model.{last}.weight"].shape[0]
            plus = "model.1.sub.0.RDB1.conv1x1.weight" in sd
            gc = sd["model.1.sub.0.RDB1.conv1.0.weight"].shape[0]
        else:
            n_up = len([k for k in sd if re.fullmatch(ups_re, k)])
            out_nc = sd["conv_last.weight"].shape[0]
            plus = False
            rdb = "body.0.rdb1" if layout == "new" else "RRDB_trunk.0.RDB1"
            gc = sd[f"{rdb}.conv1.weight"].shape[0]
        w = sd[first]
        in_nc, nf = w.shape[1], w.shape[0]
        shuffle = 1
        if in_nc in (4 * out_nc, 16 * out_nc):
            shuffle = math.isqrt(in_nc // out_nc)
        return cls(layout=layout, in_nc=in_nc, out_nc=out_nc, nf=nf, nb=nb, gc=gc, n_up=n_up, plus=plus,
                   shuffle=shuffle)


def _conv(cin: int, cout: int, wrapped: bool) -> nn.Module:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    # The old layout wraps each dense conv in a Sequential (conv, activation): keys `convk.0.weight`.
    return nn.Sequential(conv) if wrapped else conv


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; the concatenations are written into one preallocated buffer."""

    def __init__(self, nf: int, gc: int, wrapped: bool, plus: bool):
        super().__init__()
        self.nf, self.gc = nf, gc
        for k in range(1, 6):
            setattr(self, f"conv{k}", _conv(nf + (k - 1) * gc, gc if k < 5 else nf, wrapped))
        if plus:
            self.conv1x1 = nn.Conv2d(nf, gc, 1, bias=False)
        else:
            self.conv1x1 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nf, gc = self.nf, self.gc
        buf = x.new_empty(x.shape[0], nf + 4 * gc, x.shape[2], x.shape[3])
        buf[:, :nf] = x
        convs = (self.conv1, self.conv2, self.conv3, self.conv4)
        x2 = None
        for k, conv in enumerate(convs):
            y = F.leaky_relu(conv(buf[:, : nf + k * gc]), _SLOPE, inplace=True)
            if self.conv1x1 is not None and k == 1:
                x2 = y = y + self.conv1x1(x)
            elif self.conv1x1 is not None and k == 3:
                y = y + x2
            buf[:, nf + k * gc: nf + (k + 1) * gc] = y
        return self.conv5(buf).mul_(0.2).add_(x)


class RRDB(nn.Module):
    def __init__(self, cfg: RRDBConfig):
        super().__init__()
        name = "rdb" if cfg.layout == "new" else "RDB"
        self._names = tuple(f"{name}{j}" for j in (1, 2, 3))
        for n in self._names:
            setattr(self, n, ResidualDenseBlock(cfg.nf, cfg.gc, cfg.layout == "old", cfg.plus))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for n in self._names:
            out = getattr(self, n)(out)
        return out.mul_(0.2).add_(x)


class _Shortcut(nn.Module):
    """The old layout's `model.1`: `x + sub(x)` (only `sub` holds weights)."""

    def __init__(self, sub: nn.Sequential):
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class RRDBNet(nn.Module):
    """RRDBNet with parameter names of `cfg.layout` (see the module docstring). Input and output in [0, 1]."""

    def __init__(self, cfg: RRDBConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg
        first = nn.Conv2d(c.in_nc, c.nf, 3, padding=1)
        trunk = [RRDB(c) for _ in range(c.nb)]
        trunk_conv = nn.Conv2d(c.nf, c.nf, 3, padding=1)
        ups = [nn.Conv2d(c.nf, c.nf, 3, padding=1) for _ in range(c.n_up)]
        hr = nn.Conv2d(c.nf, c.nf, 3, padding=1)
        last = nn.Conv2d(c.nf, c.out_nc, 3, padding=1)
        if c.layout == "old":
            seq: list[nn.Module] = [first, _Shortcut(nn.Sequential(*trunk, trunk_conv))]
            for up in ups:  # Upsample and LeakyReLU keep the file's indices; forward below calls the convs directly
                seq += [nn.Upsample(scale_factor=2, mode="nearest"), up, nn.LeakyReLU(_SLOPE)]
            self.model = nn.Sequential(*seq, hr, nn.LeakyReLU(_SLOPE), last)
        else:
            new = c.layout == "new"
            self.conv_first = first
            setattr(self, "body" if new else "RRDB_trunk", nn.Sequential(*trunk))
            setattr(self, "conv_body" if new else "trunk_conv", trunk_conv)
            for i, up in enumerate(ups, 1):
                setattr(self, f"conv_up{i}" if new else f"upconv{i}", up)
            setattr(self, "conv_hr" if new else "HRconv", hr)
            self.conv_last = last
        self._parts = (first, trunk, trunk_conv, ups, hr, last)  # plain references for forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, trunk, trunk_conv, ups, hr, last = self._parts
        s = self.cfg.shuffle
        h, w = x.shape[-2:]
        if s > 1:
            x = F.pad(x, (0, -w % s, 0, -h % s), mode="reflect")
            x = F.pixel_unshuffle(x, s)
        feat = first(x)
        body = feat
        for block in trunk:
            body = block(body)
        feat = feat + trunk_conv(body)
        for up in ups:
            feat = F.leaky_relu(up(F.interpolate(feat, scale_factor=2, mode="nearest")), _SLOPE, inplace=True)
        out = last(F.leaky_relu(hr(feat), _SLOPE, inplace=True))
        if s > 1:
            out = out[..., : h * self.cfg.scale, : w * self.cfg.scale]
        return out
