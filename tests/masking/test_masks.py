"""Mask intake, blur, overlay mask, latent mask, sketch and 9-channel conditioning helpers vs A1111 v1.10's rules."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from inpaintlab.masking import (
    binary_mask,
    blur_kernel_size,
    blur_mask,
    conditioning_mask,
    double_mask,
    downsample_conditioning_mask,
    inpaint_sketch,
    invert_mask,
    latent_mask,
    mask_for_overlay,
    masked_image,
    match_overlay_mask,
)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _random_mask(rng, h=48, w=64):
    """Blocky random mask with grey levels: a few rectangles of random value on a random-noise background."""
    a = rng.integers(0, 256, (h, w), dtype=np.uint8)
    a[rng.random((h, w)) < 0.5] = 0
    a[5:20, 10:40] = 255
    return a


# --- binary_mask / invert ------------------------------------------------------------------------------------------


def test_binary_mask_alpha_threshold():
    # alpha 128 is not painted, 129 is (A1111: > 128).
    alpha = np.array([[0, 1, 127, 128], [129, 200, 254, 255]], dtype=np.uint8)
    rgba = np.zeros((2, 4, 4), np.uint8)
    rgba[..., :3] = 77  # colour must be ignored
    rgba[..., 3] = alpha
    out = binary_mask(Image.fromarray(rgba, "RGBA"))
    assert out.mode == "L"
    assert np.array(out).tolist() == [[0, 0, 0, 0], [255, 255, 255, 255]]
    raw = binary_mask(Image.fromarray(rgba, "RGBA"), round=False)
    assert np.array_equal(np.array(raw), alpha)


def test_binary_mask_opaque_rgba_uses_luma(rng):
    rgb = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    # colours whose exact luma ends in .5 and that Pillow's fixed point rounds down (round-half-up would not)
    rgb[0, :6] = [(110, 74, 98), (197, 37, 227), (171, 131, 241), (121, 91, 236), (20, 0, 180), (234, 64, 219)]
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1)
    out = np.array(binary_mask(Image.fromarray(rgba, "RGBA")))
    assert out.dtype == np.uint8 and out.shape == rgb.shape[:2]
    # bit-exact against Pillow's own RGB -> L conversion of the colour channels (spec step 2)
    assert np.array_equal(out, np.array(Image.fromarray(rgb, "RGB").convert("L")))
    # ...which is ITU-R 601 luma in Pillow's 16-bit fixed point (Convert.c: L24), written out here
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    assert np.array_equal(out, (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
    # against the exact fraction: measured max |difference| 0.501 over all 2**24 colours (never a full level)
    luma = (r * 299 + g * 587 + b * 114) / 1000
    assert np.abs(out - luma).max() <= 0.501
    assert np.array_equal(out[0, :6], luma[0, :6] - 0.5)  # those .5 ties go down: the fixed point is not rounding
    # grey levels are kept, not thresholded (API path)
    assert len(np.unique(out)) > 2


def test_binary_mask_l_and_rgb_passthrough(rng):
    a = _random_mask(rng)
    assert np.array_equal(np.array(binary_mask(Image.fromarray(a))), a)
    grey_rgb = Image.fromarray(np.repeat(a[..., None], 3, axis=-1), "RGB")
    assert np.array_equal(np.array(binary_mask(grey_rgb)), a)  # equal channels: luma is the value itself


def test_invert_mask(rng):
    a = _random_mask(rng)
    m = Image.fromarray(a)
    assert np.array_equal(np.array(invert_mask(m)), 255 - a)
    assert np.array_equal(np.array(m), a)  # input untouched
    with pytest.raises(ValueError, match="'L'"):
        invert_mask(Image.fromarray(np.zeros((4, 4, 3), np.uint8)))


def test_invert_then_blur_is_blur_of_inverted(rng):
    # Pipeline order (step 3 before step 4): blur acts on 255 - v.
    a = _random_mask(rng)
    out = np.array(blur_mask(invert_mask(Image.fromarray(a)), 3, 3))
    ref = cv2.GaussianBlur(cv2.GaussianBlur(255 - a, (17, 1), 3), (1, 17), 3)
    assert np.array_equal(out, ref)


# --- blur ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma,k", [(4, 21), (1, 7), (2, 11), (0.5, 3), (8, 41), (64, 321)])
def test_blur_kernel_size(sigma, k):
    assert blur_kernel_size(sigma) == k  # 2*int(2.5*sigma + 0.5) + 1, computed by hand


@pytest.mark.parametrize("bx,by", [(4, 4), (3, 0), (0, 5), (2, 7), (1.5, 2.5)])
def test_blur_equals_direct_opencv(rng, bx, by):
    a = _random_mask(rng)
    out = np.array(blur_mask(Image.fromarray(a), bx, by))
    ref = a
    if bx > 0:
        kx = 2 * int(2.5 * bx + 0.5) + 1
        ref = cv2.GaussianBlur(ref, (kx, 1), bx)
    if by > 0:
        ky = 2 * int(2.5 * by + 0.5) + 1
        ref = cv2.GaussianBlur(ref, (1, ky), by, sigmaY=0)
    assert out.dtype == np.uint8
    assert np.array_equal(out, ref)


def _float_gauss_blur(a, sigma, axis):
    """Independent float reference: sampled Gaussian of length 2*int(2.5s+0.5)+1, reflect-101 border."""
    r = int(2.5 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = np.pad(a.astype(np.float64), pad, mode="reflect")  # numpy "reflect" == OpenCV reflect-101
    out = np.zeros(a.shape, np.float64)
    for i, w in enumerate(k):
        sl = [slice(None), slice(None)]
        sl[axis] = slice(i, i + a.shape[axis])
        out += w * p[tuple(sl)]
    return out


@pytest.mark.parametrize("sigma,axis", [(1, 1), (3, 1), (2, 0), (4, 0)])
def test_blur_close_to_float_gaussian(rng, sigma, axis):
    # OpenCV's 8-bit path rounds each kernel tap to 1/256, so an output may be off the exact float Gaussian by up to
    # 255 * k / 512 (+0.5 final rounding); measured: 0.85 at sigma 1, 3.2 at sigma 4. The error has no bias.
    a = _random_mask(rng)
    bx, by = (sigma, 0) if axis == 1 else (0, sigma)
    out = np.array(blur_mask(Image.fromarray(a), bx, by)).astype(np.float64)
    bound = 255 * blur_kernel_size(sigma) / 512 + 0.5
    err = out - _float_gauss_blur(a, sigma, axis=axis)
    assert np.abs(err).max() <= bound
    assert abs(err.mean()) < 0.1
    # the check has teeth: the wrong sigma or the wrong axis is far outside the bound
    assert np.abs(out - _float_gauss_blur(a, 1.6 * sigma, axis=axis)).max() > bound
    assert np.abs(out - _float_gauss_blur(a, sigma, axis=1 - axis)).max() > bound


def test_blur_sigma_zero_is_noop(rng):
    a = _random_mask(rng)
    m = Image.fromarray(a)
    out = blur_mask(m, 0, 0)
    assert np.array_equal(np.array(out), a)
    assert out is not m


def test_blur_spec_bbox_example():
    # spec step 4 [DERIVED]: 64x64 square at (200,200), sigma 4 -> spread 10 px -> bbox (190, 190, 274, 274).
    a = np.zeros((512, 512), np.uint8)
    a[200:264, 200:264] = 255
    assert blur_mask(Image.fromarray(a), 4, 4).getbbox() == (190, 190, 274, 274)
    # sigma 2: spread int(2.5*2 + 0.5) = 5
    assert blur_mask(Image.fromarray(a), 2, 2).getbbox() == (195, 195, 269, 269)


def test_blur_axes_independent(rng):
    a = _random_mask(rng)
    # x-only blur leaves an image that is constant along x unchanged, and blurs only within rows.
    rows = np.repeat(rng.integers(0, 256, (40, 1), dtype=np.uint8), 30, axis=1)
    assert np.array_equal(np.array(blur_mask(Image.fromarray(rows), 5, 0)), rows)
    cols = np.ascontiguousarray(rows.T)
    assert np.array_equal(np.array(blur_mask(Image.fromarray(cols), 0, 5)), cols)
    # and the x pass on a mask equals the y pass on its transpose
    bx = np.array(blur_mask(Image.fromarray(a), 3, 0))
    by = np.array(blur_mask(Image.fromarray(np.ascontiguousarray(a.T)), 0, 3))
    assert np.array_equal(bx, by.T)
    # only blur_y set: the spread shows in y but not in x
    sq = np.zeros((64, 64), np.uint8)
    sq[20:40, 20:40] = 255
    assert blur_mask(Image.fromarray(sq), 0, 4).getbbox() == (20, 10, 40, 50)
    assert blur_mask(Image.fromarray(sq), 4, 0).getbbox() == (10, 20, 50, 40)


def test_blur_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="blur_x"):
        blur_mask(Image.fromarray(_random_mask(rng)), -1, 0)
    with pytest.raises(ValueError, match="'L'"):
        blur_mask(Image.new("RGB", (8, 8)), 1, 1)


# --- overlay masks -------------------------------------------------------------------------------------------------


def test_mask_for_overlay(rng):
    a = _random_mask(rng)
    doubled = np.array(mask_for_overlay(Image.fromarray(a)))
    assert np.array_equal(doubled, np.clip(a.astype(int) * 2, 0, 255))
    assert np.array_equal(np.array(double_mask(Image.fromarray(a))), doubled)
    assert np.array_equal(np.array(mask_for_overlay(Image.fromarray(a), only_masked=True)), a)
    rgb = Image.fromarray(np.repeat(a[..., None], 3, axis=-1), "RGB")  # resize modes 1/2 give RGB masks
    assert np.array_equal(np.array(mask_for_overlay(rgb)), doubled)


def test_match_overlay_mask(rng):
    m = Image.fromarray(_random_mask(rng))
    assert match_overlay_mask(m, m.size, 0).size == m.size
    out = match_overlay_mask(m, (32, 32), 0)
    assert out.mode == "L" and out.size == (32, 32)
    assert np.array_equal(np.array(out), np.array(m.resize((32, 32), Image.Resampling.LANCZOS)))


# --- latent mask ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("v,expected", [(0, 0.0), (127, 0.0), (128, 1.0), (129, 1.0), (255, 1.0)])
def test_latent_mask_rounding(v, expected):
    # A constant mask resizes to the same constant (filter weights sum to 1): 1 iff v >= 128.
    m = Image.new("L", (64, 40), v)
    out = latent_mask(m, 64, 40)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.full((1, 1, 5, 8), expected))
    raw = latent_mask(m, 64, 40, round=False)
    assert torch.equal(raw, torch.full((1, 1, 5, 8), np.float32(v) / np.float32(255)))


def test_latent_mask_shape_and_area_average():
    # W != H; left half painted -> left half of the latent columns repaint.
    a = np.zeros((48, 96), np.uint8)
    a[:, :48] = 255
    out = latent_mask(Image.fromarray(a), 96, 48)
    assert out.shape == (1, 1, 6, 12)
    assert torch.equal(out[0, 0], torch.tensor([[1.0] * 6 + [0.0] * 6] * 6))
    # unrounded: values are an area-weighted average, in [0, 1], 1 deep inside, 0 far away, and exactly 0.5-symmetric
    raw = latent_mask(Image.fromarray(a), 96, 48, round=False)[0, 0]
    assert raw[:, 0].eq(1).all() and raw[:, -1].eq(0).all()
    assert torch.allclose(raw[:, 5] + raw[:, 6], torch.ones(6), atol=1 / 255)


def test_latent_mask_matches_pillow_bicubic(rng):
    # Oracle: the default resize of the RGB mask in Pillow (BICUBIC for RGB), channel 0 / 255, numpy half-to-even.
    a = _random_mask(rng, 64, 80)
    small = np.array(Image.fromarray(a).convert("RGB").resize((10, 8)))[:, :, 0].astype(np.float32) / 255
    out = latent_mask(Image.fromarray(a), 80, 64)
    assert torch.equal(out[0, 0], torch.from_numpy(np.around(small)))
    assert torch.equal(latent_mask(Image.fromarray(a), 80, 64, round=False)[0, 0], torch.from_numpy(small))


# --- inpaint sketch ------------------------------------------------------------------------------------------------


def test_inpaint_sketch_mask_derivation(rng):
    orig = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    sketch = orig.copy()
    sketch[3:9, 4:12, 1] ^= 1  # one channel changed by one level
    sketch[15:20, 20:30] = [255, 0, 0]
    sketch[15, 20] = orig[15, 20]  # unchanged pixel inside a stroke
    changed = np.any(sketch != orig, axis=-1)
    image, mask = inpaint_sketch(Image.fromarray(orig), Image.fromarray(sketch), mask_blur=0)
    assert mask.mode == "L"
    assert np.array_equal(np.array(mask), changed.astype(np.uint8) * 255)
    # blur 0: the composite is exactly the sketch where painted and the original elsewhere
    assert np.array_equal(np.array(image), np.where(changed[..., None], sketch, orig))


def test_inpaint_sketch_alpha_and_blur(rng):
    orig = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    sketch = orig.copy()
    sketch[8:16, 8:24] = [0, 255, 0]
    _, mask = inpaint_sketch(Image.fromarray(orig), Image.fromarray(sketch), mask_blur=4, mask_alpha=50)
    vals = set(np.unique(np.array(mask)).tolist())
    assert vals == {0, 127} or vals == {0, 128}  # Brightness 0.5 of 255, Pillow rounding
    image, mask = inpaint_sketch(Image.fromarray(orig), Image.fromarray(sketch), mask_blur=3)
    blur = ImageFilter.GaussianBlur(3)
    ref = Image.composite(Image.fromarray(sketch).filter(blur), Image.fromarray(orig), mask.filter(blur))
    assert np.array_equal(np.array(image), np.array(ref))
    assert np.array_equal(np.array(mask) > 0, np.any(sketch != orig, axis=-1))  # returned mask is not blurred


def test_inpaint_sketch_without_original(rng):
    sketch = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    image, mask = inpaint_sketch(None, sketch, mask_blur=4)
    assert mask.getbbox() is None
    assert np.array_equal(np.array(image), np.array(sketch))


# --- 9-channel conditioning ----------------------------------------------------------------------------------------


def test_conditioning_mask(rng):
    a = _random_mask(rng)
    c = conditioning_mask(Image.fromarray(a))
    assert c.shape == (1, 1, 48, 64) and c.dtype == torch.float32
    assert torch.equal(c[0, 0], torch.from_numpy((a >= 128).astype(np.float32)))
    raw = conditioning_mask(Image.fromarray(a), round=False)
    assert torch.equal(raw[0, 0], torch.from_numpy(a.astype(np.float32) / np.float32(255)))


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0, 0.3])
def test_masked_image(weight):
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 16, 24, generator=g) * 2 - 1
    cmask = (torch.rand(1, 1, 16, 24, generator=g) > 0.5).float()
    src0, cmask0 = src.clone(), cmask.clone()
    out = masked_image(src, cmask, weight)
    assert torch.allclose(out, src * (1 - weight * cmask), atol=1e-6, rtol=0)  # formula of step 11.3
    assert torch.equal(out, torch.lerp(src, src * (1.0 - cmask), weight))  # A1111's own expression, bit for bit
    if weight == 1.0:
        assert torch.equal(out[cmask.expand_as(src) == 1], torch.zeros_like(out[cmask.expand_as(src) == 1]))
    assert torch.equal(src, src0) and torch.equal(cmask, cmask0)
    with pytest.raises(ValueError, match="cmask"):
        masked_image(src, cmask[..., :8, :])


def test_downsample_conditioning_mask():
    g = torch.Generator().manual_seed(1)
    cmask = (torch.rand(1, 1, 64, 48, generator=g) > 0.5).float()
    small = downsample_conditioning_mask(cmask, (8, 6))
    assert torch.equal(small, cmask[:, :, ::8, ::8])  # legacy nearest: source pixel (8i, 8j)
    # non-multiple size: source index floor(i * in / out)
    small = downsample_conditioning_mask(cmask, (5, 7))
    ri = [int(i * 64 / 5) for i in range(5)]
    ci = [int(j * 48 / 7) for j in range(7)]
    assert torch.equal(small[0, 0], cmask[0, 0][ri][:, ci])
