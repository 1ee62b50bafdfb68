"""Masked content: pixel fill (spec §4), latent fill and the latent modes of step 10."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from inpaintlab.masking import MASKED_CONTENT, apply_masked_content, fill, fill_latent, needs_pixel_fill
from inpaintlab.masking.fill import FILL_PASSES, LATENT_FILL_PASSES


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# --- pixel fill ----------------------------------------------------------------------------------------------------


def test_fill_passes_are_a1111s():
    assert FILL_PASSES == ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))
    assert LATENT_FILL_PASSES == ((32, 1), (8, 1), (2, 2), (0.5, 4), (0.25, 2), (0, 1))


def test_fill_keeps_unmasked_pixels(rng):
    img = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), np.uint8)
    mask[10:30, 20:45] = 255
    mask[rng.random((40, 56)) < 0.1] = rng.integers(1, 255)  # some partial pixels too
    image, mask_im = Image.fromarray(img), Image.fromarray(mask)
    out = np.array(fill(image, mask_im))
    keep = mask == 0
    assert np.array_equal(out[keep], img[keep])
    assert not np.array_equal(out[mask == 255], img[mask == 255])
    assert np.array_equal(np.array(image), img) and np.array_equal(np.array(mask_im), mask)  # inputs untouched


def test_fill_takes_colour_from_surroundings(rng):
    img = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    img[:, :32] = (255, 0, 0)
    mask = np.zeros((32, 64), np.uint8)
    mask[:, 32:] = 255
    out = np.array(fill(Image.fromarray(img), Image.fromarray(mask))).astype(int)
    # only red is visible through the premultiplied blur: the masked half becomes red, not a mix with the hidden noise
    assert (out[:, 32:, 0] >= 250).all() and (out[:, 32:, 1:] <= 5).all()
    assert np.array_equal(out[:, :32], img[:, :32])


def test_fill_nearer_colour_wins(rng):
    img = np.zeros((24, 96, 3), np.uint8)
    img[:, :24] = (255, 0, 0)
    img[:, 72:] = (0, 0, 255)
    mask = np.zeros((24, 96), np.uint8)
    mask[:, 24:72] = 255
    out = np.array(fill(Image.fromarray(img), Image.fromarray(mask))).astype(int)
    left, right = out[:, 24:36], out[:, 60:72]
    assert left[..., 0].mean() > 200 > left[..., 2].mean()
    assert right[..., 2].mean() > 200 > right[..., 0].mean()
    # red fades monotonically (column means) across the masked band
    r = out[:, 24:72, 0].mean(axis=0)
    assert (np.diff(r) <= 1).all()


def test_fill_fully_masked_is_black(rng):
    img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    out = np.array(fill(img, Image.new("L", (16, 16), 255)))
    assert (out == 0).all()  # spec §4: a pixel no layer reaches stays (0, 0, 0)


def test_fill_empty_mask_and_modes(rng):
    arr = rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)
    arr[..., 3] = 255
    rgba = Image.fromarray(arr, "RGBA")
    out = fill(rgba, Image.new("L", (20, 16), 0))
    assert out.mode == "RGB"
    assert np.array_equal(np.array(out), arr[..., :3])
    with pytest.raises(ValueError, match="sizes differ"):
        fill(rgba, Image.new("L", (8, 8)))


# --- latent fill ---------------------------------------------------------------------------------------------------


def _ref_blur(x, sigma):
    """Independent reference: separable conv2d with an edge-replicated pad, Gaussian truncated at ceil(3 sigma)."""
    if sigma == 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def _ref_fill_latent(x, m):
    """Straight-alpha version of A1111's fill: blur premultiplied, un-premultiply, composite like alpha_composite."""
    x = x.double()
    a0 = (1 - m.double()).expand_as(x)
    canvas_c, canvas_a = torch.zeros_like(x), torch.zeros_like(x)
    for radius, repeats in FILL_PASSES:
        bp, ba = _ref_blur(x * a0, radius / 8), _ref_blur(a0, radius / 8)
        colour = torch.where(ba > 0, bp / ba.clamp_min(1e-300), 0.0)
        for _ in range(repeats):
            out_a = ba + canvas_a * (1 - ba)
            canvas_c = torch.where(
                out_a > 0, (colour * ba + canvas_c * canvas_a * (1 - ba)) / out_a.clamp_min(1e-300), 0.0
            )
            canvas_a = out_a
    return torch.where(m.expand_as(x) == 0, x, canvas_c)


def _blob_mask(h, w, seed, soft=False):
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(1, 1, h, w)
    m[..., h // 4 : 3 * h // 4, w // 5 : w // 2] = 1
    m[..., 2:5, w - 6 :] = 1
    if soft:
        m = torch.where(torch.rand(1, 1, h, w, generator=g) < 0.1, torch.rand(1, 1, h, w, generator=g), m)
    return m


@pytest.mark.parametrize("soft", [False, True])
def test_fill_latent_matches_independent_reference(soft):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 24, generator=g, dtype=torch.float64)
    m = _blob_mask(16, 24, 0, soft)
    out = fill_latent(x, m)
    ref = _ref_fill_latent(x, m)
    err = (out - ref).abs().max().item()
    assert err < 1e-10, err  # same maths in float64, different blur and composite formulation
    out32 = fill_latent(x.float(), m)
    assert out32.dtype == torch.float32
    assert (out32.double() - ref).abs().max().item() < 1e-5


def test_fill_latent_unmasked_exact_and_bounded():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 32, 32, generator=g)
    m = _blob_mask(32, 32, 1)
    x0, m0 = x.clone(), m.clone()
    out = fill_latent(x, m.expand(1, 4, 32, 32))  # a tiled [B, 4, h, w] nmask works too
    keep = (m == 0).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert torch.equal(x, x0) and torch.equal(m, m0)
    # every filled value is a weighted average of unmasked latents of its channel
    for c in range(4):
        known = x[0, c][m[0, 0] == 0]
        filled = out[0, c][m[0, 0] == 1]
        assert filled.min() >= known.min() - 1e-5 and filled.max() <= known.max() + 1e-5
        assert not torch.equal(filled, x[0, c][m[0, 0] == 1])


def test_fill_latent_constant_and_near_neighbours():
    x = torch.full((1, 4, 16, 16), 0.7)
    x[:, :, :, :2] = -0.3  # different values far from the hole
    m = torch.zeros(1, 1, 16, 16)
    m[..., 6:10, 10:14] = 1
    out = fill_latent(torch.randn(1, 4, 16, 16) * m + x * (1 - m), m)
    # the hole is surrounded by 0.7: the fill is close to it and nowhere near the hidden values
    hole = out[..., 6:10, 10:14]
    assert (hole - 0.7).abs().max() < 0.1
    # a constant field is filled with exactly that constant (convex combination of equal values)
    c = fill_latent(torch.full((1, 4, 16, 16), 0.25), m)
    assert torch.allclose(c, torch.full_like(c, 0.25), atol=1e-6, rtol=0)


def test_fill_latent_all_masked_is_zero():
    out = fill_latent(torch.randn(1, 4, 8, 8), torch.ones(1, 1, 8, 8))
    assert torch.equal(out, torch.zeros(1, 4, 8, 8))


def test_fill_latent_rejects_bad_masks():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="broadcast"):
        fill_latent(x, torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fill_latent(x, torch.full((1, 1, 8, 8), 2.0))


# --- apply_masked_content ------------------------------------------------------------------------------------------


@pytest.fixture
def latents():
    g = torch.Generator().manual_seed(11)
    init = torch.randn(2, 4, 8, 12, generator=g)
    m = (torch.rand(1, 1, 8, 12, generator=g) > 0.5).float()
    noise = torch.randn(2, 4, 8, 12, generator=g)
    return init, m, noise


def test_masked_content_names():
    assert MASKED_CONTENT == ("fill", "original", "latent_noise", "latent_nothing")


@pytest.mark.parametrize("mode", MASKED_CONTENT)
def test_apply_masked_content_formulas(latents, mode):
    init, m, noise = latents
    copies = [t.clone() for t in (init, m, noise)]
    out = apply_masked_content(mode, init, m, noise)
    nmask, mask = m, 1 - m  # A1111's names: nmask = 1 repaint, mask = 1 keep
    expected = {
        "original": init,
        "latent_noise": init * mask + noise * nmask,
        "latent_nothing": init * mask,
        "fill": _ref_fill_latent(init, m).float(),
    }[mode]
    if mode == "fill":
        assert (out - expected).abs().max() < 1e-5
    else:
        assert torch.equal(out, expected)
    assert out is not init
    for t, t0 in zip((init, m, noise), copies):
        assert torch.equal(t, t0)  # never in place


def test_latent_nothing_zeros_under_mask(latents):
    init, m, _ = latents
    out = apply_masked_content("latent_nothing", init, m)
    assert (out[m.expand_as(out) == 1] == 0).all()


def test_apply_masked_content_errors(latents):
    init, m, noise = latents
    with pytest.raises(ValueError, match="fill, original, latent_noise, latent_nothing"):
        apply_masked_content("latent noise", init, m, noise)
    with pytest.raises(ValueError, match="noise"):
        apply_masked_content("latent_noise", init, m)
    with pytest.raises(ValueError, match="noise shape"):
        apply_masked_content("latent_noise", init, m, noise[:1])


def test_needs_pixel_fill():
    # spec step 7.6: A1111 runs the pixel fill for every masked-content mode except "original".
    assert [needs_pixel_fill(k) for k in MASKED_CONTENT] == [True, False, True, True]
    with pytest.raises(ValueError):
        needs_pixel_fill("nothing")
