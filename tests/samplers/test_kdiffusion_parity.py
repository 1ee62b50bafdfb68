"""Every k-diffusion-family sampler against k-diffusion 0.1.1.post1 itself: same denoiser, same noise, bitwise.

The denoiser is a smooth random non-linear function of x, sigma and the channel. Noise: per-image seeded generators
(``ImageRNG``) handed to both as ``noise_sampler``; k-diffusion's Euler, Heun and DPM2 take no noise sampler, so
their ``torch.randn_like`` is routed to the same generators the way A1111 does it (replacing the ``torch`` name in
k-diffusion's sampling module). SDE samplers: k-diffusion's own ``BrownianTreeNoiseSampler`` with the same seeds.
Measured max abs difference: 0 for every sampler and schedule below.
"""
import math
import types

import pytest
import torch

from inpaintlab.samplers import (DiscreteSchedule, ImageRNG, build_sigmas, get_sigmas_karras, img2img_sigmas,
                                 sample_dpm_2, sample_dpm_2_ancestral, sample_dpm_adaptive, sample_dpm_fast,
                                 sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral, sample_dpmpp_3m_sde,
                                 sample_dpmpp_sde, sample_heun, sample_lms)
from inpaintlab.samplers.brownian import BrownianTreeNoiseSampler, brownian_noise_sampler

SHAPE = (4, 6, 6)
SEEDS = [11, 12]


def toy_denoiser(seed):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(1, 4, 1, 1, generator=g) * 0.3
    freq = 1 + torch.rand(1, 4, 1, 1, generator=g) * 2

    def model(x, sigma):
        s = sigma.reshape(-1, 1, 1, 1)
        base = mu + (x - mu) * (0.25 / (0.25 + s * s))
        return base + 0.05 * torch.sin(freq * x + s.log()) / (1 + s)
    return model


class _Counted:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, sigma, **kwargs):
        self.calls += 1
        return self.model(x, sigma, **kwargs)


@pytest.fixture(scope="module")
def schedule():
    return DiscreteSchedule()


def _sigmas(schedule, which):
    karras = get_sigmas_karras(10, schedule.sigma_min, schedule.sigma_max)
    return {
        "karras10": karras,
        "uniform7": schedule.get_sigmas(7),
        "img2img": img2img_sigmas(karras, 10, 0.6),
        "one_step": schedule.get_sigmas(1),
        "exponential8": build_sigmas(schedule, "DPM++ 2M SDE", "Automatic", 8),
    }[which]


def _start(sigmas, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(SEEDS), *SHAPE, generator=g) * 0.7 + torch.randn(len(SEEDS), *SHAPE, generator=g) * sigmas[0]


def _rng():
    rng = ImageRNG(SHAPE, SEEDS)
    rng.next()  # the initial noise, as in a pipeline
    return rng


def _hijacked(kdiff, rng):
    """k-diffusion's sampling module with ``torch.randn_like`` drawing from ``rng`` (A1111's TorchHijack)."""
    hijack = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    hijack.randn_like = lambda x, **kwargs: rng.next()
    return hijack


def _assert_same(ours, ref, what):
    diff = (ours - ref).abs().max().item()
    assert torch.equal(ours, ref), f"{what}: max abs diff {diff}"


SCHEDULES = ["karras10", "uniform7", "img2img", "one_step"]


@pytest.mark.parametrize("which", SCHEDULES)
@pytest.mark.parametrize("name,churn", [("heun", {}), ("dpm_2", {}),
                                        ("heun", dict(s_churn=1.5, s_tmin=0.1, s_tmax=8.0, s_noise=1.01)),
                                        ("dpm_2", dict(s_churn=3.0, s_noise=0.98))])
def test_churn_samplers(kdiff, schedule, which, name, churn):
    sigmas = _sigmas(schedule, which)
    x = _start(sigmas)
    ours_fn = {"heun": sample_heun, "dpm_2": sample_dpm_2}[name]
    rng_a, rng_b = _rng(), _rng()
    model = _Counted(toy_denoiser(1))
    ours = ours_fn(model, x, sigmas, disable=True, noise_sampler=rng_a.noise_sampler, **churn)
    saved = kdiff.sampling.torch
    kdiff.sampling.torch = _hijacked(kdiff, rng_b)
    try:
        ref = getattr(kdiff.sampling, f"sample_{name}")(toy_denoiser(1), x, sigmas, disable=True, **churn)
    finally:
        kdiff.sampling.torch = saved
    _assert_same(ours, ref, f"{name} {which} {churn}")
    n = len(sigmas) - 1
    assert rng_a.draws == rng_b.draws == 1 + n  # one draw per step, used or not
    assert model.calls == 2 * n - 1  # second evaluation on every step but the one to 0


@pytest.mark.parametrize("which", SCHEDULES)
@pytest.mark.parametrize("name", ["dpm_2_ancestral", "dpmpp_2s_ancestral"])
@pytest.mark.parametrize("eta,s_noise", [(1.0, 1.0), (0.6, 1.02), (0.0, 1.0)])
def test_ancestral_samplers(kdiff, schedule, which, name, eta, s_noise):
    sigmas = _sigmas(schedule, which)
    x = _start(sigmas)
    ours_fn = {"dpm_2_ancestral": sample_dpm_2_ancestral, "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral}[name]
    rng_a, rng_b = _rng(), _rng()
    model = _Counted(toy_denoiser(2))
    ours = ours_fn(model, x, sigmas, disable=True, eta=eta, s_noise=s_noise, noise_sampler=rng_a.noise_sampler)
    ref = getattr(kdiff.sampling, f"sample_{name}")(toy_denoiser(2), x, sigmas, disable=True, eta=eta,
                                                     s_noise=s_noise, noise_sampler=rng_b.noise_sampler)
    _assert_same(ours, ref, f"{name} {which} eta={eta}")
    n = len(sigmas) - 1
    assert rng_a.draws == rng_b.draws == 1 + n - 1  # no draw on the step to 0
    if eta == 1.0:
        assert model.calls == 2 * n - 1


@pytest.mark.parametrize("which", SCHEDULES)
def test_lms(kdiff, schedule, which):
    sigmas = _sigmas(schedule, which)
    x = _start(sigmas)
    model = _Counted(toy_denoiser(3))
    ours = sample_lms(model, x, sigmas, disable=True)
    ref = kdiff.sampling.sample_lms(toy_denoiser(3), x, sigmas, disable=True)
    _assert_same(ours, ref, f"lms {which}")
    assert model.calls == len(sigmas) - 1


BROWNIAN = {"dpmpp_sde": sample_dpmpp_sde, "dpmpp_2m_sde": sample_dpmpp_2m_sde, "dpmpp_3m_sde": sample_dpmpp_3m_sde}


@pytest.mark.parametrize("which", ["karras10", "exponential8", "img2img"])
@pytest.mark.parametrize("name,kwargs", [("dpmpp_sde", {}), ("dpmpp_sde", dict(eta=0.5, s_noise=1.03)),
                                         ("dpmpp_2m_sde", {}), ("dpmpp_2m_sde", dict(solver_type="heun")),
                                         ("dpmpp_2m_sde", dict(eta=0.0)), ("dpmpp_2m_sde", dict(eta=0.7)),
                                         ("dpmpp_3m_sde", {}), ("dpmpp_3m_sde", dict(eta=0.0, s_noise=0.9))])
def test_brownian_samplers(kdiff, schedule, which, name, kwargs):
    sigmas = _sigmas(schedule, which)
    full = _sigmas(schedule, "karras10") if which == "img2img" else sigmas  # the tree spans the full schedule
    x = _start(sigmas)
    lo, hi = full[full > 0].min(), full.max()
    ours_ns = brownian_noise_sampler(x, full, SEEDS)
    ref_ns = kdiff.sampling.BrownianTreeNoiseSampler(x, lo, hi, seed=SEEDS)
    model = _Counted(toy_denoiser(4))
    ours = BROWNIAN[name](model, x, sigmas, disable=True, noise_sampler=ours_ns, **kwargs)
    ref = getattr(kdiff.sampling, f"sample_{name}")(toy_denoiser(4), x, sigmas, disable=True, noise_sampler=ref_ns,
                                                     **kwargs)
    _assert_same(ours, ref, f"{name} {which} {kwargs}")
    n = len(sigmas) - 1
    assert model.calls == (2 * n - 1 if name == "dpmpp_sde" else n)


def test_brownian_tree_matches_kdiffusion_and_is_per_image(kdiff, schedule):
    sigmas = _sigmas(schedule, "karras10")
    x = torch.zeros(2, *SHAPE)
    ours = brownian_noise_sampler(x, sigmas, SEEDS)
    ref = kdiff.sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=SEEDS)
    alone = BrownianTreeNoiseSampler(x[1:], sigmas[sigmas > 0].min(), sigmas.max(), SEEDS[1:])
    for a, b in zip(sigmas[:-2], sigmas[1:-1]):
        noise = ours(a, b)
        assert torch.equal(noise, ref(a, b))
        assert torch.equal(noise[1], alone(a, b)[0])  # batch independent: image 1's tree is its own seed's
    assert torch.equal(ours(sigmas[3], sigmas[1]), -ours(sigmas[1], sigmas[3]))
    # an increment over [s, s'] is N(0, 1) after normalising: check its moments on a bigger draw
    big = BrownianTreeNoiseSampler(torch.zeros(1, 64, 64, 16), 0.03, 14.6, [5])
    sample = big(torch.tensor(3.0), torch.tensor(1.0))
    assert abs(sample.mean().item()) < 0.02 and abs(sample.std().item() - 1) < 0.02
    with pytest.raises(ValueError, match="seed"):
        BrownianTreeNoiseSampler(x, 0.1, 1.0, [1])
    with pytest.raises(ValueError, match="source"):
        BrownianTreeNoiseSampler(x, 0.1, 1.0, SEEDS, source="TPU")


def test_sde_samplers_need_a_noise_sampler(schedule):
    sigmas = _sigmas(schedule, "karras10")
    with pytest.raises(ValueError, match="noise_sampler"):
        sample_dpmpp_sde(toy_denoiser(0), _start(sigmas), sigmas, disable=True)
    # eta = 0 makes the 2M/3M SDE samplers deterministic; no noise sampler is needed then
    out = sample_dpmpp_2m_sde(toy_denoiser(0), _start(sigmas), sigmas, disable=True, eta=0.0)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="solver_type"):
        sample_dpmpp_2m_sde(toy_denoiser(0), _start(sigmas), sigmas, solver_type="euler")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpm_fast(kdiff, schedule, n, eta):
    x = _start(torch.tensor([schedule.sigma_max]))
    rng_a, rng_b = _rng(), _rng()
    model = _Counted(toy_denoiser(5))
    ours = sample_dpm_fast(model, x, schedule.sigma_min, schedule.sigma_max, n, disable=True, eta=eta,
                           noise_sampler=rng_a.noise_sampler)
    ref = kdiff.sampling.sample_dpm_fast(toy_denoiser(5), x, schedule.sigma_min, schedule.sigma_max, n,
                                         disable=True, eta=eta, noise_sampler=rng_b.noise_sampler)
    _assert_same(ours, ref, f"dpm_fast n={n} eta={eta}")
    assert model.calls == n
    assert rng_a.draws - 1 == n // 3 + 1  # the noise sampler is called on every step, even with eta = 0


@pytest.mark.parametrize("eta,order", [(0.0, 3), (1.0, 3), (0.0, 2)])
def test_dpm_adaptive(kdiff, schedule, eta, order):
    x = _start(torch.tensor([schedule.sigma_max]))
    rng_a, rng_b = _rng(), _rng()
    model = _Counted(toy_denoiser(6))
    ours, info = sample_dpm_adaptive(model, x, schedule.sigma_min, schedule.sigma_max, disable=True, eta=eta,
                                     order=order, noise_sampler=rng_a.noise_sampler, return_info=True)
    ref, ref_info = kdiff.sampling.sample_dpm_adaptive(toy_denoiser(6), x, schedule.sigma_min, schedule.sigma_max,
                                                       disable=True, eta=eta, order=order,
                                                       noise_sampler=rng_b.noise_sampler, return_info=True)
    _assert_same(ours, ref, f"dpm_adaptive eta={eta} order={order}")
    assert info == ref_info
    assert model.calls == info["nfe"] == order * info["steps"]
    assert rng_a.draws - 1 == info["n_accept"]  # one draw per accepted step


def test_callbacks_of_new_samplers(schedule):
    sigmas = _sigmas(schedule, "karras10")
    x = _start(sigmas)
    for fn in (sample_heun, sample_dpm_2, sample_dpm_2_ancestral, sample_lms, sample_dpmpp_2s_ancestral):
        seen = []
        fn(toy_denoiser(0), x, sigmas, disable=True, callback=seen.append)
        assert [c["i"] for c in seen] == list(range(10))
        assert all({"x", "i", "sigma", "sigma_hat", "denoised"} <= set(c) for c in seen)
    seen = []
    sample_dpm_fast(toy_denoiser(0), x, 0.03, 14.6, 9, disable=True, callback=seen.append)
    assert len(seen) == 4 and all(math.isfinite(float(c["sigma"])) for c in seen)
