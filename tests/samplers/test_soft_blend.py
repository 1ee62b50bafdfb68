"""SoftInpaintBlend and DifferentialBlend on toy denoisers, against hand-written loops in float64 / float32.

Toy denoiser: the exact denoiser of Gaussian data N(0, s²), ``D(x, σ) = x·s²/(s² + σ²)``, so every value is known in
closed form.
"""
import numpy as np
import pytest
import torch

from inpaintlab.masking import soft
from inpaintlab.samplers import (DifferentialBlend, InpaintBlend, SoftInpaintBlend, sample_dpmpp_2m, sample_euler,
                                 sample_euler_ancestral)

S2 = 0.8 ** 2


def toy(x, sigma, **kwargs):
    s = sigma.reshape(-1, 1, 1, 1)
    return x * S2 / (S2 + s * s)


def make(seed=0, shape=(2, 4, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.rand(shape[-2:], generator=g)


SIGMAS = torch.tensor([7.0, 3.0, 1.2, 0.4, 0.0])


def test_soft_blend_euler_matches_float64_loop():
    init, noise, m = make(1)
    nmask = m.expand(4, -1, -1)
    settings = soft.SoftInpaintingSettings()
    out = sample_euler(SoftInpaintBlend(toy, init, nmask, settings), init + noise * SIGMAS[0], SIGMAS)
    # the same loop in float64, blend written from the formula (t = nmask^(σ·0.5), power mean with d = 4)
    x, a, mm = (init + noise * SIGMAS[0]).double().numpy(), init.double().numpy(), m.double().numpy()
    sig = SIGMAS.double().numpy()
    for i in range(4):
        den = x * S2 / (S2 + sig[i] ** 2)
        t = mm ** (sig[i] * 0.5)
        lerp = a * (1 - t) + den * t
        na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(den, axis=1, keepdims=True)
        den = lerp * ((1 - t) * na ** 4 + t * nb ** 4) ** 0.25 / (np.linalg.norm(lerp, axis=1, keepdims=True) + 1e-5)
        x = x + (x - den) / sig[i] * (sig[i + 1] - sig[i])
    # float32 sampler vs float64 loop: measured 5.4e-7 absolute
    np.testing.assert_allclose(out.numpy(), x, atol=1e-5, rtol=1e-5)


def test_soft_blend_binary_mask_is_the_binary_blend_up_to_the_shrink():
    init, noise, m = make(2)
    nmask = (m > 0.5).float()[None, None]
    start = init + noise * SIGMAS[0]
    binary = sample_dpmpp_2m(InpaintBlend(toy, init, nmask), start, SIGMAS)
    softly = sample_dpmpp_2m(SoftInpaintBlend(toy, init, nmask), start, SIGMAS)
    diff = (softly - binary).norm(dim=1).max()
    # the 1e-5 length shrink of each call, carried through the two-step history: measured 2.0e-5
    assert 0 < diff <= 3e-5


def test_soft_blend_uses_sigma_and_before_denoising_mode():
    init, noise, m = make(3, (1, 4, 3, 3))
    nmask = m.expand(4, -1, -1)
    seen = {}

    def inner(x, sigma, **kwargs):
        seen["x"] = x
        return toy(x, sigma)

    x = init + noise * 2.0
    sigma = torch.tensor([2.0])
    t = soft.modified_nmask(nmask, sigma[0])
    after = SoftInpaintBlend(inner, init, nmask)(x, sigma)
    assert torch.equal(after, soft.latent_blend(init, toy(x, sigma), t))
    before = SoftInpaintBlend(inner, init, nmask, mask_before_denoising=True,
                              exponent_sigma=lambda s: s * 100)(x, sigma)
    blended = soft.latent_blend(init, x, soft.modified_nmask(nmask, sigma[0] * 100))
    assert torch.equal(seen["x"], blended) and torch.equal(before, toy(blended, sigma))
    with pytest.raises(ValueError, match="broadcast"):
        SoftInpaintBlend(toy, init, torch.ones(4, 2, 2))


def test_differential_hand_computed_two_steps():
    init = torch.tensor([0.5, -1.0, 2.0, 0.25]).reshape(1, 4, 1, 1).expand(1, 4, 2, 2).clone()
    noise = torch.tensor([[1.0, -0.5], [0.3, 2.0]]).expand(1, 4, 2, 2).clone()
    change = torch.tensor([[1.0, 0.7], [0.3, 0.0]])  # keep = 0, .3, .7, 1; thresholds 0 and 1/2
    sigmas = torch.tensor([2.0, 0.5, 0.0])
    out = sample_euler(DifferentialBlend(toy, init, change, sigmas, noise), init + noise * 2.0, sigmas)
    # step 0 keeps keep > 0: pixels 2, 3, 4 are set to init + 2·noise, which x already is
    x0 = (init + 2.0 * noise).double().numpy()
    c0, c1 = S2 / (S2 + 4.0), S2 / (S2 + 0.25)
    x1 = x0 + (x0 - c0 * x0) / 2.0 * (0.5 - 2.0)
    # step 1 keeps keep > 1/2: pixels (1,0) and (1,1) restart from init + 0.5·noise
    kept = (init + 0.5 * noise).double().numpy()
    x1[..., 1, :] = kept[..., 1, :]
    x2 = x1 + (x1 - c1 * x1) / 0.5 * (0.0 - 0.5)  # = c1 · x1
    np.testing.assert_allclose(out.numpy(), x2, rtol=1e-6)
    # channel 0 by hand: free pixels take two Euler steps, kept ones one step from init + 0.5·noise
    free = 1 - 0.75 * (1 - c0)
    np.testing.assert_allclose(out[0, 0].numpy(), [[c1 * 2.5 * free, c1 * -0.5 * free], [c1 * 0.65, c1 * 1.5]],
                               rtol=1e-6)


def reference_loop(init, noise, change, sigmas, denoiser):
    """The reference pipeline's loop with an Euler step: replace, then step from the replaced latent."""
    n = len(sigmas) - 1
    keep = 1 - change
    x = init + noise * sigmas[0]
    for i in range(n):
        mask = keep > i / n
        x = torch.where(mask, init + noise * sigmas[i], x)
        d = (x - denoiser(x, sigmas[i].reshape(1).expand(x.shape[0]))) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def test_differential_euler_equals_the_reference_loop():
    init, noise, change = make(4)
    sigmas = torch.tensor([9.0, 5.0, 2.5, 1.0, 0.3, 0.0])
    out = sample_euler(DifferentialBlend(toy, init, change, sigmas, noise), init + noise * sigmas[0], sigmas)
    expected = reference_loop(init, noise, change, sigmas, toy)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m"])
def test_differential_extremes(sampler, kdiff):
    init, noise, change = make(5)
    sigmas = torch.tensor([9.0, 5.0, 2.5, 1.0, 0.3, 0.0])
    ours = {"euler": sample_euler, "euler_ancestral": sample_euler_ancestral, "dpmpp_2m": sample_dpmpp_2m}[sampler]

    def run(fn, change_map):
        torch.manual_seed(0)
        return fn(DifferentialBlend(toy, init, change_map, sigmas, noise), init + noise * sigmas[0], sigmas)

    torch.manual_seed(0)
    plain = ours(toy, init + noise * sigmas[0], sigmas)
    # change 1 everywhere: never reset, the plain sampler bit for bit
    assert torch.equal(run(ours, torch.ones_like(change)), plain)
    # k-diffusion's own sampler with the same wrapper gives the same numbers (the reset reaches its state too)
    theirs = getattr(kdiff.sampling, f"sample_{sampler}")
    assert torch.equal(run(theirs, change), run(ours, change))
    # change 0: every step restarts from the noised original, so the last step denoises init + noise·σ_min
    kept = run(ours, torch.zeros_like(change))
    last = init + noise * sigmas[-2]
    if sampler == "euler_ancestral":
        assert torch.allclose(kept, toy(last, sigmas[-2:-1].expand(2)), atol=1e-6)
    else:
        np.testing.assert_allclose(kept.numpy(), toy(last, sigmas[-2:-1].expand(2)).numpy(), rtol=1e-6, atol=1e-7)


def test_differential_checks_inputs():
    init, noise, change = make(6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DifferentialBlend(toy, init, change * 2, SIGMAS, noise)
    with pytest.raises(ValueError, match="noise"):
        DifferentialBlend(toy, init, change, SIGMAS, noise[:1])
    blend = DifferentialBlend(toy, init, change, SIGMAS, noise)
    assert [blend.step_index(s) for s in SIGMAS[:-1]] == [0, 1, 2, 3]
    assert blend.step_index(torch.tensor(8.0)) == 0 and blend.step_index(torch.tensor(2.0)) == 2
    assert "DifferentialBlend" in repr(blend) and "SoftInpaintBlend" in repr(SoftInpaintBlend(toy, init, change[None, None]))


def test_differential_with_timesteps_and_vp_noising():
    init, noise, change = make(7, (1, 4, 3, 3))
    timesteps = torch.tensor([801.0, 601.0, 401.0, 0.0])
    abar = lambda t: torch.exp(-t / 400.0)  # noqa: E731  (any decreasing toy schedule)
    vp = lambda x0, n, t: abar(t).sqrt().reshape(-1, 1, 1, 1) * x0 + (1 - abar(t)).sqrt().reshape(-1, 1, 1, 1) * n  # noqa: E731
    seen = []
    blend = DifferentialBlend(lambda x, t: seen.append(x.clone()) or x, init, change, timesteps, noise, add_noise=vp)
    x = vp(init, noise, timesteps[:1]).clone()
    blend(x, timesteps[1:2])  # the call at the second timestep: threshold 1/3
    keep = (1 - change) > 1 / 3
    expected = torch.where(keep, vp(init, noise, timesteps[1:2]), vp(init, noise, timesteps[:1]))
    assert torch.equal(seen[0], expected) and torch.equal(x, expected)
