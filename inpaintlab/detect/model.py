"""YOLOv8 detection and segmentation networks (n/s/m/l/x), with module names equal to Ultralytics' checkpoint keys.

Follows the Ultralytics YOLOv8 architecture (``yolov8.yaml`` / ``yolov8-seg.yaml``): a CSP-Darknet backbone of
Conv and C2f blocks with SPPF, a PAN neck, and a decoupled head (box distributions decoded by DFL, class logits,
and for segmentation 32 mask coefficients plus a Proto network). Layers sit in ``self.model`` at the yaml's indices,
so ``model.0.conv.weight`` … ``model.22.dfl.conv.weight`` load with a strict ``load_state_dict``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

REG_MAX = 16  # bins of the box-side distribution (DFL)
N_MASKS = 32  # mask coefficients / prototypes of the Segment head
STRIDES = (8, 16, 32)
# yaml scales: (depth, width, max channels)
SCALES = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768), "l": (1.00, 1.00, 512),
          "x": (1.00, 1.25, 512)}


def _divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


@dataclass(frozen=True)
class YOLOConfig:
    """Architecture of one YOLOv8 file: its scale, class count and head type."""
    scale: str = "n"
    nc: int = 80
    segment: bool = False
    sppf_act: bool = True  # SPPF.cv1 has SiLU in v8 files; a file whose cv1.act is Identity turns it off

    def channels(self, c: int) -> int:
        _, width, max_ch = SCALES[self.scale]
        return _divisible(min(c, max_ch) * width)

    def repeats(self, n: int) -> int:
        return max(round(n * SCALES[self.scale][0]), 1)

    @property
    def proto_channels(self) -> int:
        return self.channels(256)  # yolov8-seg.yaml: Segment[nc, 32, 256]


class Conv(nn.Module):
    """Conv2d (no bias, 'same' padding) → BatchNorm2d(eps 1e-3) → SiLU; ``fuse()`` folds the BN into the conv."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            return self.act(self.conv(x))
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv as Ultralytics does before predicting (same torch fusion formula)."""
        if self.bn is None:
            return
        bn = self.bn
        w, b = fuse_conv_bn_weights(self.conv.weight, None, bn.running_mean, bn.running_var, bn.eps, bn.weight,
                                    bn.bias)
        conv = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride,
                         self.conv.padding, bias=True).to(w.device, w.dtype)
        conv.weight, conv.bias = w, b
        self.conv, self.bn = conv.requires_grad_(False), None


class Bottleneck(nn.Module):
    """Two 3×3 Convs with an optional residual (C2f's inner block, expansion 1.0)."""

    def __init__(self, c: int, shortcut: bool):
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with two convs: split cv1's output in two, chain n Bottlenecks on the second half, concat all."""

    def __init__(self, c1: int, c2: int, n: int, shortcut: bool):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5×5 max-pools, the four maps concatenated."""

    def __init__(self, c1: int, c2: int, act: bool = True):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, act=act)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


class DFL(nn.Module):
    """Expected value of each box side's 16-bin softmax, as a fixed 1×1 conv with weights 0…15 (kept as a key)."""

    def __init__(self, c1: int = REG_MAX):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # B×(4·16)×A → B×4×A
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class Proto(nn.Module):
    """Mask prototypes at 1/4 of the input size: Conv 3×3 → ConvTranspose 2×2 s2 → Conv 3×3 → Conv 1×1 to 32."""

    def __init__(self, c1: int, c_: int, c2: int = N_MASKS):
        super().__init__()
        self.cv1 = Conv(c1, c_, 3)
        self.upsample = nn.ConvTranspose2d(c_, c_, 2, 2, 0, bias=True)
        self.cv2 = Conv(c_, c_, 3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


def _branch(c1: int, c: int, out: int) -> nn.Sequential:
    return nn.Sequential(Conv(c1, c, 3), Conv(c, c, 3), nn.Conv2d(c, out, 1))


def make_anchors(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (x+0.5, y+0.5) in grid units, levels P3→P5 concatenated row-major (A×2), and each one's stride."""
    points, strides = [], []
    for feat, stride in zip(feats, STRIDES):
        h, w = feat.shape[2:]
        sx = torch.arange(w, dtype=feat.dtype, device=feat.device) + 0.5
        sy = torch.arange(h, dtype=feat.dtype, device=feat.device) + 0.5
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        strides.append(torch.full((h * w, 1), float(stride), dtype=feat.dtype, device=feat.device))
    return torch.cat(points), torch.cat(strides)


class Detect(nn.Module):
    """Decoupled head: per level a box branch (cv2, 64 distribution logits) and a class branch (cv3, nc logits)."""

    def __init__(self, nc: int, ch: tuple[int, ...]):
        super().__init__()
        self.nc = nc
        c2, c3 = max(16, ch[0] // 4, REG_MAX * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(_branch(c, c2, 4 * REG_MAX) for c in ch)
        self.cv3 = nn.ModuleList(_branch(c, c3, nc) for c in ch)
        self.dfl = DFL(REG_MAX)

    def decode(self, x: list[torch.Tensor]) -> torch.Tensor:
        """B×(4+nc)×A: boxes (cx, cy, w, h) in input pixels, then sigmoid class scores."""
        b = x[0].shape[0]
        box = torch.cat([self.cv2[i](xi).view(b, 4 * REG_MAX, -1) for i, xi in enumerate(x)], -1)
        cls = torch.cat([self.cv3[i](xi).view(b, self.nc, -1) for i, xi in enumerate(x)], -1)
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(x))
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = anchors.unsqueeze(0) - lt, anchors.unsqueeze(0) + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return self.decode(x)


class Segment(Detect):
    """Detect plus a mask-coefficient branch (cv4, 32 per anchor) and the Proto network on P3."""

    def __init__(self, nc: int, npr: int, ch: tuple[int, ...]):
        super().__init__(nc, ch)
        self.proto = Proto(ch[0], npr, N_MASKS)
        c4 = max(ch[0] // 4, N_MASKS)
        self.cv4 = nn.ModuleList(_branch(c, c4, N_MASKS) for c in ch)

    def forward(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        b = x[0].shape[0]
        coef = torch.cat([self.cv4[i](xi).view(b, N_MASKS, -1) for i, xi in enumerate(x)], 2)
        return torch.cat((self.decode(x), coef), 1), self.proto(x[0])


# (from, module) of layers 10-21 (the PAN neck); -1 = the previous layer
_NECK_CONCATS = {11: 6, 14: 4, 17: 12, 20: 9}
_SAVED = {4, 6, 9, 12, 15, 18, 21}


class YOLOv8(nn.Module):
    """YOLOv8 detect or segment network; ``forward`` returns the eval-mode head output before NMS.

    Detect: B×(4+nc)×A (``cx, cy, w, h`` in letterboxed-input pixels, then class scores). Segment: the same with 32
    mask coefficients appended, and the prototypes B×32×H/4×W/4.
    """

    def __init__(self, config: YOLOConfig = YOLOConfig()):
        super().__init__()
        self.config = config
        ch, rep = config.channels, config.repeats
        layers: list[nn.Module] = [
            Conv(3, ch(64), 3, 2), Conv(ch(64), ch(128), 3, 2), C2f(ch(128), ch(128), rep(3), True),
            Conv(ch(128), ch(256), 3, 2), C2f(ch(256), ch(256), rep(6), True),
            Conv(ch(256), ch(512), 3, 2), C2f(ch(512), ch(512), rep(6), True),
            Conv(ch(512), ch(1024), 3, 2), C2f(ch(1024), ch(1024), rep(3), True),
            SPPF(ch(1024), ch(1024), act=config.sppf_act),
            nn.Upsample(None, 2, "nearest"), Concat(), C2f(ch(1024) + ch(512), ch(512), rep(3), False),
            nn.Upsample(None, 2, "nearest"), Concat(), C2f(ch(512) + ch(256), ch(256), rep(3), False),
            Conv(ch(256), ch(256), 3, 2), Concat(), C2f(ch(256) + ch(512), ch(512), rep(3), False),
            Conv(ch(512), ch(512), 3, 2), Concat(), C2f(ch(512) + ch(1024), ch(1024), rep(3), False),
        ]
        heads = (ch(256), ch(512), ch(1024))
        layers.append(Segment(config.nc, config.proto_channels, heads) if config.segment else Detect(config.nc, heads))
        self.model = nn.Sequential(*layers)
        self.register_buffer("stride", torch.tensor(STRIDES, dtype=torch.float32), persistent=False)

    @property
    def head(self) -> Detect:
        return self.model[-1]

    def forward(self, x: torch.Tensor):
        """x: B×3×H×W in [0, 1], H and W multiples of 32."""
        saved: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.model[:-1]):
            x = layer([x, saved[_NECK_CONCATS[i]]]) if i in _NECK_CONCATS else layer(x)
            if i in _SAVED:
                saved[i] = x
        return self.head([saved[15], saved[18], saved[21]])

    def fuse(self) -> YOLOv8:
        """Fold every BatchNorm into its conv (Ultralytics' predict does this); returns self."""
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse()
        return self
