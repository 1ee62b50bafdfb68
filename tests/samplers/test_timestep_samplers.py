"""A1111's DDIM, DDIM CFG++, PLMS and UniPC against float64 re-derivations of their update rules; Restart and LCM.

The eps model is a smooth random function of x and t. The library runs in float32; the references below in numpy
float64 with the same noise draws. Measured max abs differences are in the comments.
"""
import math

import numpy as np
import pytest
import torch

from inpaintlab.samplers import (DiscreteSchedule, ImageRNG, LCMDenoiser, LCMSchedule, build_sigmas, get_sigmas_karras,
                                 get_timesteps, img2img_start, sample_ddim, sample_ddim_cfgpp, sample_heun,
                                 sample_lcm, sample_plms, sample_restart, sample_unipc)
from inpaintlab.samplers.extra import restart_plan

SHAPE = (1, 4, 5, 5)


@pytest.fixture(scope="module")
def ac():
    return DiscreteSchedule().alphas_cumprod


def _eps(x, t, lib):
    """The same toy eps model in torch (float32) and numpy (float64)."""
    if lib is np:
        t = np.asarray(t, dtype=np.float64).reshape(-1, 1, 1, 1)
        return 0.3 * x + 0.4 * np.sin(1.3 * x + t / 300.0) - 0.1
    t = t.reshape(-1, 1, 1, 1)
    return 0.3 * x + 0.4 * torch.sin(1.3 * x + t / 300.0) - 0.1


def _uncond(x, t, lib):
    return 0.2 * x + 0.3 * (np.cos if lib is np else torch.cos)(x + 1.0)


class EpsModel:
    def __init__(self):
        self.times = []

    def __call__(self, x, t):
        self.times.append(float(t[0]))
        self.last_uncond = _uncond(x, t, torch)
        return _eps(x, t, torch)


class Draws:
    """noise_sampler that records its draws so the float64 reference can replay them."""

    def __init__(self, seed):
        self.rng = ImageRNG(SHAPE[1:], [seed])
        self.rng.next()
        self.drawn = []

    def __call__(self, *args):
        z = self.rng.next()
        self.drawn.append(z.double().numpy())
        return z


def _x(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def ddim64(x, ts, ac, eta, draws, cfgpp=False):
    a = ac.double().numpy()
    for k, index in enumerate(range(len(ts) - 1, 0, -1)):
        t = ts[index]
        e = _eps(x, t, np)
        a_t, a_prev = a[t], a[ts[index - 1]]
        s = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        direction = _uncond(x, t, np) if cfgpp else e
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - s * s) * direction + s * draws[k]
    return x


@pytest.mark.parametrize("steps", [4, 10, 20, 30])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("cfgpp", [False, True])
def test_ddim_against_float64(ac, steps, eta, cfgpp):
    ts = get_timesteps(steps)
    draws, model = Draws(7), EpsModel()
    fn = sample_ddim_cfgpp if cfgpp else sample_ddim
    out = fn(model, _x(), ts, ac, disable=True, eta=eta, noise_sampler=draws)
    ref = ddim64(_x().double().numpy(), ts.tolist(), ac, eta, draws.drawn, cfgpp)
    assert np.abs(out.double().numpy() - ref).max() < 2e-5  # measured <= 7.5e-6 (CFG++ 1.1e-5)
    assert len(model.times) == len(draws.drawn) == len(ts) - 1  # one call and one draw per step, stops at t = 1
    assert model.times == [float(t) for t in ts.flip(0)[:-1]]


def test_timesteps_quirks():
    assert get_timesteps(10).tolist() == list(range(1, 1000, 100))
    assert len(get_timesteps(20)) == 20 and get_timesteps(20)[-1] == 951
    t30 = get_timesteps(30)
    assert len(t30) == 31 and t30[:2].tolist() == [1, 34] and t30[-1] == 991
    assert len(get_timesteps(20, discard_penultimate=True)) == len(range(0, 1000, 1000 // 21)) == 22
    assert get_timesteps(1000).tolist() == [min(t + 1, 999) for t in range(1000)]
    with pytest.raises(ValueError, match="steps"):
        get_timesteps(0)


def plms64(x, ts, ac):
    a = ac.double().numpy()
    old = []

    def step(x, e, index):
        a_t, a_prev = a[ts[index]], a[ts[index - 1]] if index > 0 else a[0]
        x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e

    for index in range(len(ts) - 1, 0, -1):
        e = _eps(x, ts[index], np)
        if not old:
            e_next = _eps(step(x, e, index), ts[index - 1], np)
            e_prime = (e + e_next) / 2
        elif len(old) == 1:
            e_prime = (3 * e - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = step(x, e_prime, index)
        old = (old + [e])[-3:]
    return x


@pytest.mark.parametrize("steps", [2, 4, 10, 20, 30])
def test_plms_against_float64(ac, steps):
    ts = get_timesteps(steps)
    model = EpsModel()
    out = sample_plms(model, _x(1), ts, ac, disable=True)
    ref = plms64(_x(1).double().numpy(), ts.tolist(), ac)
    assert np.abs(out.double().numpy() - ref).max() < 2e-5  # measured <= 4.4e-6
    assert len(model.times) == len(ts)  # the first step evaluates twice


# ---- UniPC ----

class VP64:
    def __init__(self, ac):
        self.la = 0.5 * np.log(ac.double().numpy())
        self.tn = np.arange(1, len(self.la) + 1) / len(self.la)

    def log_alpha(self, t):
        k = min(max(np.searchsorted(self.tn, t, side="right") - 1, 0), len(self.tn) - 2)
        return self.la[k] + (t - self.tn[k]) * (self.la[k + 1] - self.la[k]) / (self.tn[k + 1] - self.tn[k])

    def lam(self, t):
        la = self.log_alpha(t)
        return la - 0.5 * math.log(1 - math.exp(2 * la))

    def alpha(self, t):
        return math.exp(self.log_alpha(t))

    def sigma(self, t):
        return math.sqrt(1 - math.exp(2 * self.log_alpha(t)))


def unipc64(x, ts, ac, t_T=1.0, order=3, variant="bh1"):
    """UniPC-p multistep (Zhao et al. 2023, Alg. 2/3), data prediction, written from the paper in float64."""
    vp = VP64(ac)
    n = len(ts)
    grid = np.linspace(t_T, 0.001, n + 1)

    def x0(x, t):
        return (x - vp.sigma(t) * _eps(x, (t - 0.001) * 1000, np)) / vp.alpha(t)

    ms, tp = [x0(x, grid[0])], [grid[0]]
    for step in range(1, n + 1):
        t = grid[step]
        p = min(step, order, n + 1 - step)
        h = vp.lam(t) - vp.lam(tp[-1])
        r = [(vp.lam(tp[-1 - k]) - vp.lam(tp[-1])) / h for k in range(1, p)]
        d = [(ms[-1 - k] - ms[-1]) / r[k - 1] for k in range(1, p)]
        hh = -h
        B = hh if variant == "bh1" else math.expm1(hh)
        # phi_k(hh): phi_1 = (e^hh - 1)/hh, phi_{k+1} = (phi_k - 1/k!)/hh; b_k = (k! phi_{k+1}) hh / B ... as in the paper
        phis = [math.expm1(hh) / hh]
        for k in range(1, p + 1):
            phis.append((phis[-1] - 1 / math.factorial(k)) / hh)
        b = np.array([phis[k] * math.factorial(k) * hh / B for k in range(1, p + 1)])
        R = np.array([[rk ** (i - 1) for rk in r + [1.0]] for i in range(1, p + 1)])
        base = vp.sigma(t) / vp.sigma(tp[-1]) * x - vp.alpha(t) * math.expm1(hh) * ms[-1]
        if p == 1:
            pred = 0
        elif p == 2:
            pred = 0.5 * d[0]
        else:
            rho = np.linalg.solve(R[:-1, :-1], b[:-1])
            pred = sum(rk * dk for rk, dk in zip(rho, d))
        x_pred = base - vp.alpha(t) * B * pred
        if step == n:
            return x_pred
        m_t = x0(x_pred, t)
        rho_c = np.array([0.5]) if p == 1 else np.linalg.solve(R, b)
        corr = sum(rk * dk for rk, dk in zip(rho_c[:-1], d)) + rho_c[-1] * (m_t - ms[-1])
        x = base - vp.alpha(t) * B * corr
        ms, tp = (ms + [m_t])[-order:], (tp + [t])[-order:]


@pytest.mark.parametrize("steps", [3, 4, 10, 20, 30])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_against_float64(ac, steps, variant):
    ts = get_timesteps(steps)
    model = EpsModel()
    out = sample_unipc(model, _x(2), ts, ac, disable=True, variant=variant)
    ref = unipc64(_x(2).double().numpy(), ts, ac, variant=variant)
    assert np.abs(out.double().numpy() - ref).max() < 5e-5  # measured <= 7.6e-6
    assert len(model.times) == len(ts)  # the corrector's evaluation is reused: one call per step


def test_unipc_call_times_and_img2img(ac):
    model = EpsModel()
    sample_unipc(model, _x(), get_timesteps(20), ac, disable=True)
    assert model.times[:3] == pytest.approx([999.0, 949.05, 899.1], abs=1e-3)
    assert model.times[-1] == pytest.approx(49.95, abs=1e-3)
    # img2img: the grid starts at timesteps[-1] / 1000 + 0.001 of the truncated list
    ts = get_timesteps(20)[:15]
    model = EpsModel()
    out = sample_unipc(model, _x(3), ts, ac, disable=True, is_img2img=True)
    t_T = ts[-1].item() / 1000 + 0.001
    assert model.times[0] == pytest.approx((t_T - 0.001) * 1000, abs=1e-3)
    assert len(model.times) == 15
    ref = unipc64(_x(3).double().numpy(), ts, ac, t_T=t_T)
    assert np.abs(out.double().numpy() - ref).max() < 5e-5
    with pytest.raises(ValueError, match="order"):
        sample_unipc(model, _x(), get_timesteps(2), ac, disable=True)


def test_unipc_converges_on_gaussian_data(ac):
    # data N(0, s^2): the exact eps is sigma_t x / (alpha_t^2 s^2 + sigma_t^2) and the probability-flow ODE keeps
    # x / sqrt(alpha_t^2 s^2 + sigma_t^2) constant. UniPC-p has order p + 1 on a log-SNR grid (measured error
    # ratios per step doubling, 20 -> 40 -> 80: p=1 4.4, 4.7; p=2 8.5, 9.6; p=3 8.9, 13).
    s2 = 0.25
    vp = VP64(ac)

    def model(x, t):
        tc = t[0].item() / 1000 + 0.001
        a, s = vp.alpha(tc), vp.sigma(tc)
        return x * (s / (a * a * s2 + s * s))

    x = _x(4)
    scale = math.sqrt((vp.alpha(0.001) ** 2 * s2 + vp.sigma(0.001) ** 2) / (vp.alpha(1.0) ** 2 * s2
                                                                           + vp.sigma(1.0) ** 2))
    exact = x.double() * scale

    def err(steps, order, **kw):
        out = sample_unipc(model, x, get_timesteps(steps), ac, disable=True, order=order, **kw)
        return (out.double() - exact).abs().max().item()

    for order, least in ((1, 3.0), (2, 6.0), (3, 8.0)):
        errs = [err(n, order, skip_type="logSNR", lower_order_final=False) for n in (20, 40, 80)]
        assert errs[0] / errs[1] > least and errs[1] / errs[2] > least, (order, errs)
    # A1111's default (time-uniform grid, first-order last step from t = 0.05 to 0.001) is much coarser:
    # measured 0.085 at 20 steps
    assert err(20, 3) < 0.15
def test_img2img_start(ac):
    init, noise = _x(5), _x(6)
    ts = get_timesteps(20)
    start = img2img_start(init, noise, ts, 15, ac)
    a = ac[ts[15]].double().item()
    assert torch.allclose(start.double(), init.double() * math.sqrt(a) + noise.double() * math.sqrt(1 - a), atol=1e-6)


# ---- Restart ----

def test_restart_plan_and_counts():
    table = DiscreteSchedule()
    for n, calls, draws in ((10, 19, 0), (20, 39, 1), (36, 71, 2)):
        sigmas = build_sigmas(table, "Restart", "Automatic", n)
        rng = ImageRNG(SHAPE[1:], [3])
        rng.next()
        count = []

        def model(x, sigma, count=count):
            count.append(1)
            return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

        out = sample_restart(model, _x(), sigmas, disable=True, noise_sampler=rng.noise_sampler)
        assert torch.isfinite(out).all()
        assert (len(count), rng.draws - 1) == (calls, draws), n
    # the plan for 20 steps: karras(11) from the schedule's ends, then one restart of karras(10, ~0.1, ~2)[:-1]
    sigmas = build_sigmas(table, "Restart", "Automatic", 20)
    plan = restart_plan(sigmas)
    main = get_sigmas_karras(11, sigmas[-2].item(), sigmas[0].item())
    lo, hi = sigmas[-2].item(), sigmas[0].item()
    r = np.linspace(0, 1, 11)
    ref = (hi ** (1 / 7) + r * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    assert np.allclose(main[:-1].double().numpy(), ref, rtol=2e-6)
    min_idx = int(np.argmin(np.abs(main.numpy() - 0.1)))
    max_idx = int(np.argmin(np.abs(main.numpy() - 2.0)))
    assert len(plan) == 11 + 9
    assert (plan[min_idx - 1][0], plan[min_idx - 1][1]) == (main[min_idx - 1], main[min_idx])
    assert plan[min_idx][0].item() == pytest.approx(main[max_idx].item(), rel=1e-6)  # jump back up to ~2
    assert plan[min_idx + 8][1].item() == pytest.approx(main[min_idx].item(), rel=1e-6)  # down to ~0.1 again
    assert (plan[min_idx + 9][0], plan[min_idx + 9][1]) == (main[min_idx], main[min_idx + 1])
    assert main[min_idx].item() == pytest.approx(0.1, rel=0.3) and main[max_idx].item() == pytest.approx(2, rel=0.3)


def test_restart_without_restarts_is_heun(kdiff):
    # fewer than 20 steps: plain Heun on the given schedule (Restart draws nothing then)
    table = DiscreteSchedule()
    sigmas = build_sigmas(table, "Restart", "Automatic", 12)

    def model(x, sigma):
        s = sigma.reshape(-1, 1, 1, 1)
        return x / (1 + s * s) + 0.05 * torch.sin(x)

    x = _x(7) * sigmas[0]
    torch.manual_seed(0)
    ref = kdiff.sampling.sample_heun(model, x, sigmas, disable=True)
    assert torch.equal(sample_restart(model, x, sigmas, disable=True), ref)


# ---- LCM ----

def test_lcm_denoiser_and_sampler():
    table = DiscreteSchedule()
    lcm = LCMSchedule(table)
    seen = {}

    def unet(x_in, t, context=None):
        seen["t"] = t
        return 0.5 * x_in + 0.1

    den = LCMDenoiser(unet, table)
    x = _x(8).double().float()
    sigma = torch.tensor([2.5])
    out = den(x, sigma).double()
    # float64 re-derivation: nearest level's t, eps denoiser, consistency scaling c(10 t) with sigma_data 0.5
    ls = np.log(lcm.sigmas.double().numpy())
    k = int(np.abs(math.log(2.5) - ls).argmin())
    t = 20 * k + 19
    assert seen["t"].tolist() == [t]
    xd = x.double()
    eps = 0.5 * xd / math.sqrt(2.5 ** 2 + 1) + 0.1
    d = xd - 2.5 * eps
    st = 10.0 * t
    ref = st / math.sqrt(st ** 2 + 0.25) * d + 0.25 / (st ** 2 + 0.25) * xd
    assert (out - ref).abs().max().item() < 1e-5
    # sampler: x = D, then re-noised to the next sigma with one draw per step but the last
    sigmas = build_sigmas(table, "LCM", "Automatic", 4)
    draws = Draws(9)
    calls = []

    def model(x, s):
        calls.append(s[0].item())
        return 0.5 * x

    out = sample_lcm(model, _x(9), sigmas, disable=True, noise_sampler=draws)
    x = _x(9).double().numpy()
    for i in range(4):
        x = 0.5 * x + (sigmas[i + 1].item() * draws.drawn[i] if i < 3 else 0.0)
    assert np.abs(out.double().numpy() - x).max() < 1e-5
    assert len(draws.drawn) == 3 and calls == pytest.approx(sigmas[:-1].tolist())


def test_heun_counts_match_table():
    table = DiscreteSchedule()
    sigmas = build_sigmas(table, "Heun", "Automatic", 20)
    calls = []
    sample_heun(lambda x, s: calls.append(1) or x * 0.5, _x(), sigmas, disable=True)
    assert len(calls) == 39


def test_too_few_timesteps_run_no_step(ac):
    # img2img at a very low strength leaves 0 or 1 timesteps: DDIM and PLMS return the start latent (A1111's loops
    # run len - 1 times); UniPC needs at least its order in steps
    x = _x(10)
    for n in (0, 1):
        ts = get_timesteps(20)[:n]
        assert torch.equal(sample_ddim(EpsModel(), x, ts, ac, disable=True, eta=1.0, noise_sampler=Draws(1)), x)
        assert torch.equal(sample_plms(EpsModel(), x, ts, ac, disable=True), x)
    with pytest.raises(ValueError, match="timesteps"):
        sample_unipc(EpsModel(), x, get_timesteps(20)[:0], ac, disable=True)
