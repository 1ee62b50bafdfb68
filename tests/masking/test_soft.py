"""Soft inpainting stages against float64 re-derivations of A1111 v1.10's formulas and its worked numbers.

Oracles: numpy float64 versions of each formula written here from the behaviour description (mask power, power-mean
magnitude blend, threshold/contrast/smootherstep composite), a plain per-pixel loop for the weighted-percentile filter,
and Pillow called directly for the resize / blur / premultiplied-overlay steps.
"""
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from inpaintlab.masking import make_overlay, soft


# --- mask power ---------------------------------------------------------------------------------------------------------

def test_modified_nmask_worked_values_at_sigma_1():
    nmask = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    t = soft.modified_nmask(nmask, torch.tensor(1.0))
    np.testing.assert_allclose(t.numpy(), [0.0, 0.5, 0.70710678, 0.86602540, 1.0], atol=1e-7)


@pytest.mark.parametrize("sigma", [14.614642, 7.0, 1.0, 0.1, 0.0291675])
@pytest.mark.parametrize("power,scale", [(1.0, 0.5), (2.0, 1.5), (0.0, 0.5), (0.3, 4.0)])
def test_modified_nmask_matches_float64(sigma, power, scale):
    nmask = torch.rand(4, 6, 5, generator=torch.Generator().manual_seed(3))
    t = soft.modified_nmask(nmask, torch.tensor(sigma, dtype=torch.float32), power, scale)
    assert t.dtype == torch.float32 and t.shape == nmask.shape
    expected = nmask.double().numpy() ** (np.float64(np.float32(sigma)) ** power * scale)
    # float32 exponent and float32 pow: measured ≤ 3e-6 relative
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-5, atol=1e-30)


def test_modified_nmask_scale_zero_is_all_ones():
    nmask = torch.tensor([0.0, 0.3, 1.0])
    assert torch.equal(soft.modified_nmask(nmask, torch.tensor(5.0), 1.0, 0.0), torch.ones(3))


# --- latent blend -------------------------------------------------------------------------------------------------------

def latent_blend_oracle(a, b, t, d):
    """Float64 re-derivation: lerp direction, length = ((1−t)|a|^d + t|b|^d)^(1/d) over |lerp| + 1e-5."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    t2 = t[None].astype(np.float64)
    t3 = t2[:, :1]
    lerp = a * (1 - t2) + b * t2
    length = np.sqrt((lerp ** 2).sum(1, keepdims=True)) + 1e-5
    na, nb = np.sqrt((a ** 2).sum(1, keepdims=True)), np.sqrt((b ** 2).sum(1, keepdims=True))
    desired = ((1 - t3) * na ** d + t3 * nb ** d) ** (1 / d)
    return lerp * desired / length


@pytest.mark.parametrize("d", [1.0, 4.0, 32.0])
def test_latent_blend_matches_float64(d):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    t = torch.tensor([[0.0, 0.1, 0.5], [0.9, 1.0, 0.25], [0.75, 0.33, 0.6]]).expand(4, 3, 3)
    out = soft.latent_blend(a, b, t, d)
    assert out.dtype == torch.float32
    expected = latent_blend_oracle(a.numpy(), b.numpy(), t.numpy(), d)
    # float32 lerp and norms, float64 magnitudes: measured ≤ 7e-7 relative, 3e-7 absolute
    np.testing.assert_allclose(out.numpy(), expected, rtol=2e-6, atol=1e-7)
    # 4-D mask (one per image) gives the same numbers as the shared 3-D one
    assert torch.equal(soft.latent_blend(a, b, t[None].expand(2, -1, -1, -1), d), out)


def test_latent_blend_binary_t_is_the_shrunk_endpoint():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, generator=g)
    t = (torch.rand(4, 4, generator=g) > 0.5).float().expand(4, 4, 4)
    out = soft.latent_blend(a, b, t, 4.0)
    plain = torch.where(t[None].bool(), b, a)
    length = plain.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(out.numpy(), (plain * length / (length + 1e-5)).numpy(), rtol=1e-6)
    # A1111's shrink of 1e-5 / |v| relative, never the exact binary blend
    shrink = ((out - plain).norm(dim=1) / 1e-5).flatten()
    assert (shrink > 0.9).all() and (shrink < 1.1).all()


# --- kernel, filter, smootherstep ---------------------------------------------------------------------------------------

def test_gaussian_kernel_values():
    kernel, centre = soft.gaussian_kernel(1.5, 2)
    assert centre == 2 and kernel.shape == (5, 5)
    assert kernel.sum() == pytest.approx(6.528105619216941, abs=1e-14)
    for (y, x), value in {(2, 2): 1.0, (1, 2): 0.63449, (1, 1): 0.40013, (0, 2): 0.15351, (0, 1): 0.09173,
                          (0, 0): 0.01044}.items():
        assert kernel[y, x] == pytest.approx(value, abs=6e-6)
    g = lambda r2: math.exp(-r2 / 2.25)  # noqa: E731
    assert kernel[0, 1] == pytest.approx((g(5) - g(9)) / (1 - g(9)), rel=1e-15)


def test_smootherstep_values():
    x = np.array([0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    expected = [6 * v ** 5 - 15 * v ** 4 + 10 * v ** 3 for v in x]
    np.testing.assert_allclose(soft.smootherstep(x), expected, atol=1e-15)
    assert soft.smootherstep(0.25) == 0.103515625


def histogram_filter_oracle(img, kernel, centre, pmin, pmax, min_width):
    """Per-pixel loop straight from the description: truncated window, stable sort, weight stack, clamped window."""
    h, w = img.shape
    out = img.copy()
    for y in range(h):
        for x in range(w):
            items = [(img[yy, xx], kernel[yy - y + centre, xx - x + centre])
                     for yy in range(max(0, y - centre), min(h, y + centre + 1))
                     for xx in range(max(0, x - centre), min(w, x + centre + 1))]
            items.sort(key=lambda item: item[0])
            stack, total = [], 0
            for value, weight in items:
                stack.append((value, total, total + weight))
                total += weight
            lo, hi = total * pmin, total * pmax
            if hi - lo < min_width:
                mid = (lo + hi) / 2
                lo, hi = mid - min_width / 2, mid + min_width / 2
                if hi > total:
                    hi, lo = total, total - min_width
                if lo < 0:
                    lo, hi = 0, min_width
            num = den = 0
            for value, a, b in stack:
                if lo < b and hi > a:
                    part = min(hi, b) - max(lo, a)
                    num += value * part
                    den += part
            out[y, x] = num / den if den != 0 else 0
    return out


@pytest.mark.parametrize("pmin,pmax", [(0.9, 1.0), (0.25, 0.75), (0.0, 1.0), (0.0, 0.05)])
def test_weighted_histogram_filter_matches_loop_bit_for_bit(pmin, pmax):
    img = np.random.RandomState(0).rand(6, 7).astype(np.float32)
    img[2, 3] = img[2, 4]  # a tie: the stable sort decides the stack order
    kernel, centre = soft.gaussian_kernel(1.5, 2)
    out = soft.weighted_histogram_filter(img, kernel, centre, pmin, pmax, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, histogram_filter_oracle(img, kernel, centre, pmin, pmax, 1))


def test_weighted_histogram_filter_two_passes_and_properties():
    img = np.random.RandomState(1).rand(9, 8).astype(np.float32) * 3
    kernel, centre = soft.gaussian_kernel(1.5, 2)
    first = soft.weighted_histogram_filter(img, kernel, centre, 0.9, 1.0, 1)
    second = soft.weighted_histogram_filter(first, kernel, centre, 0.25, 0.75, 1)
    np.testing.assert_array_equal(second, histogram_filter_oracle(
        histogram_filter_oracle(img, kernel, centre, 0.9, 1.0, 1), kernel, centre, 0.25, 0.75, 1))
    # the soft maximum never falls below the centre's neighbourhood median and never exceeds the window maximum
    assert (first <= img.max()).all() and (first >= np.median(img) * 0).all()
    constant = np.full((5, 6), 0.7, dtype=np.float32)
    np.testing.assert_allclose(soft.weighted_histogram_filter(constant, kernel, centre, 0.25, 0.75, 1), constant,
                               rtol=1e-7)
    with pytest.raises(ValueError, match="finite"):
        soft.weighted_histogram_filter(np.array([[np.nan]], dtype=np.float32), kernel, centre)


# --- composite mask -----------------------------------------------------------------------------------------------------

def test_mask_scalar():
    nmask = torch.tensor([0.0, 0.25, 1.0]).reshape(1, 1, 3).expand(4, 1, 3)
    np.testing.assert_allclose(soft.mask_scalar(nmask, 0.5, 0.0), np.full((1, 3), 0.5 / 0.50001), rtol=1e-6)
    s = (1 - np.array([0.0, 0.25, 1.0]) ** 0.25)
    # A1111 computes in float32, where 1.00001 is 1.0000100136: at nmask = 0 that moves 1e5 to 99864
    np.testing.assert_allclose(soft.mask_scalar(nmask, 0.5, 1.0)[0], s / (np.float64(np.float32(1.00001)) - s),
                               rtol=2e-6)
    assert soft.mask_scalar(nmask[None], 0.5, 1.0).shape == (1, 1, 3)


def difference_mask_oracle(distance, scalar, threshold, contrast):
    kernel, centre = soft.gaussian_kernel(1.5, 2)
    m = histogram_filter_oracle(distance, kernel, centre, 0.9, 1.0, 1)
    m = histogram_filter_oracle(m, kernel, centre, 0.25, 0.75, 1).astype(np.float64)
    x = m / (threshold * scalar.astype(np.float64))
    y = 1 / (1 + x ** contrast)
    return 255 * (1 - (6 * y ** 5 - 15 * y ** 4 + 10 * y ** 3))


@pytest.mark.parametrize("threshold,contrast", [(0.5, 2.0), (1.25, 0.75), (2.0, 8.0)])
def test_difference_mask_matches_float64(threshold, contrast):
    rng = np.random.RandomState(4)
    distance = (rng.rand(8, 10) * 2).astype(np.float32)
    nmask = torch.from_numpy(rng.rand(8, 10).astype(np.float32))[None].expand(4, -1, -1)
    scalar = soft.mask_scalar(nmask, 0.5, 0.6)
    out = soft.difference_mask(distance, scalar, threshold, contrast)
    assert out.dtype == np.uint8
    expected = difference_mask_oracle(distance, scalar, threshold, contrast)
    # float32 arithmetic then truncation: the float64 value lies within one level above the uint8 result
    assert (out.astype(np.float64) <= expected + 1e-3).all() and (expected - out < 1 + 1e-3).all()
    assert out.min() < out.max()


def test_difference_mask_edge_cases():
    distance = np.full((5, 5), 0.3, dtype=np.float32)
    ones = np.ones((5, 5), dtype=np.float32)
    assert (soft.difference_mask(distance, ones, 0.0, 2.0) == 255).all()  # threshold 0: inf → generated
    assert (soft.difference_mask(distance, ones, 0.5, 0.0) == 127).all()  # contrast 0: 1/(1+1) → 255·0.5 truncated
    assert (soft.difference_mask(np.zeros((5, 5), np.float32), ones, 0.5, 2.0) == 0).all()  # unchanged → original


def test_overlay_mask_image_is_lanczos_x8_then_gaussian_4_and_uncrops():
    small = np.random.RandomState(5).randint(0, 256, (4, 6)).astype(np.uint8)
    image = soft.overlay_mask_image(small, 48, 32)
    expected = Image.fromarray(small).resize((48, 32), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(4))
    assert image.mode == "L" and image.tobytes() == expected.tobytes()
    full = soft.overlay_mask_image(small, 48, 32, paste_to=(10, 5, 24, 16), original_size=(60, 40))
    arr = np.asarray(full)
    assert full.size == (60, 40) and arr[:5].max() == 0 and arr[:, :10].max() == 0 and arr[21:].max() == 0
    assert arr[5:21, 10:34].max() > 0


def test_soft_overlay_alpha_and_premultiply_quantisation():
    # The worked pixel: (200, 100, 50) under alpha 16 comes back as (207, 95, 47, 16) after RGBa → RGBA.
    source = Image.new("RGB", (1, 1), (200, 100, 50))
    overlay = make_overlay(source, Image.new("L", (1, 1), 255 - 16))
    assert overlay.getpixel((0, 0)) == (207, 95, 47, 16)


def test_soft_overlays_per_batch_image():
    g = torch.Generator().manual_seed(6)
    init = torch.randn(2, 4, 12, 12, generator=g)
    samples = init.clone()
    samples[0, :, 5:7, 5:7] += 3.0  # image 0 changed in the centre, image 1 not at all
    nmask = torch.zeros(4, 12, 12)
    nmask[:, 5:7, 5:7] = 1.0
    source = soft.overlay_source(Image.new("RGB", (96, 96), (10, 200, 30)), 96, 96)
    overlays, masks = soft.soft_overlays(source, nmask, init, samples, soft.SoftInpaintingSettings(), 96, 96)
    assert len(overlays) == len(masks) == 2
    m0, m1 = np.asarray(masks[0]), np.asarray(masks[1])
    assert m0[48, 48] >= 250 and m0[0, 0] == 0 and m1.max() == 0
    alpha = np.asarray(overlays[0])[..., 3]
    np.testing.assert_array_equal(alpha, 255 - m0)


def test_settings_ranges_and_infotext_round_trip():
    settings = soft.SoftInpaintingSettings(schedule_bias=2, preservation_strength=1.5)
    text = settings.infotext()
    assert list(text) == ["Soft inpainting enabled", "Soft inpainting schedule bias",
                          "Soft inpainting preservation strength", "Soft inpainting transition contrast boost",
                          "Soft inpainting mask influence", "Soft inpainting difference threshold",
                          "Soft inpainting difference contrast"]
    parsed = soft.SoftInpaintingSettings.from_infotext({k: str(v) for k, v in text.items()})
    assert parsed == settings
    assert soft.SoftInpaintingSettings.from_infotext({}) is None
    with pytest.raises(ValueError, match="transition_contrast_boost"):
        soft.SoftInpaintingSettings(transition_contrast_boost=0.5)


# --- Differential Diffusion pieces --------------------------------------------------------------------------------------

def test_differential_masks_thresholds():
    change = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0])
    masks = soft.differential_masks(change, 4)  # thresholds 0, .25, .5, .75 on keep = 1, .7, .5, .3, 0
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(masks, expected)


def test_change_map_to_latent_is_bilinear_without_antialias():
    rng = np.random.RandomState(7)
    full = rng.rand(16, 24).astype(np.float32)
    small = soft.change_map_to_latent(torch.from_numpy(full), (2, 3))[0, 0].numpy()
    # downscale by 8, align_corners=False: sample point 8i + 3.5, i.e. the mean of pixels 8i + 3 and 8i + 4
    expected = np.array([[full[8 * i + 3:8 * i + 5, 8 * j + 3:8 * j + 5].mean() for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(small, expected, rtol=1e-6)
