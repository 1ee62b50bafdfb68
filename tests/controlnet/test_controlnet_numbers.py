"""Control-mode scales, guidance windows, the hint protocol and the inpaint_only arithmetic, against the
behaviour's worked numbers and float64 re-derivations."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from inpaintlab.controlnet import preprocess as pp
from inpaintlab.controlnet.inject import (SD1_SCHEDULE, active_steps, check_control_mode, control_scales,
                                          guidance_active, restore_eps)


def test_soft_injection_scales_worked_numbers():
    published = [0.09941, 0.12050, 0.14606, 0.17705, 0.21460, 0.26012, 0.31530, 0.38218, 0.46325, 0.56152,
                 0.68062, 0.825, 1.0]
    for mode in ("My prompt is more important", "ControlNet is more important", "prompt", 2):
        scales = control_scales(1.0, mode)
        assert scales == pytest.approx(published, abs=5e-6)
        assert scales == [0.825 ** (12 - i) for i in range(13)]
    assert control_scales(0.7, "Balanced") == [0.7] * 13
    assert control_scales(1.5, "prompt")[0] == 1.5 * 0.825 ** 12
    # diffusers' guess mode uses logspace(-1, 0, 13) instead: 0.1 .. 1.0, not the same numbers.
    guess = torch.logspace(-1, 0, 13).tolist()
    assert max(abs(a - b) for a, b in zip(guess, control_scales(1.0, "prompt"))) > 5e-4
    with pytest.raises(ValueError, match="unknown control mode"):
        check_control_mode("louder")


def _diffusers_keep(steps, start, end):
    return [not (i / steps < start or (i + 1) / steps > end) for i in range(steps)]


def test_guidance_window_worked_example():
    """20 steps, start 0.2, end 0.8: A1111 acts at steps 5-17 (one step late); diffusers would use 4-15."""
    ours = active_steps(20, 0.2, 0.8)
    assert [i for i, a in enumerate(ours) if a] == list(range(5, 18))
    assert [i for i, a in enumerate(_diffusers_keep(20, 0.2, 0.8)) if a] == list(range(4, 16))
    assert all(active_steps(20, 0.0, 1.0))
    # Step 0 and step 1 both see counter 0: start > 0 skips both.
    assert active_steps(10, 0.1, 1.0)[:3] == [False, False, True]
    # end 0 still acts on the first two steps (counter 0 passes pct <= 0).
    assert active_steps(10, 0.0, 0.0) == [True, True] + [False] * 8
    assert guidance_active(16, 20, 0.2, 0.8) and not guidance_active(17, 20, 0.2, 0.8)


@pytest.mark.parametrize("steps,start,end", [(20, 0.2, 0.8), (16, 0.25, 0.6), (7, 0.0, 0.5), (30, 0.35, 1.0)])
def test_guidance_window_rederived(steps, start, end):
    """Exact rational re-derivation: step i acts iff start <= max(i-1,0)/steps <= end."""
    from fractions import Fraction

    s, e = Fraction(start).limit_denominator(1000), Fraction(end).limit_denominator(1000)
    expected = [s <= Fraction(max(i - 1, 0), steps) <= e for i in range(steps)]
    assert active_steps(steps, start, end) == expected


def test_hint_protocol_threshold_and_minus_one():
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 127], [70, 80, 90, 128]],
                     [[100, 110, 120, 255], [130, 140, 150, 200], [160, 170, 180, 1]]], dtype=np.uint8)
    hint4 = torch.from_numpy(pp.high_quality_resize(rgba.astype(np.float32), (3, 2))).permute(2, 0, 1)[None] / 255
    assert hint4[0, 3].tolist() == [[0, 0, 1], [1, 1, 0]]
    c = pp.control_input(hint4)
    masked = torch.tensor([[0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    assert torch.all(c[0][:, masked] == -1.0)
    expected = torch.from_numpy(rgba[:, :, :3].astype(np.float64) / 255.0).permute(2, 0, 1)
    assert torch.equal(c[0][:, ~masked].double(), expected[:, ~masked].float().double())


def test_make_hint_crop_and_resize_and_fill():
    g = np.random.default_rng(0)
    rgba = g.integers(0, 256, (40, 64, 4), dtype=np.uint8)  # many colours: area (shrink) / cubic (grow)
    hint = pp.make_hint(rgba, 32, 32, "Crop and Resize")
    assert hint.shape == (1, 4, 32, 32) and hint.dtype == torch.float32
    k = max(32 / 40, 32 / 64)
    small = cv2.resize(rgba.astype(np.float32), (round(64 * k), round(40 * k)), interpolation=cv2.INTER_AREA)
    off = (small.shape[1] - 32) // 2
    assert torch.equal(hint[0, :3], torch.from_numpy(small[:, off:off + 32, :3]).permute(2, 0, 1) / 255)
    assert set(hint[0, 3].unique().tolist()) <= {0.0, 1.0}
    fill = pp.make_hint(rgba, 64, 64, "Resize and Fill")
    # 64x40 fits as 64x40 (no resize): 12 padded rows top and bottom, masked and median-coloured.
    assert torch.all(fill[0, 3, :12] == 1) and torch.all(fill[0, 3, 52:] == 1)
    borders = np.concatenate([rgba[0], rgba[-1], rgba[:, 0], rgba[:, -1]]).astype(np.float32)
    assert torch.allclose(fill[0, :3, 0, 0], torch.from_numpy(np.median(borders, axis=0)[:3]) / 255)
    same = pp.make_hint(rgba, 64, 40, "Just Resize")
    assert torch.equal(same[0, :3], torch.from_numpy(rgba[:, :, :3].astype(np.float32)).permute(2, 0, 1) / 255)
    assert torch.equal(same[0, 3], torch.from_numpy((rgba[:, :, 3] > 127).astype(np.float32)))


def test_restore_latent_mask_rederived():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, 48, 64, generator=g) > 0.97).float()
    hint4 = torch.cat([torch.rand(1, 3, 48, 64, generator=g), mask], dim=1)
    lat = pp.restore_mask(hint4)
    assert lat.shape == (1, 1, 6, 8)
    for i in range(6):
        for j in range(8):
            rows = slice(max(8 * i - 1, 0), 8 * i + 9)
            cols = slice(max(8 * j - 1, 0), 8 * j + 9)
            assert lat[0, 0, i, j].item() == mask[0, 0, rows, cols].max().item()
    small = pp.inpaint_model_mask(hint4)
    assert torch.equal(small, mask.reshape(1, 1, 6, 8, 8, 8).amax(dim=(3, 5)))


def test_paste_back_mask_ramp():
    """A 4x4 block: dilate(7) grows it to 10x10, the 7-box blur ramps 1/7 .. 6/7 over 6 pixels each side."""
    mask = torch.zeros(1, 4, 40, 40)
    mask[0, 3, 18:22, 18:22] = 1
    m = pp.paste_back_mask(mask)[0, 0].double()
    dilated = np.zeros((40, 40))
    dilated[15:25, 15:25] = 1
    ref = np.zeros((40, 40))
    for y in range(3, 37):
        for x in range(3, 37):
            ref[y, x] = dilated[y - 3:y + 4, x - 3:x + 4].mean()
    assert np.abs(m.numpy() - ref).max() < 1e-6
    row = m[20].tolist()
    assert row[11:18] == pytest.approx([0, 1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 6 / 7], abs=1e-6)
    assert row[18:22] == pytest.approx([1] * 4) and row[22:29] == pytest.approx(row[11:18][::-1], abs=1e-6)


@pytest.mark.parametrize("weight", [1.0, 0.5, 1.5])
def test_restore_eps_rederived(weight):
    g = torch.Generator().manual_seed(1)
    x, eps, x0o = (torch.randn(2, 4, 3, 5, generator=g) for _ in range(3))
    mask = (torch.rand(1, 1, 3, 5, generator=g) > 0.5).float()
    t = torch.tensor([500.4, 500.4])
    ours = restore_eps(x, t, eps, x0o, mask, weight)
    ac = SD1_SCHEDULE.alphas_cumprod64[500]  # round(500.4) = 500
    a, b = math.sqrt(1 / ac), math.sqrt(1 / ac - 1)
    x64, e64, o64, m64 = x.double(), eps.double(), x0o.double(), mask.double()
    x0 = (a * x64 - b * e64) * m64 + o64 * (1 - m64)
    w = min(weight, 1.0)
    ref = (a * x64 - x0) / b * w + e64 * (1 - w)
    assert (ours.double() - ref).abs().max().item() < 2e-6 * ref.abs().max().item()
    # Where the mask is 1 the restore leaves eps unchanged up to rounding; where 0 the implied x0 is x0_origin.
    implied = a * x64 - b * ours.double()
    if weight >= 1:
        assert (implied - o64).mul(1 - m64).abs().max().item() < 1e-5


def test_lama_noise_constants():
    ac999 = SD1_SCHEDULE.alphas_cumprod64[999]
    assert ac999 == pytest.approx(0.0046601, abs=5e-8)
    x0, n = torch.ones(1, 4, 1, 1), torch.zeros(1, 4, 1, 1)
    assert SD1_SCHEDULE.q_sample(x0, 999, n)[0, 0, 0, 0].item() == pytest.approx(math.sqrt(ac999), rel=1e-6)
    # random latents and noise: both coefficients, against float64
    g = torch.Generator().manual_seed(3)
    x0, n = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    expected = math.sqrt(ac999) * x0.double() + math.sqrt(1 - ac999) * n.double()
    assert (SD1_SCHEDULE.q_sample(x0, 999, n).double() - expected).abs().max().item() < 2e-6
    sigma_max = math.sqrt((1 - ac999) / ac999)
    assert sigma_max * math.sqrt(ac999) == pytest.approx(0.9977, abs=1e-4)
    assert sigma_max * math.sqrt(1 - ac999) == pytest.approx(14.58, abs=1e-2)


def test_lama_fill_composite():
    g = np.random.default_rng(2)
    rgba = g.integers(0, 256, (24, 40, 4), dtype=np.uint8)
    rgba[:, :, 3] = 0
    rgba[5:15, 10:30, 3] = 255
    rgba[4, 10:30, 3] = 100  # soft edge: the final mix uses the unthresholded mask
    calls = []

    def lama(color, m):
        calls.append((color.shape, m.shape))
        assert np.all(color[m > 0.5] == 0)
        return np.full_like(color, 0.5)

    out = pp.lama_fill(rgba, lama)
    assert calls == [((256, 448, 3), (256, 448))]  # shorter side 256 (24 -> 256, 40 -> 427), padded to 64s
    assert out.shape == (24, 40, 4) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3])
    unmasked = rgba[:, :, 3] == 0
    assert np.array_equal(out[unmasked][:, :3], rgba[unmasked][:, :3])
    assert np.all(np.abs(out[8:12, 15:25, :3].astype(int) - 127) <= 1)
    filled = np.full((24, 40, 3), 200, np.uint8)
    out2 = pp.lama_fill(rgba, filled=filled)
    a = 100 / 255
    assert np.array_equal(out2[4, 10:30, :3], (200 * a + rgba[4, 10:30, :3].astype(np.float32) * (1 - a)).astype(np.uint8))
    with pytest.raises(ValueError, match="exactly one"):
        pp.lama_fill(rgba)
