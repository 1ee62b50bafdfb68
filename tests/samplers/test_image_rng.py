"""ImageRNG beyond the plain CPU source: the NV and GPU sources, variation seeds, seed resize and ENSD (A1111 v1.10).

Oracles: fresh seeded generators (torch's CPU generator, the numpy Philox re-derivation in ``philox_oracle``), a float64
re-derivation of A1111's per-column slerp, and seed-resize paste positions worked out by hand.
"""
import numpy as np
import pytest
import torch

from inpaintlab.samplers import ImageRNG
from inpaintlab.samplers.rng import paste_centered, resolve_rng_source, slerp
from philox_oracle import oracle_randn

SHAPE = (4, 8, 8)


def cpu_draws(seed, shape, n=1):
    g = torch.Generator("cpu").manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)]


def slerp64(val, low, high):
    """A1111's slerp in float64, written per (channel, column) vector: normalise along the height axis."""
    low, high = low.double().numpy(), high.double().numpy()
    channels, _, width = low.shape
    cos = np.empty((channels, width))
    for c in range(channels):
        for w in range(width):
            a, b = low[c, :, w], high[c, :, w]
            cos[c, w] = np.dot(a / np.sqrt(np.sum(a * a)), b / np.sqrt(np.sum(b * b)))
    if cos.mean() > 0.9995:
        return torch.from_numpy(val * low + (1 - val) * high)  # A1111's fallback weights, reversed on purpose
    omega = np.arccos(cos)
    wa = np.sin((1 - val) * omega) / np.sin(omega)
    wb = np.sin(val * omega) / np.sin(omega)
    return torch.from_numpy(wa[:, None, :] * low + wb[:, None, :] * high)


# --- NV source -------------------------------------------------------------------------------------------------------

def test_nv_source_draws_and_ensd_against_numpy_oracle():
    seeds = [0, 12345, 2 ** 32 + 7]
    rng = ImageRNG(SHAPE, seeds, source="NV")
    first, second, third = rng.next(), rng.next(), rng.next()
    for i, seed in enumerate(seeds):
        for offset, draw in enumerate((first, second, third)):
            np.testing.assert_array_equal(draw[i].numpy(), oracle_randn(seed, offset, SHAPE))
    # ENSD: a fresh Philox generator at offset 0, seeded seed + ENSD, after the first draw
    rng = ImageRNG(SHAPE, [1234], source="nv", eta_noise_seed_delta=31337)
    np.testing.assert_array_equal(rng.next()[0].numpy(), oracle_randn(1234, 0, SHAPE))
    np.testing.assert_array_equal(rng.next()[0].numpy(), oracle_randn(1234 + 31337, 0, SHAPE))
    np.testing.assert_array_equal(rng.next()[0].numpy(), oracle_randn(1234 + 31337, 1, SHAPE))
    assert rng.source == "NV" and "source='NV'" in repr(rng)


def test_nv_variation_seed_against_float64():
    rng = ImageRNG(SHAPE, [1234], source="NV", subseeds=[99], subseed_strength=0.3)
    got = rng.next()[0]
    low = torch.from_numpy(oracle_randn(1234, 0, SHAPE))
    high = torch.from_numpy(oracle_randn(99, 0, SHAPE))
    torch.testing.assert_close(got.double(), slerp64(0.3, low, high), atol=2e-6, rtol=0)
    # later draws continue the image generator, not interpolated
    np.testing.assert_array_equal(rng.next()[0].numpy(), oracle_randn(1234, 1, SHAPE))


# --- slerp -----------------------------------------------------------------------------------------------------------

def test_slerp_against_float64_rederivation():
    g = torch.Generator().manual_seed(0)
    low, high = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    for val in (0.25, 0.5, 0.7, 1.3):
        torch.testing.assert_close(slerp(val, low, high).double(), slerp64(val, low, high), atol=2e-6, rtol=0)
    # the ends are exact
    assert torch.equal(slerp(0.0, low, high), low)
    assert torch.equal(slerp(1.0, low, high), high)
    # normalising along the height axis matters: a whole-tensor slerp gives other numbers
    flat = slerp(0.5, low.reshape(1, -1, 1), high.reshape(1, -1, 1)).reshape(low.shape)
    assert (flat - slerp(0.5, low, high)).abs().max() > 1e-2


def test_slerp_near_parallel_fallback_has_swapped_weights():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(2, 3, 4, generator=g)
    got = slerp(0.25, low, 2 * low)
    assert torch.equal(got, low * 0.25 + (2 * low) * 0.75)
    torch.testing.assert_close(got, 1.75 * low)  # a straight lerp would give 1.25·low
    torch.testing.assert_close(got.double(), slerp64(0.25, low, 2 * low), atol=1e-6, rtol=0)
    # just below the threshold the spherical branch runs: mean cosine ≈ 0.999 here
    near = low + 0.045 * torch.randn(2, 3, 4, generator=g)
    torch.testing.assert_close(slerp(0.25, low, near).double(), slerp64(0.25, low, near), atol=2e-6, rtol=0)


# --- variation seeds in ImageRNG -------------------------------------------------------------------------------------

def test_variation_seed_first_draw_only():
    rng = ImageRNG(SHAPE, [1234, 1234], subseeds=[99, 100], subseed_strength=0.3)
    first, second = rng.next(), rng.next()
    for i, subseed in enumerate((99, 100)):
        low, low2 = cpu_draws(1234, SHAPE, 2)
        (high,) = cpu_draws(subseed, SHAPE)
        torch.testing.assert_close(first[i].double(), slerp64(0.3, low, high), atol=2e-6, rtol=0)
        assert torch.equal(first[i], slerp(0.3, low, high))
        assert torch.equal(second[i], low2)  # not interpolated: the seed's generator continues
    # strength 1 gives the subseed's noise exactly; strength 0 (or no subseeds) the seed's
    assert torch.equal(ImageRNG(SHAPE, [1234], subseeds=[99], subseed_strength=1.0).next()[0], cpu_draws(99, SHAPE)[0])
    assert torch.equal(ImageRNG(SHAPE, [1234], subseeds=[99], subseed_strength=0.0).next()[0],
                       cpu_draws(1234, SHAPE)[0])
    # a missing subseed index uses subseed 0, as A1111 does
    short = ImageRNG(SHAPE, [5, 6], subseeds=[99], subseed_strength=1.0).next()
    assert torch.equal(short[1], cpu_draws(0, SHAPE)[0])


# --- seed resize -----------------------------------------------------------------------------------------------------

def test_paste_centered_by_hand():
    full = torch.zeros(1, 4, 4)
    small = torch.arange(1, 5, dtype=torch.float32).reshape(1, 2, 2)
    got = paste_centered(small, full)
    # (4 - 2) // 2 = 1: rows and columns 1..2
    want = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(got[0], want)
    assert torch.equal(full, torch.zeros(1, 4, 4))  # input not modified

    # odd difference, smaller: (4 - 3) // 2 = 0, so the block sits at the top-left
    small = torch.arange(1, 7, dtype=torch.float32).reshape(1, 2, 3)
    got = paste_centered(small, torch.zeros(1, 4, 4))
    want = torch.tensor([[0, 0, 0, 0], [1, 2, 3, 0], [4, 5, 6, 0], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(got[0], want)

    # larger by 2 in width: (4 - 6) // 2 = -1 → columns 1..4 of the small noise
    # larger by 1 in height: (4 - 5) // 2 = -1 → h = 5 - 2 = 3 rows (1..3), and row 3 of `full` survives
    small = torch.arange(30, dtype=torch.float32).reshape(1, 5, 6)
    full = -torch.ones(1, 4, 4)
    got = paste_centered(small, full)
    assert torch.equal(got[0, :3], small[0, 1:4, 1:5])
    assert torch.equal(got[0, 3], -torch.ones(4))


def test_seed_resize_in_image_rng():
    # latent 8×8; resize from 48×40 px → small noise 4×5×6 (C×H×W), pasted at rows 1..5, columns 1..6
    rng = ImageRNG(SHAPE, [1234], seed_resize_from=(48, 40))
    first, second = rng.next(), rng.next()
    full, after = cpu_draws(1234, SHAPE, 2)
    (small,) = cpu_draws(1234, (4, 5, 6))
    want = full.clone()
    want[:, 1:6, 1:7] = small
    assert torch.equal(first[0], want)
    assert torch.equal(second[0], after)  # the image generator made exactly one full-size draw first

    # larger: 80×96 px → 4×12×10; dx = (8-10)//2 = -1, dy = (8-12)//2 = -2 → crop [2:10, 1:9], fills everything
    got = ImageRNG(SHAPE, [7], seed_resize_from=(80, 96)).next()[0]
    (small,) = cpu_draws(7, (4, 12, 10))
    assert torch.equal(got, small[:, 2:10, 1:9])

    # with a variation seed both noises are made at the small size, interpolated, then pasted
    got = ImageRNG(SHAPE, [1234], subseeds=[99], subseed_strength=0.5, seed_resize_from=(48, 40)).next()[0]
    (sub,) = cpu_draws(99, (4, 5, 6))
    (small,) = cpu_draws(1234, (4, 5, 6))
    want = full.clone()
    want[:, 1:6, 1:7] = slerp(0.5, small, sub)
    assert torch.equal(got, want)

    # inactive unless both sides are > 0; same size as the image: nothing changes
    plain = cpu_draws(1234, SHAPE)[0]
    for resize in ((0, 40), (48, -1), (64, 64), None):
        assert torch.equal(ImageRNG(SHAPE, [1234], seed_resize_from=resize).next()[0], plain)


def test_seed_resize_nv():
    got = ImageRNG(SHAPE, [3], source="NV", seed_resize_from=(48, 40)).next()[0].numpy()
    want = oracle_randn(3, 0, SHAPE).copy()
    want[:, 1:6, 1:7] = oracle_randn(3, 0, (4, 5, 6))
    np.testing.assert_array_equal(got, want)


# --- ENSD ------------------------------------------------------------------------------------------------------------

def test_ensd_changes_only_later_draws():
    for kwargs in ({}, {"subseeds": [99], "subseed_strength": 0.3}, {"seed_resize_from": (48, 40)}):
        plain = ImageRNG(SHAPE, [1234], **kwargs)
        ensd = ImageRNG(SHAPE, [1234], eta_noise_seed_delta=31337, **kwargs)
        assert torch.equal(plain.next(), ensd.next())
        second, third = cpu_draws(1234 + 31337, SHAPE, 2)
        e2, e3 = ensd.next()[0], ensd.next()[0]
        assert torch.equal(e2, second) and torch.equal(e3, third)
        assert not torch.equal(plain.next()[0], e2)
    with pytest.raises(ValueError, match="outside"):
        ImageRNG(SHAPE, [5], eta_noise_seed_delta=-6)


# --- sources and errors ----------------------------------------------------------------------------------------------

def test_sources_and_bad_input():
    assert resolve_rng_source("nv") == "NV" and resolve_rng_source(" CPU ") == "CPU"
    with pytest.raises(ValueError, match="RNG source"):
        resolve_rng_source("TPU")
    with pytest.raises(ValueError, match="RNG source"):
        ImageRNG(SHAPE, [1], source="mt19937")
    with pytest.raises(ValueError, match="subseed"):
        ImageRNG(SHAPE, [1], subseeds=[-1], subseed_strength=0.5)
    with pytest.raises(ValueError, match="subseed_strength"):
        ImageRNG(SHAPE, [1], subseeds=[2], subseed_strength=float("nan"))
    with pytest.raises(ValueError, match="seed_resize_from"):
        ImageRNG(SHAPE, [1], seed_resize_from=(4, 64))
    with pytest.raises(ValueError, match="seed_resize_from"):
        ImageRNG(SHAPE, [1], seed_resize_from=(64,))
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        ImageRNG((4, 8), [1], subseeds=[2], subseed_strength=0.5)
    # CPU and NV noise land on the requested device (meta stands in for an accelerator)
    for source in ("CPU", "NV"):
        assert ImageRNG(SHAPE, [1], "meta", source=source).next().device.type == "meta"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_source_needs_cuda():
    with pytest.raises(ValueError, match="CUDA is not available.*NV"):
        ImageRNG(SHAPE, [1], source="GPU")


@pytest.mark.cuda
def test_gpu_source_is_torch_cuda_generator_and_nv_emulates_it():
    shape = (4, 64, 64)
    rng = ImageRNG(shape, [0, 12345], "cuda", source="GPU", eta_noise_seed_delta=31337)
    first, second = rng.next(), rng.next()
    for i, seed in enumerate((0, 12345)):
        g = torch.Generator("cuda").manual_seed(seed)
        assert torch.equal(first[i], torch.randn(shape, generator=g, device="cuda"))
        g = torch.Generator("cuda").manual_seed(seed + 31337)
        assert torch.equal(second[i], torch.randn(shape, generator=g, device="cuda"))
    # A1111's claim: NV reproduces CUDA's first draw up to last-bit differences of the Box–Muller transform
    nv = ImageRNG(shape, [0, 12345], "cuda", source="NV").next()
    torch.testing.assert_close(nv, first, atol=1e-5, rtol=0)
