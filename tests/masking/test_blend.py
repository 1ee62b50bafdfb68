"""Latent blend (steps 15/16) and the pixel overlay composite (steps 7.4, 18.3)."""

import numpy as np
import pytest
import torch
from PIL import Image

from inpaintlab.masking import (
    apply_overlay,
    blend_latents,
    blur_mask,
    expand_crop_region,
    get_crop_region_v2,
    make_overlay,
    mask_for_overlay,
)

LANCZOS = Image.Resampling.LANCZOS


@pytest.fixture
def rng():
    return np.random.default_rng(5)


# --- latent blend --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("soft", [False, True])
def test_blend_latents_is_a1111_expression(dtype, soft):
    g = torch.Generator().manual_seed(2)
    d = torch.randn(2, 4, 8, 8, generator=g).to(dtype)
    i = torch.randn(2, 4, 8, 8, generator=g).to(dtype)
    m = torch.rand(1, 1, 8, 8, generator=g)
    nmask = (m if soft else (m > 0.5).float()).to(dtype).expand(2, 4, 8, 8)
    mask = 1 - nmask  # A1111 keeps both tensors; mask = 1 - nmask
    copies = [t.clone() for t in (d, i, nmask)]
    out = blend_latents(d, i, nmask)
    assert torch.equal(out, d * nmask + i * mask)  # bit for bit
    if not soft:
        assert torch.equal(out[nmask == 1], d[nmask == 1]) and torch.equal(out[nmask == 0], i[nmask == 0])
    for t, t0 in zip((d, i, nmask), copies):
        assert torch.equal(t, t0)


# --- overlay -------------------------------------------------------------------------------------------------------


def _blob(h, w, box, sigma):
    a = np.zeros((h, w), np.uint8)
    x1, y1, x2, y2 = box
    a[y1:y2, x1:x2] = 255
    return blur_mask(Image.fromarray(a), sigma, sigma)


def test_make_overlay(rng):
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    m = np.array(_blob(40, 48, (10, 10, 30, 28), 4))
    ov = np.array(make_overlay(Image.fromarray(img), Image.fromarray(m))).astype(int)
    assert ov.shape == (40, 48, 4)
    a = ov[..., 3]
    assert np.array_equal(a, 255 - m.astype(int))
    opaque = a == 255
    assert np.array_equal(ov[opaque][:, :3], img[opaque])
    assert (ov[a == 0][:, :3] == 0).all()
    # partial alpha: premultiply then un-premultiply quantises by at most ~255/(2a) + 1
    part = (a > 0) & (a < 255)
    assert part.any()
    bound = 255 / (2 * a[part]) + 1
    assert (np.abs(ov[part][:, :3] - img[part]).max(axis=1) <= bound).all()


def test_apply_overlay_whole_picture(rng):
    orig = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    blurred = _blob(48, 64, (16, 12, 40, 36), 4)
    m = np.array(mask_for_overlay(blurred)).astype(int)  # doubled
    overlay = make_overlay(Image.fromarray(orig), mask_for_overlay(blurred))
    out = np.array(apply_overlay(Image.fromarray(gen), overlay)).astype(int)
    assert out.shape == (48, 64, 3)
    assert np.array_equal(out[m == 0], orig[m == 0])  # bit-identical outside the (blurred, doubled) mask
    assert np.array_equal(out[m == 255], gen[m == 255])
    # in between: orig*a + gen*(1 - a), a = (255 - m)/255, up to quantisation of the overlay and of the composite
    a = ((255 - m) / 255)[..., None]
    approx = orig * a + gen * (1 - a)
    part = (m > 0) & (m < 255)
    assert part.any()
    assert np.abs(out[part] - approx[part]).max() <= 3
    # doubling: blurred value >= 128 is fully generated
    b = np.array(blurred)
    assert np.array_equal(out[b >= 128], gen[b >= 128])


def test_apply_overlay_only_masked(rng):
    orig = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    blurred = _blob(80, 100, (40, 30, 56, 46), 2)
    crop = expand_crop_region(get_crop_region_v2(blurred, 4), 64, 64, 100, 80)
    x1, y1, x2, y2 = crop
    assert x2 - x1 == y2 - y1  # square box, so the uncrop's mode-1 resize is a plain Lanczos resize
    paste_to = (x1, y1, x2 - x1, y2 - y1)
    gen = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    overlay = make_overlay(Image.fromarray(orig), mask_for_overlay(blurred, only_masked=True))
    out = np.array(apply_overlay(gen, overlay, paste_to))
    assert out.shape == (80, 100, 3)
    m = np.array(blurred)
    assert np.array_equal(out[m == 0], orig[m == 0])
    placed = np.zeros_like(orig)
    placed[y1:y2, x1:x2] = np.array(gen.resize((x2 - x1, y2 - y1), LANCZOS))
    assert np.array_equal(out[m == 255], placed[m == 255])


def test_apply_overlay_errors(rng):
    gen = Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match="RGBA"):
        apply_overlay(gen, Image.new("RGB", (16, 16)))
    with pytest.raises(ValueError, match="size"):
        apply_overlay(gen, Image.new("RGBA", (8, 8)))
    with pytest.raises(ValueError, match="match_overlay_mask"):
        make_overlay(gen, Image.new("L", (8, 8)))
