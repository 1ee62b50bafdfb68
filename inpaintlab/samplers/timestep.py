"""A1111 v1.10's own timestep samplers: DDIM, DDIM CFG++, PLMS and UniPC (not k-diffusion's).

They work on the discrete timesteps ``clip(range(0, 1000, 1000 // steps) + 1, 0, 999)`` of the model's alpha-bar table
with an **eps** model ``model(x, t [B], **extra_args) -> eps`` (no sigma scaling of the input; CFG combines eps).
Start latents are variance preserving: txt2img starts from raw N(0, 1) noise, img2img from
``sqrt(a) x0 + sqrt(1 - a) noise`` at ``timesteps[t_enc]`` (:func:`img2img_start`).

Arithmetic follows A1111: per-step coefficients are Python floats from the float32 table (alpha-bar of the previous
step in float64, DDIM's sigma_t in float64 through numpy), multiplied into float32 tensors.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from tqdm import trange

EpsModel = Callable[..., torch.Tensor]
Callback = Callable[[Dict[str, Any]], None]
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def get_timesteps(steps: int, discard_penultimate: bool = False, num_timesteps: int = 1000) -> torch.Tensor:
    """``clip(range(0, T, T // steps) + 1, 0, T - 1)`` (int64), with one more step when discarding.

    The length is ``len(range(0, T, T // steps))``: 30 steps give 31 timesteps; the top one is not T - 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"number of steps must be a positive int, got {steps!r}")
    steps += 1 if discard_penultimate else 0
    if steps > num_timesteps:
        raise ValueError(f"timestep samplers take at most {num_timesteps} steps, got {steps}")
    return torch.clip(torch.arange(0, num_timesteps, num_timesteps // steps) + 1, 0, num_timesteps - 1)


def img2img_start(init_latent: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, t_enc: int,
                  alphas_cumprod: torch.Tensor, extra_noise: float = 0.0) -> torch.Tensor:
    """img2img start latent: ``x0 sqrt(a) + noise sqrt(1 - a)`` with ``a = alpha_bar[timesteps[t_enc]]``, plus
    A1111's extra noise ``noise · extra_noise · sqrt(a)`` (option "Extra noise multiplier for img2img and hires fix").

    The sampler then runs ``timesteps[:t_enc]``, whose top timestep is one grid step below this noise level (A1111).
    """
    if not 0 <= t_enc < len(timesteps):
        raise ValueError(f"t_enc {t_enc} outside the {len(timesteps)} timesteps")
    a = alphas_cumprod.to(init_latent.device)[timesteps[t_enc]]
    x = init_latent * torch.sqrt(a) + noise * torch.sqrt(1 - a)
    if extra_noise > 0:
        x = x + noise * extra_noise * torch.sqrt(a)
    return x


def _coefficients(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, device: torch.device):
    ac = alphas_cumprod.to(device)
    ts = timesteps.to(device)
    alphas = ac[ts]
    # alpha-bar of the step below; the lowest step's "previous" is timestep 0
    alphas_prev = ac[torch.nn.functional.pad(ts[:-1], pad=(1, 0))].to(torch.float64)
    return alphas, alphas_prev, torch.sqrt(1 - alphas)


def _check(x: torch.Tensor, timesteps: torch.Tensor, minimum: int = 2) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError("x must be a tensor with a batch dimension")
    if not isinstance(timesteps, torch.Tensor) or timesteps.ndim != 1 or len(timesteps) < minimum:
        raise ValueError(f"timesteps must be a 1-D tensor with at least {minimum} entries")


def _ddim(model, x, timesteps, alphas_cumprod, extra_args, callback, disable, eta, noise_sampler, cfgpp):
    # fewer than 2 timesteps (img2img at a very low strength) run no step, as in A1111
    _check(x, timesteps, minimum=0)
    extra_args = {} if extra_args is None else extra_args
    alphas, alphas_prev, sqrt_one_minus_alphas = _coefficients(alphas_cumprod, timesteps, x.device)
    a_np, prev_np = alphas.cpu().double().numpy(), alphas_prev.cpu().numpy()
    sigmas = eta * np.sqrt((1 - prev_np) / (1 - a_np) * (1 - a_np / prev_np))
    s_in = x.new_ones((x.shape[0]))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    for i in trange(len(timesteps) - 1, disable=disable):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in, **extra_args)
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        # CFG++ points back along the unconditional eps; plain DDIM along the guided one
        direction = model.last_uncond if cfgpp else e_t
        dir_xt = (1. - a_prev - sigma_t ** 2).sqrt() * direction
        # one draw per call, even when eta = 0 (then scaled by 0)
        draw = torch.randn_like(x) if noise_sampler is None else noise_sampler(None, None)
        x = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * draw
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


@torch.no_grad()
def sample_ddim(model: EpsModel, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                disable: Optional[bool] = None, eta: float = 0.0,
                noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """A1111 "DDIM": ``len(timesteps) - 1`` calls from the top timestep down to ``timesteps[0] = 1`` (not 0).

    ``x = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) e + s z``, ``s = eta sqrt((1 - a_prev)/(1 - a)(1 - a/a_prev))``;
    ``z`` is drawn on every call.
    """
    return _ddim(model, x, timesteps, alphas_cumprod, extra_args, callback, disable, eta, noise_sampler, False)


@torch.no_grad()
def sample_ddim_cfgpp(model: EpsModel, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                      extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                      disable: Optional[bool] = None, eta: float = 0.0,
                      noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """A1111 "DDIM CFG++": DDIM whose direction term uses the unconditional eps of the same call.

    ``model`` must expose ``last_uncond`` after each call (the CFG layers here do); A1111 also divides the CFG scale
    by 12.5 for this sampler, which is the caller's job (the pipeline does it).
    """
    return _ddim(model, x, timesteps, alphas_cumprod, extra_args, callback, disable, eta, noise_sampler, True)


@torch.no_grad()
def sample_plms(model: EpsModel, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                disable: Optional[bool] = None) -> torch.Tensor:
    """A1111 "PLMS": pseudo improved Euler first (2 calls), then Adams-Bashforth of order 2, 3, 4 on eps.

    ``len(timesteps)`` calls in all; deterministic.
    """
    _check(x, timesteps, minimum=0)
    extra_args = {} if extra_args is None else extra_args
    alphas, alphas_prev, sqrt_one_minus_alphas = _coefficients(alphas_cumprod, timesteps, x.device)
    s_in = x.new_ones([x.shape[0]])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    old_eps: List[torch.Tensor] = []

    def step(x, e_t, index):
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1. - a_prev).sqrt() * e_t
        return a_prev.sqrt() * pred_x0 + dir_xt, pred_x0

    for i in trange(len(timesteps) - 1, disable=disable):
        index = len(timesteps) - 1 - i
        ts = timesteps[index].item() * s_in
        t_next = timesteps[max(index - 1, 0)].item() * s_in
        e_t = model(x, ts, **extra_args)
        if not old_eps:
            x_prev, _ = step(x, e_t, index)
            e_t_next = model(x_prev, t_next, **extra_args)
            e_t_prime = (e_t + e_t_next) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x_prev, pred_x0 = step(x, e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        x = x_prev
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


# --- UniPC (Zhao et al. 2023) as A1111 runs it: multistep, data prediction, discrete VP schedule -----------------------

def _interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x (xp increasing), extrapolating from the end segments."""
    k = xp.shape[0]
    start = torch.searchsorted(xp, x.contiguous(), right=True) - 1
    start = start.clamp(0, k - 2)
    x0, x1, y0, y1 = xp[start], xp[start + 1], fp[start], fp[start + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class DiscreteVPSchedule:
    """Continuous-time view of a discrete alpha-bar table: ``log alpha(t)`` piecewise linear on ``t_n = (n + 1)/N``."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.log_alpha = 0.5 * torch.log(alphas_cumprod.float().cpu())
        self.total_n = len(self.log_alpha)
        self.t_array = torch.linspace(0., 1., self.total_n + 1)[1:]
        self.T = 1.
        self.eps = 1. / self.total_n

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32)
        return _interpolate(t.reshape(-1).cpu(), self.t_array, self.log_alpha).reshape(t.shape).to(t.device)

    def alpha(self, t):
        return torch.exp(self.log_mean_coeff(t))

    def std(self, t):
        return torch.sqrt(1. - torch.exp(2. * self.log_mean_coeff(t)))

    def lambda_(self, t):
        lmc = self.log_mean_coeff(t)
        return lmc - 0.5 * torch.log(1. - torch.exp(2. * lmc))

    def inverse_lambda(self, lamb: torch.Tensor) -> torch.Tensor:
        log_alpha = -0.5 * torch.logaddexp(torch.zeros((1,)), -2. * lamb.reshape(-1).float().cpu())
        return _interpolate(log_alpha, torch.flip(self.log_alpha, [0]), torch.flip(self.t_array, [0]))

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.eps) * 1000.


def _unipc_grid(ns: DiscreteVPSchedule, skip_type: str, t_T: float, t_0: float, n: int) -> torch.Tensor:
    if skip_type == "time_uniform":
        return torch.linspace(t_T, t_0, n + 1)
    if skip_type == "time_quadratic":
        return torch.linspace(t_T ** 0.5, t_0 ** 0.5, n + 1).pow(2)
    if skip_type == "logSNR":
        lam_T, lam_0 = ns.lambda_(torch.tensor(float(t_T))), ns.lambda_(torch.tensor(float(t_0)))
        return ns.inverse_lambda(torch.linspace(lam_T.item(), lam_0.item(), n + 1))
    raise ValueError(f"unknown UniPC skip type {skip_type!r}; valid: time_uniform, time_quadratic, logSNR")


UNIPC_VARIANTS = ("bh1", "bh2")
UNIPC_SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")


@torch.no_grad()
def sample_unipc(model: EpsModel, x: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                 extra_args: Optional[dict] = None, callback: Optional[Callback] = None,
                 disable: Optional[bool] = None, is_img2img: bool = False, variant: str = "bh1",
                 skip_type: str = "time_uniform", order: int = 3, lower_order_final: bool = True) -> torch.Tensor:
    """A1111 "UniPC": ``len(timesteps)`` multistep UniPC steps in continuous time from ``t_T`` down to 1/N.

    Predictor-corrector in data-prediction form; the corrector runs on every step but the last and reuses its model
    evaluation, so there are ``len(timesteps)`` model calls. ``t_T`` is 1 for txt2img and
    ``timesteps[-1] / 1000 + 0.001`` for img2img (A1111). The model is called at ``(t - 1/N) * 1000``.
    A1111's defaults: variant bh1, skip type time_uniform, order 3, lower order final.
    """
    _check(x, timesteps, minimum=1)
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; valid: {', '.join(UNIPC_VARIANTS)}")
    steps = len(timesteps)
    if not 1 <= order <= 3 or steps < order:
        raise ValueError(f"UniPC of order {order} needs at least {order} steps, got {steps} "
                         f"(order must be 1, 2 or 3)")
    extra_args = {} if extra_args is None else extra_args
    ns = DiscreteVPSchedule(alphas_cumprod)
    t_0 = 1. / ns.total_n
    t_T = (timesteps[-1] / 1000 + 1 / 1000).item() if is_img2img else ns.T
    grid = _unipc_grid(ns, skip_type, t_T, t_0, steps).to(x.device)
    calls = [0]

    def data_pred(x, t):
        t_in = ns.model_time(t).expand((x.shape[0]))
        eps = model(x, t_in, **extra_args)
        calls[0] += 1
        return (x - ns.std(t) * eps) / ns.alpha(t)

    def update(x, model_prev, t_prev, t, step_order, use_corrector):
        model_prev_0, t_prev_0 = model_prev[-1], t_prev[-1]
        lambda_prev_0, lambda_t = ns.lambda_(t_prev_0), ns.lambda_(t)
        sigma_prev_0, sigma_t = ns.std(t_prev_0), ns.std(t)
        alpha_t = torch.exp(ns.log_mean_coeff(t))
        h = lambda_t - lambda_prev_0
        rks, d1s = [], []
        for i in range(1, step_order):
            lambda_prev_i = ns.lambda_(t_prev[-(i + 1)])
            rk = (lambda_prev_i - lambda_prev_0) / h
            rks.append(rk)
            d1s.append((model_prev[-(i + 1)] - model_prev_0) / rk)
        rks.append(torch.ones_like(h))
        rks = torch.stack(rks).reshape(-1).to(x.device)
        hh = -h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        b_h = hh if variant == "bh1" else torch.expm1(hh)
        rows, b = [], []
        for i in range(1, step_order + 1):
            rows.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / b_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        R = torch.stack(rows)
        b = torch.stack(b).reshape(-1).to(x.device)
        if d1s:
            d1s = torch.stack(d1s, dim=1)
            rhos_p = (torch.tensor([0.5], device=x.device) if step_order == 2
                      else torch.linalg.solve(R[:-1, :-1], b[:-1])).to(x.dtype)
        else:
            d1s = None
        if use_corrector:
            rhos_c = (torch.tensor([0.5], device=x.device) if step_order == 1 else torch.linalg.solve(R, b)).to(x.dtype)
        x_t_ = sigma_t / sigma_prev_0 * x - alpha_t * h_phi_1 * model_prev_0
        pred_res = torch.einsum("k,bk...->b...", rhos_p, d1s) if d1s is not None else 0
        x_t = x_t_ - alpha_t * b_h * pred_res
        model_t = None
        if use_corrector:
            model_t = data_pred(x_t, t)
            corr_res = torch.einsum("k,bk...->b...", rhos_c[:-1], d1s) if d1s is not None else 0
            x_t = x_t_ - alpha_t * b_h * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t

    t_prev = [grid[0]]
    model_prev = [data_pred(x, grid[0])]
    for step in trange(1, steps + 1, disable=disable):
        t = grid[step]
        if step < order:
            step_order = step
        else:
            step_order = min(order, steps + 1 - step) if lower_order_final else order
        use_corrector = step < steps
        x, model_x = update(x, model_prev, t_prev, t, step_order, use_corrector)
        if step >= order:
            t_prev, model_prev = t_prev[1:], model_prev[1:]
        t_prev.append(t)
        if step < steps:
            if model_x is None:
                model_x = data_pred(x, t)
            model_prev.append(model_x)
        if callback is not None:
            callback({"x": x, "i": step - 1, "sigma": 0, "sigma_hat": 0,
                      "denoised": model_prev[-1] if step < steps else x})
    return x
