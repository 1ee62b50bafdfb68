"""Random upscaler state dicts in the real file layouts, and the spandrel oracle (test-only)."""
from __future__ import annotations

import re

import pytest
import torch

from shims import use_torchvision_shim

BUFFERS = ("relative_position_index", "attn_mask", "rpe_biases")


def spandrel():
    """spandrel 0.4.2 (A1111 pins 0.3.4; for RRDBNet, Compact and SwinIR the two compute the same)."""
    use_torchvision_shim()
    return pytest.importorskip("spandrel")


def randomise(sd: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Every parameter replaced by random values (norm weights around 1, PReLU slopes in [0, 0.5], biases and the
    relative position tables non-zero, BatchNorm running variances in [0.5, 1.5]) so that no term can hide; index
    buffers, DAT's position offsets and shift masks are kept."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if any(b in k for b in BUFFERS) or not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif v.ndim == 1 and re.search(r"norm\d?\.weight$", k):
            out[k] = 1 + 0.2 * torch.randn(v.shape, generator=g)
        elif v.ndim == 1 and re.fullmatch(r"body\.\d*[13579]\.weight", k):  # PReLU
            out[k] = 0.5 * torch.rand(v.shape, generator=g)
        elif v.ndim == 4:
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            out[k] = torch.randn(v.shape, generator=g) * (1.0 / fan_in) ** 0.5
        elif v.ndim == 2 and k.endswith("weight"):
            out[k] = torch.randn(v.shape, generator=g) * (1.0 / v.shape[1]) ** 0.5
        else:
            out[k] = 0.1 * torch.randn(v.shape, generator=g)
    return out


def rename(sd: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply the first matching (regex, replacement) rule to each key (old ESRGAN layout → new/KAIR layouts)."""
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, k)
            if n:
                out[new] = v
                break
        else:
            raise AssertionError(f"no rule for {k}")
    return out


def esrgan_layout(sd_old: dict[str, torch.Tensor], layout: str, nb: int, n_up: int) -> dict[str, torch.Tensor]:
    """Re-key an old-layout ESRGAN state dict into the BasicSR ("new") or KAIR layout, as those files spell it."""
    if layout == "old":
        return dict(sd_old)
    new = layout == "new"
    rules = [(r"^model\.0\.", "conv_first."),
             (rf"^model\.1\.sub\.{nb}\.", "conv_body." if new else "trunk_conv."),
             (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.",
              r"body.\1.rdb\2.conv\3." if new else r"RRDB_trunk.\1.RDB\2.conv\3.")]
    for i in range(1, n_up + 1):
        rules.append((rf"^model\.{3 * i}\.", f"conv_up{i}." if new else f"upconv{i}."))
    rules += [(rf"^model\.{3 * n_up + 2}\.", "conv_hr." if new else "HRconv."),
              (rf"^model\.{3 * n_up + 4}\.", "conv_last.")]
    return rename(sd_old, rules)
