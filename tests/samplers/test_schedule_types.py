"""Every A1111 v1.10 schedule type against an independent float64 evaluation of its formula, n = 1, 2, 4, 10, 20, 30.

The oracles below use numpy float64 and the float32 table values only; tolerances are relative and cover float32
rounding of the library's torch arithmetic (measured maxima in the comments).
"""
import math

import numpy as np
import pytest
import torch

from inpaintlab.samplers import (AYS_SD1, SAMPLER_CONFIGS, SCHEDULERS, DiscreteSchedule, LCMSchedule, build_sigmas,
                                 discard_penultimate, get_sigmas_align_your_steps, get_sigmas_beta, get_sigmas_ddim,
                                 get_sigmas_exponential, get_sigmas_karras, get_sigmas_kl_optimal, get_sigmas_normal,
                                 get_sigmas_polyexponential, get_sigmas_sgm_uniform, get_sigmas_simple,
                                 resolve_sampler)

NS = [1, 2, 4, 10, 20, 30]


@pytest.fixture(scope="module")
def table():
    return DiscreteSchedule()


def _log_table(table):
    return np.log(table.sigmas.double().numpy())


def _t_to_sigma64(log_sigmas, t):
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, len(log_sigmas) - 1)
    w = t - lo
    return np.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[hi])


def _check(ours, ref, rtol, zero=True):
    ours = ours.double().numpy()
    ref = np.asarray(ref, dtype=np.float64)
    if zero:
        ref = np.append(ref, 0.0)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours[-1] == ref[-1] if zero else True
    rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-30)
    assert rel.max() <= rtol, rel.max()
    return rel.max()


@pytest.mark.parametrize("n", NS)
def test_uniform_and_normal(table, n):
    ls = _log_table(table)
    ref = _t_to_sigma64(ls, np.linspace(999, 0, n))
    _check(table.get_sigmas(n), ref, 4e-6)
    _check(build_sigmas(table, "Euler", "Uniform", n), ref, 4e-6)
    _check(build_sigmas(table, "Euler", "Automatic", n), ref, 4e-6)  # Euler has no default: the model's schedule
    # "Normal" spans t(sigma_max) .. t(sigma_min) = 999 .. 0 for the table ends: the same schedule
    assert torch.equal(get_sigmas_normal(n, table.sigma_min, table.sigma_max, table), table.get_sigmas(n))


@pytest.mark.parametrize("n", NS)
def test_sgm_uniform(table, n):
    ref = _t_to_sigma64(_log_table(table), np.linspace(999, 0, n + 1)[:-1])
    _check(get_sigmas_sgm_uniform(n, table.sigma_min, table.sigma_max, table), ref, 4e-6)
    assert torch.equal(build_sigmas(table, "Euler", "SGMUniform", n), build_sigmas(table, "Euler", "sgm_uniform", n))


@pytest.mark.parametrize("n", NS)
def test_karras_exponential_polyexponential(table, n):
    lo, hi = table.sigma_min, table.sigma_max
    r = np.linspace(0, 1, n)
    karras = (hi ** (1 / 7) + r * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    _check(get_sigmas_karras(n, lo, hi), karras, 2e-6)  # measured <= 6.6e-7
    expo = np.exp(np.linspace(math.log(hi), math.log(lo), n))
    _check(get_sigmas_exponential(n, lo, hi), expo, 2e-6)
    _check(get_sigmas_polyexponential(n, lo, hi), expo, 2e-6)
    poly2 = np.exp(np.linspace(1, 0, n) ** 2 * (math.log(hi) - math.log(lo)) + math.log(lo))
    _check(get_sigmas_polyexponential(n, lo, hi, rho=2.0), poly2, 2e-6)
    _check(build_sigmas(table, "Euler", "Karras", n, rho=5.0),
           (hi ** (1 / 5) + r * (lo ** (1 / 5) - hi ** (1 / 5))) ** 5, 2e-6)


@pytest.mark.parametrize("n", NS)
def test_kl_optimal_ends_at_sigma_min_without_zero(table, n):
    lo, hi = table.sigma_min, table.sigma_max
    i = np.arange(n + 1)
    ref = np.tan(i / n * math.atan(lo) + (1 - i / n) * math.atan(hi))
    ours = get_sigmas_kl_optimal(n, lo, hi)
    _check(ours, ref, 3e-6, zero=False)  # tan amplifies the float32 angle error near atan(14.6): measured 6.6e-7
    assert len(ours) == n + 1 and ours[-1].item() > 0  # A1111 quirk: no trailing 0
    assert ours[-1].item() == pytest.approx(lo, rel=1e-6)


@pytest.mark.parametrize("n", NS + [11, 25])
def test_align_your_steps(n):
    levels = np.array(AYS_SD1, dtype=np.float64)
    ours = get_sigmas_align_your_steps(n)
    if n == len(levels):
        assert torch.equal(ours, torch.tensor(list(AYS_SD1) + [0.0], dtype=torch.float32))  # the list as is
        return
    # independent: log-linear interpolation of the levels over positions 0..1 (ascending), read back descending;
    # n = 1 gives the smallest level, as A1111's interpolation does
    asc = np.log(levels[::-1])
    pos = np.linspace(0, 1, len(levels))
    ref = np.empty(n)
    for i in range(n):
        u = i / (n - 1) if n > 1 else 0.0
        k = min(int(u * (len(levels) - 1)), len(levels) - 2)
        w = (u - pos[k]) / (pos[k + 1] - pos[k])
        ref[n - 1 - i] = math.exp(asc[k] + w * (asc[k + 1] - asc[k]))
    _check(ours, ref, 1e-6)
    assert ours[0].item() == pytest.approx(14.615 if n > 1 else 0.029, rel=1e-6)


@pytest.mark.parametrize("n", NS)
def test_simple(table, n):
    sig = table.sigmas.double().numpy()
    ref = [sig[-(1 + (x * 1000) // n)] for x in range(n)]
    _check(get_sigmas_simple(n, table), ref, 0.0)


@pytest.mark.parametrize("n", NS + [25, 50, 150])
def test_ddim_schedule_length_and_start(table, n):
    sig = table.sigmas.double().numpy()
    stride = max(1000 // n, 1)
    expected_steps = math.ceil(999 / stride)
    ref = [sig[1 + k * stride] for k in range(expected_steps)][::-1]
    ours = get_sigmas_ddim(n, table)
    _check(ours, ref, 0.0)
    assert len(ours) - 1 == expected_steps
    assert {30: 31, 150: 167, 10: 10, 20: 20}.get(n, expected_steps) == expected_steps
    assert ours[0].item() < table.sigma_max  # starts below sigma_max (n = 10: 8.39)


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("alpha,beta", [(0.6, 0.6), (2.0, 0.5)])
def test_beta(table, n, alpha, beta):
    special = pytest.importorskip("scipy.special")
    lo, hi = table.sigma_min, table.sigma_max
    q = [1 - i / (n - 1) if n > 1 else 1.0 for i in range(n)]
    quantiles = special.betaincinv(alpha, beta, np.array(q))
    assert np.allclose(special.betainc(alpha, beta, quantiles), q, atol=1e-12)
    ref = lo + quantiles * (hi - lo)
    _check(get_sigmas_beta(n, lo, hi, alpha, beta), ref, 1e-6)
    if (alpha, beta) == (0.6, 0.6):
        _check(build_sigmas(table, "Euler", "Beta", n), ref, 1e-6)


def test_spec_examples_n10(table):
    kl = build_sigmas(table, "Euler", "KL Optimal", 10)
    assert kl[:3].tolist() == pytest.approx([14.6146, 4.5650, 2.6329], abs=1e-4)
    assert kl[-2:].tolist() == pytest.approx([0.1783, 0.0292], abs=1e-4)
    ddim = build_sigmas(table, "Euler", "DDIM", 10)
    assert ddim[:2].tolist() == pytest.approx([8.3907, 5.1344], abs=1e-4) and ddim[-2:].tolist() == pytest.approx(
        [0.0413, 0.0], abs=1e-4)
    beta = build_sigmas(table, "Euler", "Beta", 10)
    assert beta[:3].tolist() == pytest.approx([14.6146, 13.9278, 12.4910], abs=1e-4)
    assert beta[-3:].tolist() == pytest.approx([0.7160, 0.0292, 0.0], abs=1e-4)


@pytest.mark.parametrize("sampler,label", [("DPM++ 2M", "Karras"), ("DPM++ SDE", "Karras"),
                                           ("DPM++ 2M SDE", "Exponential"), ("DPM++ 2M SDE Heun", "Exponential"),
                                           ("DPM++ 2S a", "Karras"), ("DPM++ 3M SDE", "Exponential"),
                                           ("Euler a", "Automatic"), ("Euler", "Automatic"), ("LMS", "Automatic"),
                                           ("Heun", "Automatic"), ("DPM2", "Karras"), ("DPM2 a", "Karras"),
                                           ("DPM fast", "Automatic"), ("DPM adaptive", "Automatic"),
                                           ("Restart", "Karras"), ("DDIM", "Automatic"), ("PLMS", "Automatic"),
                                           ("UniPC", "Automatic"), ("LCM", "Automatic"), ("DDIM CFG++", "Automatic")])
def test_default_schedules(sampler, label):
    assert resolve_sampler(sampler) == (sampler, label)


def test_discard_penultimate(table):
    for sampler, default in (("DPM2", "Karras"), ("DPM2 a", "Karras"), ("DPM++ 3M SDE", "Exponential")):
        full = build_sigmas(table, "Euler", default, 21)
        ours = build_sigmas(table, sampler, "Automatic", 20)
        assert torch.equal(ours, torch.cat([full[:-2], full[-1:]]))
        assert len(ours) == 21
    assert torch.equal(build_sigmas(table, "Euler", "Karras", 20, discard_penultimate_sigma=True),
                       discard_penultimate(build_sigmas(table, "Euler", "Karras", 21)))
    assert len(build_sigmas(table, "DPM++ 2M", "Automatic", 20)) == 21


def test_every_schedule_label_builds(table):
    for name, label in SCHEDULERS.items():
        for key in (name, label, label.upper()):
            sigmas = build_sigmas(table, "Euler", key, 12)
            assert sigmas.dtype == torch.float32 and sigmas.device.type == "cpu"
            assert bool((sigmas[1:] <= sigmas[:-1]).all()), (label, sigmas)
    with pytest.raises(ValueError, match="scheduler"):
        build_sigmas(table, "Euler", "Cosine", 10)
    with pytest.raises(ValueError, match="timesteps"):
        build_sigmas(table, "DDIM", "Automatic", 10)
    with pytest.raises(ValueError, match="steps"):
        build_sigmas(table, "Euler", "Karras", 0)


def test_lcm_table_and_schedule(table):
    lcm = LCMSchedule(table)
    ac = table.alphas_cumprod.double().numpy()
    ref_ac = np.array([ac[19 + 20 * k] for k in range(50)])
    assert np.array_equal(lcm.alphas_cumprod.double().numpy(), ref_ac)
    # sigma_to_t: the nearest level's timestep; t_to_sigma: log-interpolation at (t - 19) / 20
    ls = np.log(lcm.sigmas.double().numpy())
    probe = torch.tensor([lcm.sigmas[0].item(), 1.0, 3.3, lcm.sigmas[-1].item()])
    nearest = np.abs(np.log(probe.double().numpy())[None, :] - ls[:, None]).argmin(axis=0)
    assert lcm.sigma_to_t(probe).tolist() == (nearest * 20 + 19).tolist()
    for n in NS:
        ref = _t_to_sigma64(ls, (np.linspace(999, 19, n) - 19) / 20)
        _check(build_sigmas(table, "LCM", "Automatic", n), ref, 4e-6)
        assert build_sigmas(table, "LCM", "Karras", n)[0].item() == pytest.approx(lcm.sigma_max, rel=1e-6)


def test_sampler_table_flags():
    second = {n for n, c in SAMPLER_CONFIGS.items() if c.second_order}
    assert second == {"DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}
    assert {n for n, c in SAMPLER_CONFIGS.items() if c.brownian} == {"DPM++ SDE", "DPM++ 2M SDE",
                                                                       "DPM++ 2M SDE Heun", "DPM++ 3M SDE"}
    assert {n for n, c in SAMPLER_CONFIGS.items() if c.uses_ensd} == {"Euler a", "DPM2 a", "DPM++ 2S a", "DPM fast",
                                                                        "DPM adaptive"}
    assert len(SAMPLER_CONFIGS) == 20 and list(SAMPLER_CONFIGS)[0] == "DPM++ 2M"
