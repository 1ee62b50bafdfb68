"""Hires fix between the passes, against the spec's formulas: target sizes, the six latent modes (against float64
re-derivations of torch's interpolation kernels, not against F.interpolate itself), image-mode upscaling, step counts
and the `Hires …` infotext keys written and read back.

Tolerances: latent modes 1e-5 absolute on random N(0, 1) latents (torch computes in float32).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from inpaintlab.hires import (LATENT_MODES, HiresError, HiresTarget, crop_latent, hires_from_infotext, hires_infotext,
                              second_pass_steps, target_size, upscale_decoded, upscale_latent)
from inpaintlab.infotext import parse_infotext
from inpaintlab.upscalers import resize_image


@pytest.mark.parametrize("args,expected", [
    ((512, 512, 2.0), HiresTarget(1024, 1024)),
    ((512, 512, 1.3), HiresTarget(665, 665)),                    # truncation, image floored to 664 later
    ((512, 768, 1.5, 1024, 0), HiresTarget(1024, 1536)),
    ((512, 768, 2.0, 0, 1000), HiresTarget(666, 1000)),
    ((512, 768, 2.0, 1024, 1024), HiresTarget(1024, 1536, 0, 64)),   # cover, then crop 64 latent rows
    ((768, 512, 2.0, 1000, 1000), HiresTarget(1500, 1000, 62, 0)),
])
def test_target_size(args, expected):
    assert target_size(*args) == expected


def test_target_image_size_and_crop():
    t = target_size(512, 512, 1.3)
    assert t.latent_size == (83, 83) and t.image_size == (664, 664)
    t = target_size(768, 512, 2.0, 1000, 1000)
    lat = torch.arange(1 * 1 * 125 * 187, dtype=torch.float32).view(1, 1, 125, 187)
    out = crop_latent(lat, t)
    assert out.shape[-2:] == (125, 125) and t.latent_size == (125, 125)
    assert torch.equal(out, lat[..., :, 31:187 - 31])
    with pytest.raises(HiresError, match="hr_scale"):
        target_size(512, 512, 0)


def _weights_linear(n_in, n_out):
    w = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        w[d, i0] += 1 - lam
        w[d, i1] += lam
    return w


def _cubic(x, a):
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _weights_cubic(n_in, n_out):
    """Keys a = −0.75, source index not clamped, taps clamped to the border."""
    w = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = (d + 0.5) * n_in / n_out - 0.5
        i0 = math.floor(src)
        t = src - i0
        for k in range(-1, 3):
            w[d, min(max(i0 + k, 0), n_in - 1)] += _cubic(k - t, -0.75)
    return w


def _weights_aa(n_in, n_out, interp_size, kernel):
    """Pillow-style antialiased weights (upscaling: support interp_size/2, window clipped, renormalised)."""
    scale = n_in / n_out
    support = interp_size / 2 * (scale if scale >= 1 else 1.0)
    inv = 1 / scale if scale >= 1 else 1.0
    w = np.zeros((n_out, n_in))
    for d in range(n_out):
        center = scale * (d + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        ws = np.array([kernel((j - center + 0.5) * inv) for j in range(lo, hi)])
        w[d, lo:hi] = ws / ws.sum()
    return w


def _weights_nearest(n_in, n_out, exact):
    w = np.zeros((n_out, n_in))
    for d in range(n_out):
        w[d, min(int(math.floor((d + (0.5 if exact else 0.0)) * n_in / n_out)), n_in - 1)] = 1
    return w


def _reference(x, mode, size):
    h, w = x.shape[-2:]
    oh, ow = size
    interp, aa = LATENT_MODES[mode]
    if interp == "bilinear":
        wy, wx = (_weights_aa(h, oh, 2, lambda v: max(0.0, 1 - abs(v))), _weights_aa(w, ow, 2, lambda v: max(0.0, 1 - abs(v)))) \
            if aa else (_weights_linear(h, oh), _weights_linear(w, ow))
    elif interp == "bicubic":
        wy, wx = (_weights_aa(h, oh, 4, lambda v: _cubic(v, -0.5)), _weights_aa(w, ow, 4, lambda v: _cubic(v, -0.5))) \
            if aa else (_weights_cubic(h, oh), _weights_cubic(w, ow))
    else:
        exact = interp == "nearest-exact"
        wy, wx = _weights_nearest(h, oh, exact), _weights_nearest(w, ow, exact)
    return np.einsum("yh,bchw,xw->bcyx", wy, x.double().numpy(), wx)


@pytest.mark.parametrize("mode", list(LATENT_MODES))
def test_latent_modes_match_float64_kernels(mode):
    x = torch.randn(2, 4, 11, 13, generator=torch.Generator().manual_seed(0))
    for target in (HiresTarget(176, 208), HiresTarget(136, 160), HiresTarget(104, 88)):  # ×2, ×1.5-ish, ×1
        got = upscale_latent(x, mode, target)
        ref = _reference(x, mode, (target.to_y // 8, target.to_x // 8))
        assert got.shape == ref.shape
        assert np.abs(got.double().numpy() - ref).max() <= 1e-5, mode
    assert torch.equal(upscale_latent(x, mode, HiresTarget(104, 88)), x)  # factor 1 is an exact copy


def test_bilinear_with_and_without_antialias_agree_when_upscaling():
    x = torch.randn(1, 4, 9, 10, generator=torch.Generator().manual_seed(1))
    t = HiresTarget(150, 130)
    assert torch.allclose(upscale_latent(x, "Latent", t), upscale_latent(x, "Latent (antialiased)", t), atol=1e-6)
    with pytest.raises(HiresError, match="not a latent upscale mode"):
        upscale_latent(x, "Lanczos", t)


def test_upscale_decoded_truncates_and_resizes_per_image():
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(2)) * 2.2 - 1.1   # also outside [-1, 1]
    t = target_size(24, 16, 1.7)
    got = upscale_decoded(x, t, "Lanczos")
    assert got.shape == (2, 3, t.to_y, t.to_x)
    for i in range(2):
        arr = np.floor(np.clip((x[i].double().numpy() + 1) / 2, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        ref = np.asarray(resize_image(Image.fromarray(arr), t.to_x, t.to_y, "Lanczos"), dtype=np.float64) / 255
        assert np.abs(got[i].permute(1, 2, 0).double().numpy() - ref).max() <= 1e-7


def test_second_pass_steps():
    assert second_pass_steps(20, 0, 0.7) == (20, 28)
    assert second_pass_steps(20, 10, 0.5) == (10, 20)
    assert second_pass_steps(20, 0, 1.0) == (20, 20)      # min(1.0, 0.999): int(20.02) = 20
    assert second_pass_steps(20, 0, 0.0) == (20, 0)


def test_infotext_keys_order_and_read_back():
    s = dict(denoising_strength=0.7, hr_scale=2, hr_upscaler="Latent", prompt="a cat", negative_prompt="",
             hr_prompt="a cat, detailed", hr_negative_prompt="", hr_second_pass_steps=10, hr_sampler="Euler a",
             hr_cfg=5.0)
    keys = hires_infotext(s, sampler="DPM++ 2M")
    assert list(keys) == ["Denoising strength", "Hires sampler", "Hires prompt", "Hires upscale", "Hires steps",
                          "Hires upscaler", "Hires CFG Scale"]
    line = ", ".join(f"{k}: {v}" if not any(c in str(v) for c in ",:\n") else f'{k}: "{v}"' for k, v in keys.items())
    fields = parse_infotext(f"a cat\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 64x64, {line}")
    back = hires_from_infotext(fields)
    assert back == dict(enable_hr=True, denoising_strength=0.7, hr_prompt="a cat, detailed", hr_negative_prompt="",
                        hr_scale=2.0, hr_upscaler="Latent", hr_second_pass_steps=10, hr_sampler="Euler a", hr_cfg=5.0)
    resized = hires_infotext(dict(denoising_strength=0.5, hr_resize_x=1024, hr_resize_y=0))
    assert resized == {"Denoising strength": 0.5, "Hires resize": "1024x0"}
    assert hires_from_infotext({"Denoising strength": "0.5", "Hires resize": "1024x0"})["hr_resize_x"] == 1024
    assert hires_from_infotext({"Steps": "20"}) == {"enable_hr": False}
