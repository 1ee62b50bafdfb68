"""k-diffusion-compatible samplers, as AUTOMATIC1111 v1.10 runs them (k-diffusion at A1111's pin).

Pure functions with k-diffusion's signature. ``model(x, sigma_batch, **extra_args)`` returns the denoised estimate;
``sigmas`` is descending, ``n + 1`` long and ends in 0. Per-step scalars are 0-dim tensors on the sigmas' device and
dtype, combined in the same order as k-diffusion so that results agree bit for bit in float32.

Randomness comes only from ``noise_sampler(sigma, sigma_next)`` when given (e.g. ``ImageRNG.noise_sampler``, A1111's
per-seed generators, or a :class:`~inpaintlab.samplers.brownian.BrownianTreeNoiseSampler`); otherwise from
``torch.randn_like`` as in k-diffusion. Euler, Heun and DPM2 take a ``noise_sampler`` too (k-diffusion's do not: A1111
routes their ``randn_like`` to its generators by patching k-diffusion's ``torch``), so every draw can be seeded.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import math

import torch
from tqdm import tqdm, trange

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[Dict[str, Any]], None]
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_inputs(x: torch.Tensor, sigmas: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError("x must be a tensor with a batch dimension")
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError("sigmas must be a 1-D tensor with at least 2 entries (n steps need n + 1 sigmas)")


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Karras ODE derivative ``(x - D) / sigma`` for a scalar (0-dim) sigma."""
    return (x - denoised) / sigma


def _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler):
    """Karras et al. "churn": raise sigma[i] to sigma_hat by adding fresh noise (Euler, Heun, DPM2)."""
    n = len(sigmas) - 1
    gamma = min(s_churn / n, 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.0
    # drawn every step, even when gamma = 0: it advances the RNG exactly as k-diffusion/A1111 do
    noise = torch.randn_like(x) if noise_sampler is None else noise_sampler(sigmas[i], sigmas[i + 1])
    eps = noise * s_noise
    sigma_hat = sigmas[i] * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


def _default_noise(x: torch.Tensor) -> NoiseSampler:
    return lambda sigma, sigma_next: torch.randn_like(x)


def get_ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """Split a step into a deterministic part down to ``sigma_down`` and fresh noise of size ``sigma_up``."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


@torch.no_grad()
def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                 callback: Optional[Callback] = None, disable: Optional[bool] = None, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                 noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """Implements Algorithm 2 (Euler steps) from Karras et al. (2022)."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    for i in trange(n, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = sigmas[i + 1] - sigma_hat
        # general formula on the last step too (sigma_next = 0 gives x - d * sigma, usually == denoised)
        x = x + d * dt
    return x


@torch.no_grad()
def sample_euler_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                           callback: Optional[Callback] = None, disable: Optional[bool] = None, eta: float = 1.0,
                           s_noise: float = 1.0, noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """Ancestral sampling with Euler method steps (k-diffusion; A1111 "Euler a")."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = to_d(x, sigmas[i], denoised)
        dt = sigma_down - sigmas[i]
        x = x + d * dt
        # no noise is added on the step to sigma = 0
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _t_fn(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def _sigma_fn(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                    callback: Optional[Callback] = None, disable: Optional[bool] = None) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. (2022), in k-diffusion's data-prediction form with half-log-SNR t = -log(sigma)."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        # exp(-t_next) / exp(-t), not sigma_next / sigma: they differ in the last ulp
        ratio = _sigma_fn(t_next) / _sigma_fn(t)
        if old_denoised is None or sigmas[i + 1] == 0:
            # first step, and the step to sigma = 0 (t_next = inf gives x = denoised), are first order
            x = ratio * x - (-h).expm1() * denoised
        else:
            # h_last recomputed from the schedule rather than carried over
            h_last = t - _t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = ratio * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def _no_brownian_default(name: str, noise_sampler: Optional[NoiseSampler]) -> NoiseSampler:
    if noise_sampler is None:
        raise ValueError(f"{name} needs a noise_sampler: A1111 gives these samplers per-image seeded Brownian-tree "
                         f"noise (inpaintlab.samplers.BrownianTreeNoiseSampler)")
    return noise_sampler


@torch.no_grad()
def sample_heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                callback: Optional[Callback] = None, disable: Optional[bool] = None, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """Karras et al. (2022) Algorithm 2 with Heun steps (A1111 "Heun"): 2 calls per step, 1 on the step to 0."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + ((d + d_2) / 2) * dt
    return x


def _log_midpoint(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # geometric mean through lerp of the logs, the rounding k-diffusion's DPM2 uses
    return a.log().lerp(b.log(), 0.5).exp()


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                 callback: Optional[Callback] = None, disable: Optional[bool] = None, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
                 noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """DPM-Solver-2-like midpoint steps in log-sigma with Karras churn (A1111 "DPM2")."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = _log_midpoint(sigma_hat, sigmas[i + 1])
            x_2 = x + d * (sigma_mid - sigma_hat)
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            x = x + to_d(x_2, sigma_mid, denoised_2) * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                           callback: Optional[Callback] = None, disable: Optional[bool] = None, eta: float = 1.0,
                           s_noise: float = 1.0, noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """DPM2 midpoint steps down to sigma_down plus ancestral noise (A1111 "DPM2 a")."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = _log_midpoint(sigmas[i], sigma_down)
            x_2 = x + d * (sigma_mid - sigmas[i])
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            x = x + to_d(x_2, sigma_mid, denoised_2) * (sigma_down - sigmas[i])
            # the noise sits inside the midpoint branch: no draw on the step to 0
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def linear_multistep_coeff(order: int, t, i: int, j: int) -> float:
    """Integral over [t[i], t[i+1]] of the Lagrange basis polynomial j on the nodes t[i], t[i-1], ..., t[i-order+1].

    Integrated numerically with scipy's QUADPACK (``quad``, epsrel 1e-4) as k-diffusion does, so the coefficients
    are the same doubles.
    """
    from scipy import integrate

    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")

    def basis(tau):
        prod = 1.0
        for k in range(order):
            if j != k:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
               callback: Optional[Callback] = None, disable: Optional[bool] = None, order: int = 4) -> torch.Tensor:
    """Linear multistep in sigma (A1111 "LMS"), order rising to 4 over the first steps."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds: List[torch.Tensor] = []
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        cur_order = min(i + 1, order)
        coeffs = [linear_multistep_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        # Python's sum starts from int 0: the first term is 0 + c * d, bitwise c * d
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                              extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                              disable: Optional[bool] = None, eta: float = 1.0, s_noise: float = 1.0,
                              noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """DPM-Solver++(2S) single-step second order to sigma_down, plus ancestral noise (A1111 "DPM++ 2S a")."""
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t_fn(sigmas[i]), _t_fn(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (_sigma_fn(s) / _sigma_fn(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, _sigma_fn(s) * s_in, **extra_args)
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                     callback: Optional[Callback] = None, disable: Optional[bool] = None, eta: float = 1.0,
                     s_noise: float = 1.0, noise_sampler: Optional[NoiseSampler] = None,
                     r: float = 1 / 2) -> torch.Tensor:
    """DPM-Solver++ stochastic, two stages per step at t + r h (A1111 "DPM++ SDE").

    ``noise_sampler`` is required (A1111: per-image Brownian tree over the full schedule, see
    :class:`~inpaintlab.samplers.brownian.BrownianTreeNoiseSampler`); both stages query it.
    """
    _check_inputs(x, sigmas)
    noise_sampler = _no_brownian_default("DPM++ SDE", noise_sampler)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # stage 1: t -> s
        sd, su = get_ancestral_step(_sigma_fn(t), _sigma_fn(s), eta)
        s_ = _t_fn(sd)
        x_2 = (_sigma_fn(s_) / _sigma_fn(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise_sampler(_sigma_fn(t), _sigma_fn(s)) * s_noise * su
        denoised_2 = model(x_2, _sigma_fn(s) * s_in, **extra_args)
        # stage 2: t -> t_next with the blended estimate
        sd, su = get_ancestral_step(_sigma_fn(t), _sigma_fn(t_next), eta)
        t_next_ = _t_fn(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma_fn(t_next_) / _sigma_fn(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise_sampler(_sigma_fn(t), _sigma_fn(t_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                        callback: Optional[Callback] = None, disable: Optional[bool] = None, eta: float = 1.0,
                        s_noise: float = 1.0, noise_sampler: Optional[NoiseSampler] = None,
                        solver_type: str = "midpoint") -> torch.Tensor:
    """DPM-Solver++(2M) SDE (A1111 "DPM++ 2M SDE"; ``solver_type="heun"``: "DPM++ 2M SDE Heun").

    The step size ratio uses the previous step's stored h. ``noise_sampler`` is required when ``eta`` != 0.
    """
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    _check_inputs(x, sigmas)
    if eta:
        noise_sampler = _no_brownian_default("DPM++ 2M SDE", noise_sampler)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    h_last = h = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() \
                    * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                        callback: Optional[Callback] = None, disable: Optional[bool] = None, eta: float = 1.0,
                        s_noise: float = 1.0, noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """DPM-Solver++(3M) SDE (A1111 "DPM++ 3M SDE"): third-order multistep with the two previous estimates."""
    _check_inputs(x, sigmas)
    if eta:
        noise_sampler = _no_brownian_default("DPM++ 3M SDE", noise_sampler)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() \
                    * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


# --- DPM-Solver (Lu et al. 2022) fast and adaptive, in eps form with t = -log(sigma) ---------------------------------

class _DPMSolver:
    """Shared state of the DPM-Solver samplers: the model, an eps cache per step, call counting for progress."""

    def __init__(self, model: Denoiser, extra_args: dict, on_eval: Callable[[], Any]) -> None:
        self.model, self.extra_args, self.on_eval = model, extra_args, on_eval
        self.info_callback: Optional[Callable[[dict], None]] = None

    @staticmethod
    def t(sigma: torch.Tensor) -> torch.Tensor:
        return -sigma.log()

    @staticmethod
    def sigma(t: torch.Tensor) -> torch.Tensor:
        return t.neg().exp()

    def eps(self, cache: dict, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            sigma = self.sigma(t) * x.new_ones([x.shape[0]])
            cache[key] = (x - self.model(x, sigma, **self.extra_args)) / self.sigma(t)
            self.on_eval()
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return (x - self.sigma(t_next) * h.expm1() * eps
                - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps))

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        s2 = t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return (x - self.sigma(t_next) * h.expm1() * eps
                - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps))

    def ancestral(self, t, t_next, t_end, eta):
        # the deterministic target is clipped to t_end; the noise makes up the rest of sigma(t_next)
        sd, _ = get_ancestral_step(self.sigma(t), self.sigma(t_next), eta)
        t_next_ = torch.minimum(t_end, self.t(sd))
        su = (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5
        return t_next_, su


def _check_range_args(sigma_min, sigma_max) -> None:
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError(f"sigma_min and sigma_max must be positive, got {sigma_min}, {sigma_max}")


def _info_to_callback(solver: _DPMSolver, callback: Optional[Callback]) -> None:
    if callback is not None:
        solver.info_callback = lambda info: callback({"sigma": solver.sigma(info["t"]),
                                                      "sigma_hat": solver.sigma(info["t_up"]), **info})


@torch.no_grad()
def sample_dpm_fast(model: Denoiser, x: torch.Tensor, sigma_min: float, sigma_max: float, n: int,
                    extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                    disable: Optional[bool] = None, eta: float = 0.0, s_noise: float = 1.0,
                    noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """DPM-Solver-Fast (A1111 "DPM fast"): ``n`` model calls on ``n // 3 + 1`` steps uniform in log-sigma.

    Orders ``[3] * (m - 2) + [2, 1]`` when ``n % 3 == 0``, else ``[3] * (m - 1) + [n % 3]``. The noise sampler is
    called on every step (its draw is scaled by 0 when eta = 0).
    """
    _check_range_args(sigma_min, sigma_max)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (model calls) must be a positive int, got {n!r}")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    with tqdm(total=n, disable=disable) as pbar:
        solver = _DPMSolver(model, extra_args, pbar.update)
        _info_to_callback(solver, callback)
        t_start, t_end = solver.t(torch.as_tensor(sigma_max)), solver.t(torch.as_tensor(sigma_min))
        if not t_end > t_start and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        m = math.floor(n / 3) + 1
        ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if n % 3 == 0 else [3] * (m - 1) + [n % 3]
        for i, order in enumerate(orders):
            cache: dict = {}
            t, t_next = ts[i], ts[i + 1]
            if eta:
                t_next_, su = solver.ancestral(t, t_next, t_end, eta)
            else:
                t_next_, su = t_next, 0.0
            eps = solver.eps(cache, "eps", x, t)
            denoised = x - solver.sigma(t) * eps
            if solver.info_callback is not None:
                solver.info_callback({"x": x, "i": i, "t": ts[i], "t_up": t, "denoised": denoised})
            step = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}[order]
            x = step(x, t, t_next_, cache)
            x = x + su * s_noise * noise_sampler(solver.sigma(t), solver.sigma(t_next))
    return x


class _PIDStepSize:
    """PID step-size controller of DPM-Solver's adaptive mode (k-diffusion defaults: integral only)."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: List[float] = []

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(model: Denoiser, x: torch.Tensor, sigma_min: float, sigma_max: float,
                        extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                        disable: Optional[bool] = None, order: int = 3, rtol: float = 0.05, atol: float = 0.0078,
                        h_init: float = 0.05, pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0,
                        accept_safety: float = 0.81, eta: float = 0.0, s_noise: float = 1.0,
                        noise_sampler: Optional[NoiseSampler] = None, return_info: bool = False):
    """DPM-Solver-12/23 with adaptive step size (A1111 "DPM adaptive"); the number of calls depends on the model.

    One noise draw per accepted step. ``return_info=True`` also returns the counts (steps, nfe, n_accept, n_reject).
    """
    _check_range_args(sigma_min, sigma_max)
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3, got {order!r}")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    with tqdm(disable=disable) as pbar:
        solver = _DPMSolver(model, extra_args, pbar.update)
        _info_to_callback(solver, callback)
        t_start, t_end = solver.t(torch.as_tensor(sigma_max)), solver.t(torch.as_tensor(sigma_min))
        forward = t_end > t_start
        if not forward and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        h_init = abs(h_init) * (1 if forward else -1)
        atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
        s = t_start
        x_prev = x
        pid = _PIDStepSize(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        while s < t_end - 1e-5 if forward else s > t_end + 1e-5:
            cache: dict = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            if eta:
                t_, su = solver.ancestral(s, t, t_end, eta)
            else:
                t_, su = t, 0.0
            eps = solver.eps(cache, "eps", x, s)
            denoised = x - solver.sigma(s) * eps
            if order == 2:
                x_low = solver.step_1(x, s, t_, cache)
                x_high = solver.step_2(x, s, t_, cache)
            else:
                x_low = solver.step_2(x, s, t_, cache, r1=1 / 3)
                x_high = solver.step_3(x, s, t_, cache)
            delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose_step(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(solver.sigma(s), solver.sigma(t))
                s = t
                info["n_accept"] += 1
            else:
                info["n_reject"] += 1
            info["nfe"] += order
            info["steps"] += 1
            if solver.info_callback is not None:
                solver.info_callback({"x": x, "i": info["steps"] - 1, "t": s, "t_up": s, "denoised": denoised,
                                      "error": error, "h": pid.h, **info})
    return (x, info) if return_info else x


@torch.no_grad()
def sample_lcm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
               callback: Optional[Callback] = None, disable: Optional[bool] = None,
               noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """Latent consistency sampling (A1111 "LCM"): jump to the estimate, then re-noise to the next sigma.

    Meant for an :class:`~inpaintlab.samplers.denoisers.LCMDenoiser`-wrapped model; one draw per step but the last.
    """
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
