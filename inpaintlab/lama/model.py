"""The big-LaMa generator: LaMa's `FFCResNetGenerator` (fast Fourier convolutions), named after its state-dict keys.

`model.N` is the N-th entry of the generator's Sequential (ReflectionPad, 4 FFC conv stages, 18 FFC residual blocks,
the local/global concatenation, 3 transposed-conv stages, ReflectionPad, the output conv, Sigmoid). Each FFC splits
its channels into a local part (ordinary 3x3 convs) and a global part (a spectral transform: 1x1 convs around a
Fourier unit that convolves the real FFT of the map). Until the last downsampling stage the global part is empty
(LaMa's `ratio_gout=0`); from there on 3/4 of the channels are global. Input: RGB with the hole zeroed + the mask,
sizes divisible by 8; output RGB in [0, 1].
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import InpaintlabError


class LamaError(InpaintlabError):
    """A LaMa file, model or input that cannot be used; the message names the problem in one line."""


@dataclasses.dataclass(frozen=True)
class LamaConfig:
    """big-lama's generator config (sd-webui-controlnet `annotator/lama/config.yaml`); the test size shrinks it."""

    input_nc: int = 4
    output_nc: int = 3
    ngf: int = 64
    n_downsampling: int = 3
    n_blocks: int = 18
    ratio_global: float = 0.75  # share of global channels in the last downsampling stage and the residual blocks


BIG_LAMA = LamaConfig()
TINY_LAMA = LamaConfig(ngf=8, n_blocks=2)


class FourierUnit(nn.Module):
    """rfft2 (ortho) -> [re, im] interleaved per channel -> 1x1 conv + BN + ReLU -> complex -> irfft2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")  # the FFT runs in fp32 at any model dtype
        f = torch.stack((f.real, f.imag), dim=2).reshape(b, 2 * c, h, w // 2 + 1)  # channels c0.re, c0.im, c1.re...
        f = self.relu(self.bn(self.conv_layer(f.to(x.dtype)))).float()
        f = f.reshape(b, c, 2, h, w // 2 + 1)
        out = torch.fft.irfftn(torch.complex(f[:, :, 0], f[:, :, 1]), s=(h, w), dim=(-2, -1), norm="ortho")
        return out.to(x.dtype)


class SpectralTransform(nn.Module):
    """conv1 (1x1 -> half width, BN, ReLU); conv2(y + FourierUnit(y)) back to full width (stride 1, no LFU)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = out_channels // 2
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, half, kernel_size=1, bias=False), nn.BatchNorm2d(half),
                                   nn.ReLU())
        self.fu = FourierUnit(half)
        self.conv2 = nn.Conv2d(half, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        return self.conv2(y + self.fu(y))


Pair = tuple[torch.Tensor, torch.Tensor | None]


class FFC(nn.Module):
    """Local/global convolution: out_l = l2l(l) + g2l(g), out_g = l2g(l) + g2g(g); absent parts are None."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
                 stride: int = 1, padding: int = 0):
        super().__init__()
        in_g, out_g = int(in_channels * ratio_gin), int(out_channels * ratio_gout)
        in_l, out_l = in_channels - in_g, out_channels - out_g

        def conv(n_in, n_out):
            if n_in == 0 or n_out == 0:
                return None
            return nn.Conv2d(n_in, n_out, kernel_size, stride, padding, bias=False, padding_mode="reflect")

        self.convl2l, self.convl2g, self.convg2l = conv(in_l, out_l), conv(in_l, out_g), conv(in_g, out_l)
        self.convg2g = SpectralTransform(in_g, out_g) if in_g and out_g else None

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = x
        out_l = out_g = None
        if self.convl2l is not None:
            out_l = self.convl2l(x_l)
            if self.convg2l is not None and x_g is not None:
                out_l = out_l + self.convg2l(x_g)
        if self.convl2g is not None:
            out_g = self.convl2g(x_l)
            if self.convg2g is not None and x_g is not None:
                out_g = out_g + self.convg2g(x_g)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):  # noqa: N801  LaMa's class name
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
                 stride: int = 1, padding: int = 0):
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding)
        out_g = int(out_channels * ratio_gout)
        self.bn_l = nn.BatchNorm2d(out_channels - out_g) if out_channels - out_g else None
        self.bn_g = nn.BatchNorm2d(out_g) if out_g else None
        self.act = nn.ReLU()

    def forward(self, x: Pair) -> Pair:
        x_l, x_g = self.ffc(x)
        if x_l is not None:
            x_l = self.act(self.bn_l(x_l))
        if x_g is not None:
            x_g = self.act(self.bn_g(x_g))
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.conv1 = FFC_BN_ACT(dim, dim, 3, ratio, ratio, padding=1)
        self.conv2 = FFC_BN_ACT(dim, dim, 3, ratio, ratio, padding=1)

    def forward(self, x: Pair) -> Pair:
        y_l, y_g = self.conv2(self.conv1(x))
        return x[0] + y_l, x[1] + y_g


class ConcatTupleLayer(nn.Module):
    def forward(self, x: Pair) -> torch.Tensor:
        return x[0] if x[1] is None else torch.cat(x, dim=1)


class FFCResNetGenerator(nn.Module):
    """[B, 4, H, W] (masked RGB in [0,1] + mask) -> [B, 3, H, W] in [0, 1]; H and W must be multiples of 8."""

    def __init__(self, config: LamaConfig = BIG_LAMA):
        super().__init__()
        self.config = config
        c, ngf = config, config.ngf
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), FFC_BN_ACT(c.input_nc, ngf, 7, 0, 0)]
        for i in range(c.n_downsampling):
            ratio_out = c.ratio_global if i == c.n_downsampling - 1 else 0
            layers.append(FFC_BN_ACT(ngf * 2 ** i, ngf * 2 ** (i + 1), 3, 0, ratio_out, stride=2, padding=1))
        width = ngf * 2 ** c.n_downsampling
        layers += [FFCResnetBlock(width, c.ratio_global) for _ in range(c.n_blocks)]
        layers.append(ConcatTupleLayer())
        for i in range(c.n_downsampling):
            n = ngf * 2 ** (c.n_downsampling - i)
            layers += [nn.ConvTranspose2d(n, n // 2, kernel_size=3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(n // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c.output_nc, kernel_size=7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)
        self.multiple = 2 ** c.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.input_nc:
            raise LamaError(f"LaMa input must be [B, {self.config.input_nc}, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise LamaError(f"LaMa input size {w}x{h} is not a multiple of {self.multiple}; pad it first "
                            "(inpaintlab.lama.clean pads symmetrically as the Cleaner does)")
        y: torch.Tensor | Pair = x
        for layer in self.model:
            if isinstance(layer, (FFC_BN_ACT, FFCResnetBlock)):
                y = layer(y if isinstance(y, tuple) else (y, None))
            else:
                y = layer(y)
        return y

    @property
    def device(self) -> torch.device:
        return self.model[-2].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model[-2].weight.dtype
