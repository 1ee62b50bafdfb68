"""k-diffusion-compatible samplers: Euler, Euler ancestral and DPM++ 2M (k-diffusion's arithmetic).

Pure functions with k-diffusion's signature. ``model(x, sigma_batch, **extra_args)`` returns the denoised estimate;
``sigmas`` is descending, ``n + 1`` long and ends in 0. Per-step scalars are 0-dim tensors on the sigmas' device and
dtype, combined in the same order as k-diffusion so that results agree bit for bit in float32.

Randomness comes only from ``noise_sampler(sigma, sigma_next)`` when given (e.g. ``ImageRNG.noise_sampler``, A1111's
per-seed generators); otherwise from ``torch.randn_like`` as in k-diffusion.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from tqdm import trange

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
        gamma = min(s_churn / n, 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.0
        # drawn every step, even when gamma = 0: it advances the RNG exactly as k-diffusion/A1111 do
        noise = torch.randn_like(x) if noise_sampler is None else noise_sampler(sigmas[i], sigmas[i + 1])
        eps = noise * s_noise
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0:
            x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
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
    if noise_sampler is None:
        def noise_sampler(sigma, sigma_next):
            return torch.randn_like(x)
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
