"""Schedules: bit-level checks against A1111 v1.10's values and parity with k-diffusion."""
import math

import numpy as np
import pytest
import torch

from inpaintlab.samplers import DiscreteSchedule, get_sigmas_exponential, get_sigmas_karras, img2img_sigmas
from inpaintlab.samplers.schedules import img2img_steps

# Karras(20) with the float32 table ends; n = 20 is the same on every CPU ISA
KARRAS20_HEX = [
    0x4169D594, 0x413B9B1C, 0x4115717E, 0x40EC46AD, 0x40B942F0, 0x408FFEB8, 0x405DBE8A, 0x402903A2, 0x3FFED67E,
    0x3FBDDA0D, 0x3F8B9F07, 0x3F4A7BAA, 0x3F1091CB, 0x3ECAF3EE, 0x3E8BCBDE, 0x3E3C96E5, 0x3DF88265, 0x3D9F757D,
    0x3D4694F5, 0x3CEEF0C3, 0x00000000,
]
KARRAS20_T = [999, 961.7328, 921.0421, 876.3138, 826.7906, 771.5520, 709.5298, 639.6147, 560.9753, 473.7491, 380.1319,
              285.3177, 197.0809, 123.3954, 69.2571, 34.6975, 15.4816, 5.9918, 1.7829, 0]
KARRAS20_T_QUANTIZED = [999, 962, 921, 876, 827, 772, 710, 640, 561, 474, 380, 285, 197, 123, 69, 35, 15, 6, 2, 0]
# A1111 img2img truncation: 20 steps, strength 0.75, Karras
IMG2IMG_075 = [5.789421, 4.499844, 3.464755, 2.640847, 1.990921, 1.483217, 1.090791, 0.790949, 0.564725, 0.396392,
               0.273040, 0.184169, 0.121342, 0.077861, 0.048482, 0.029168, 0.0]


def bits(t: torch.Tensor) -> list:
    return t.to(torch.float32).view(torch.int32).tolist()


@pytest.fixture(scope="module")
def schedule():
    return DiscreteSchedule()


def test_table_endpoints_bitwise(schedule):
    assert schedule.sigmas.dtype == torch.float32 and schedule.sigmas.shape == (1000,)
    # sigma_max is the same everywhere; sigma_min's last bit follows the CPU's vector kernels (0x3CEEF0C1 with AVX2,
    # 0x3CEEF0C0 with AVX-512, which is also the correctly rounded float32 chain of the stored alphas_cumprod).
    first, last = bits(schedule.sigmas[[0, -1]])
    assert first in (0x3CEEF0C0, 0x3CEEF0C1) and last == 0x4169D593
    assert schedule.sigma_min == pytest.approx(0.029167535, abs=2.5e-9)  # one float32 ulp, as above
    assert schedule.sigma_max == pytest.approx(14.614642, abs=1e-6)
    assert schedule.alphas_cumprod[0].item() == pytest.approx(0.99915, abs=1e-7)
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(0.0046601, abs=1e-7)
    assert bool((schedule.sigmas[1:] > schedule.sigmas[:-1]).all())
    assert torch.equal(schedule.log_sigmas, schedule.sigmas.log())
    assert "DiscreteSchedule" in repr(schedule)


def test_table_against_float64_formula(schedule):
    # independent numpy float64 evaluation of the LDM formula; float32 storage costs at most ~1 ulp per stage
    roots = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64)
    alpha_bar = np.cumprod(1.0 - roots ** 2)
    sigma = np.sqrt((1.0 - alpha_bar) / alpha_bar)
    ac_err = np.abs(schedule.alphas_cumprod.double().numpy() - alpha_bar) / alpha_bar
    sigma_err = np.abs(schedule.sigmas.double().numpy() - sigma) / sigma
    assert ac_err.max() <= 2 ** -24 * 1.01, ac_err.max()  # rounding float64 -> float32 once
    assert sigma_err.max() < 2e-5, sigma_err.max()  # 1 - alpha_bar cancels near t = 0


def test_table_close_to_diffusers(schedule):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    ref = ((1 - sched.alphas_cumprod) / sched.alphas_cumprod) ** 0.5
    rel = ((schedule.sigmas - ref).abs() / ref).max().item()
    assert rel < 2e-5, rel  # spec §1: 8.7e-6 (diffusers rounds betas to float32 before the cumprod)


def test_downcast_table():
    s = DiscreteSchedule(downcast=True)
    assert s.sigmas.dtype == torch.float16
    assert s.sigma_min == 0.03125 and s.sigma_max == 14.609375


def test_karras20_hex_column(schedule):
    sigmas = get_sigmas_karras(20, schedule.sigma_min, schedule.sigma_max)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (21,)
    assert bits(sigmas) == [h - (1 << 32) if h >= 1 << 31 else h for h in KARRAS20_HEX]


def test_sigma_to_t_of_karras20(schedule):
    sigmas = get_sigmas_karras(20, schedule.sigma_min, schedule.sigma_max)[:-1]
    t = schedule.sigma_to_t(sigmas)
    assert t.dtype == torch.float32
    assert torch.allclose(t, torch.tensor(KARRAS20_T), atol=1e-4, rtol=0), (t - torch.tensor(KARRAS20_T)).abs().max()
    assert t[0].item() == 999.0 and t[-1].item() == 0.0  # exactly, although the ends sit 1-2 ulps off the table
    tq = schedule.sigma_to_t(sigmas, quantize=True)
    assert tq.dtype == torch.int64 and tq.tolist() == KARRAS20_T_QUANTIZED


def test_sigma_to_t_edges_and_roundtrip(schedule):
    assert schedule.sigma_to_t(torch.tensor([100.0, 0.001, 0.0])).tolist() == [999.0, 0.0, 0.0]
    # every table entry maps exactly to its index (measured max abs error 0 over all 1000)
    idx = torch.arange(1000)
    mapped = schedule.sigma_to_t(schedule.sigmas[idx])
    assert torch.equal(mapped, idx.float()), (mapped - idx.float()).abs().max()
    # t_to_sigma inverts sigma_to_t to float32 rounding: measured max abs error 6.1e-5 here (1 ulp of t in [512, 999])
    # and 1.2e-4 (2 ulp) over a dense grid of 100001 t; 2.5e-4 allows 4 ulp
    t = torch.rand(200, generator=torch.Generator().manual_seed(0)) * 999
    back = schedule.sigma_to_t(schedule.t_to_sigma(t))
    assert torch.allclose(back, t, atol=2.5e-4, rtol=0), (back - t).abs().max()
    with pytest.raises(ValueError, match="t must lie"):
        schedule.t_to_sigma(torch.tensor([1000.0]))


def test_get_sigmas_uniform(schedule):
    s = schedule.get_sigmas(20)
    assert s.shape == (21,) and s[-1].item() == 0.0
    # t = 999 and t = 0 hit table entries; exp(log(sigma)) may move them by an ulp
    assert torch.allclose(s[[0, 19]], schedule.sigmas[[999, 0]], rtol=2.5e-7, atol=0)
    assert bool((s[1:] < s[:-1]).all())
    with pytest.raises(ValueError, match="positive int"):
        schedule.get_sigmas(0)


def test_exponential(schedule):
    s = get_sigmas_exponential(10, schedule.sigma_min, schedule.sigma_max)
    assert s.shape == (11,) and s[-1].item() == 0.0
    ratios = s[1:-1] / s[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-5)
    assert s[0].item() == pytest.approx(schedule.sigma_max, rel=1e-6)
    assert s[-2].item() == pytest.approx(schedule.sigma_min, rel=1e-6)


def test_karras_bad_input():
    with pytest.raises(ValueError, match="sigma_min"):
        get_sigmas_karras(10, 5.0, 1.0)
    with pytest.raises(ValueError, match="positive int"):
        get_sigmas_karras(0, 0.1, 10.0)
    with pytest.raises(ValueError, match="rho"):
        get_sigmas_karras(10, 0.1, 10.0, rho=0)


def test_img2img_075(schedule):
    full = get_sigmas_karras(20, schedule.sigma_min, schedule.sigma_max)
    sched = img2img_sigmas(full, 20, 0.75)
    assert img2img_steps(20, 0.75) == 15
    assert len(sched) - 1 == 16
    assert torch.equal(sched, full[4:])
    assert torch.allclose(sched, torch.tensor(IMG2IMG_075), atol=6e-7, rtol=0)
    assert sched.data_ptr() != full.data_ptr()


def test_img2img_strength_ends(schedule):
    full = schedule.get_sigmas(20)
    assert torch.equal(img2img_sigmas(full, 20, 1.0), full)  # clamped to 0.999: t_enc = 19, all 20 steps
    one = img2img_sigmas(full, 20, 0.0)
    assert torch.equal(one, full[-2:])  # still one step from the smallest non-zero sigma
    assert img2img_steps(100, 0.29) == 28  # Python truncation of 28.999...
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="denoising_strength"):
            img2img_sigmas(full, 20, bad)
    with pytest.raises(ValueError, match="steps \\+ 1"):
        img2img_sigmas(full, 19, 0.5)


# ---- parity with k-diffusion (same CPU, so the ISA-dependent linspace is the same on both sides) ----

def _kd_table(kdiff, alphas_cumprod):
    return kdiff.external.DiscreteEpsDDPMDenoiser(None, alphas_cumprod, quantize=False)


@pytest.mark.parametrize("downcast", [False, True])
def test_table_and_t_maps_match_kdiffusion(kdiff, downcast):
    ours = DiscreteSchedule(downcast=downcast)
    ref = _kd_table(kdiff, ours.alphas_cumprod)
    assert torch.equal(ours.sigmas, ref.sigmas) and torch.equal(ours.log_sigmas, ref.log_sigmas)
    g = torch.Generator().manual_seed(1)
    # random sigmas across and beyond the table, exact table entries, and the Karras ends
    sigma = torch.cat([torch.exp(torch.empty(4000).uniform_(-5.0, 3.5, generator=g)),
                       ours.sigmas.float()[::37], get_sigmas_karras(20, ours.sigma_min, ours.sigma_max)[:-1]])
    for quantize in (False, True):
        a, b = ours.sigma_to_t(sigma, quantize=quantize), ref.sigma_to_t(sigma, quantize=quantize)
        assert a.dtype == b.dtype and torch.equal(a, b), (a.double() - b.double()).abs().max()
    t = torch.cat([torch.rand(1000, generator=g) * 999, torch.arange(0, 1000, 7).float()])
    assert torch.equal(ours.t_to_sigma(t), ref.t_to_sigma(t))
    for n in (1, 2, 7, 20, 33, 50):
        assert torch.equal(ours.get_sigmas(n), ref.get_sigmas(n))


def test_karras_and_exponential_match_kdiffusion(kdiff, schedule):
    lo, hi = schedule.sigma_min, schedule.sigma_max
    for n in list(range(1, 60)) + [75, 100, 150]:
        assert torch.equal(get_sigmas_karras(n, lo, hi), kdiff.sampling.get_sigmas_karras(n, lo, hi)), n
        assert torch.equal(get_sigmas_exponential(n, lo, hi), kdiff.sampling.get_sigmas_exponential(n, lo, hi)), n
    assert torch.equal(get_sigmas_karras(12, 0.1, 10.0, rho=3.5), kdiff.sampling.get_sigmas_karras(12, 0.1, 10.0, 3.5))
    assert math.isclose(get_sigmas_karras(20, lo, hi)[0].item(), 14.614643, rel_tol=1e-7)
