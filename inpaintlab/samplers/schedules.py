"""Noise schedules for SD 1.x as k-diffusion and AUTOMATIC1111 v1.10 build them.

Every schedule is a 1-D float32 tensor of sigmas, descending, with a trailing zero: ``n`` sigmas give ``n`` sampler
steps. The arithmetic is chosen for bit-exact agreement with k-diffusion, not for elegance: the discrete table is
built from float64 betas and cumprod, stored float32; Karras is the float32 chain of torch ops on the CPU.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch

Device = Union[str, torch.device]

# v1-inference.yaml
SD1_LINEAR_START = 0.00085
SD1_LINEAR_END = 0.012
SD1_TIMESTEPS = 1000


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def sd1_alphas_cumprod(linear_start: float = SD1_LINEAR_START, linear_end: float = SD1_LINEAR_END,
                       timesteps: int = SD1_TIMESTEPS) -> torch.Tensor:
    """LDM's "linear" (diffusers' "scaled_linear") alpha-bar table, float64 arithmetic stored as float32.

    Matches ldm ``make_beta_schedule('linear')`` + ``register_schedule``: the square roots of the beta ends are
    spaced by a float64 torch linspace and squared, the cumulative product of ``1 - beta`` is taken in float64
    and only then rounded to float32 (diffusers rounds the betas first, which moves sigma_max by 5e-6).
    """
    if timesteps < 2:
        raise ValueError(f"timesteps must be >= 2, got {timesteps}")
    if not 0.0 < linear_start < linear_end < 1.0:
        raise ValueError(f"need 0 < linear_start < linear_end < 1, got {linear_start}, {linear_end}")
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas.numpy(), axis=0)
    return torch.tensor(alphas_cumprod, dtype=torch.float32)


class DiscreteSchedule:
    """The 1000 discrete training noise levels of an eps-prediction DDPM, and the maps sigma <-> fractional t.

    Follows k-diffusion ``DiscreteSchedule`` / ``DiscreteEpsDDPMDenoiser`` (what A1111 wraps SD 1.x models in):
    ``sigmas[i] = sqrt((1 - alpha_bar[i]) / alpha_bar[i])``, increasing in i, ``log_sigmas = log(sigmas)``, both
    computed in the dtype of ``alphas_cumprod``.

    ``downcast=True`` rounds alpha_bar to float16 first, so the whole table is float16 (sigma range 0.03125 ...
    14.609375): A1111 up to v1.7 with fp16 weights, or its "Downcast alphas_cumprod" option. Mixed-precision
    expressions below are written so torch's type promotion matches k-diffusion's on such a table.

    Tables live on the CPU; ``to(device)`` returns a copy elsewhere (A1111 keeps them on the model device, which
    only matters for :meth:`get_sigmas` and ``sigma_to_t`` rounding on a GPU).
    """

    def __init__(self, linear_start: float = SD1_LINEAR_START, linear_end: float = SD1_LINEAR_END,
                 timesteps: int = SD1_TIMESTEPS, *, downcast: bool = False) -> None:
        alphas_cumprod = sd1_alphas_cumprod(linear_start, linear_end, timesteps)
        if downcast:
            alphas_cumprod = alphas_cumprod.half()
        self._set_table(alphas_cumprod)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor) -> "DiscreteSchedule":
        """Schedule from an existing alpha-bar table (float32 or float16, decreasing, values in (0, 1))."""
        if not isinstance(alphas_cumprod, torch.Tensor) or alphas_cumprod.ndim != 1 or alphas_cumprod.numel() < 2:
            raise ValueError("alphas_cumprod must be a 1-D tensor with at least 2 entries")
        if not alphas_cumprod.is_floating_point():
            raise ValueError(f"alphas_cumprod must be floating point, got {alphas_cumprod.dtype}")
        if not bool(((alphas_cumprod > 0) & (alphas_cumprod < 1)).all()):
            raise ValueError("alphas_cumprod values must lie strictly between 0 and 1")
        if bool((alphas_cumprod[1:] > alphas_cumprod[:-1]).any()):
            raise ValueError("alphas_cumprod must be non-increasing")
        schedule = cls.__new__(cls)
        schedule._set_table(alphas_cumprod.detach().clone())
        return schedule

    def _set_table(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod
        self.sigmas = torch.sqrt((1 - alphas_cumprod) / alphas_cumprod)
        self.log_sigmas = self.sigmas.log()
        self._copies = {}

    def to(self, device: Device) -> "DiscreteSchedule":
        """A copy with the tables on ``device`` (``self`` when they are already there); copies are cached."""
        device = torch.device(device)
        if self.sigmas.device == device:
            return self
        if device not in self._copies:
            moved = self.__class__.__new__(self.__class__)
            moved.alphas_cumprod = self.alphas_cumprod.to(device)
            moved.sigmas = self.sigmas.to(device)
            moved.log_sigmas = self.log_sigmas.to(device)
            moved._copies = {}
            self._copies[device] = moved
        return self._copies[device]

    @property
    def num_timesteps(self) -> int:
        return self.sigmas.shape[0]

    @property
    def sigma_min(self) -> float:
        """Smallest table sigma as a Python float (A1111 passes ``sigmas[0].item()`` to Karras)."""
        return self.sigmas[0].item()

    @property
    def sigma_max(self) -> float:
        """Largest table sigma as a Python float (``sigmas[-1].item()``)."""
        return self.sigmas[-1].item()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(num_timesteps={self.num_timesteps}, dtype={self.sigmas.dtype}, "
                f"sigma_min={self.sigma_min:.9g}, sigma_max={self.sigma_max:.9g})")

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        """Map sigmas to (fractional) timesteps, as k-diffusion's ``DiscreteSchedule.sigma_to_t``.

        Not quantized (A1111 default): linear in log-sigma inside the table bin that holds ``sigma``, clamped to
        [0, num_timesteps - 1]. Quantized: index of the nearest log-sigma (first one on ties), int64.
        """
        sigma = torch.as_tensor(sigma)
        table = self.to(sigma.device)
        log_sigma = sigma.log().reshape(-1)
        if quantize:
            dists = (log_sigma[None, :] - table.log_sigmas[:, None]).abs()
            return dists.argmin(dim=0).view(sigma.shape)
        # lo = last table entry with log_sigma[lo] <= log_sigma (0 if none), kept below the last entry so that
        # hi = lo + 1 exists. The comparison is exact in float32 (a float16 table widens exactly).
        search = table.log_sigmas.to(log_sigma.dtype)
        lo = torch.searchsorted(search, log_sigma.contiguous(), right=True) - 1
        lo = lo.clamp(min=0, max=self.num_timesteps - 2)
        hi = lo + 1
        low, high = table.log_sigmas[lo], table.log_sigmas[hi]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        t = (1 - w) * lo + w * hi
        return t.view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma_to_t`: log-linear interpolation of the table at fractional ``t``."""
        t = torch.as_tensor(t).float()
        if bool(((t < 0) | (t > self.num_timesteps - 1)).any()):
            raise ValueError(f"t must lie in [0, {self.num_timesteps - 1}]")
        table = self.to(t.device)
        lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * table.log_sigmas[lo] + w * table.log_sigmas[hi]
        return log_sigma.exp()

    def get_sigmas(self, n: int, device: Optional[Device] = None) -> torch.Tensor:
        """A1111 "Automatic"/"Uniform": ``n`` sigmas at t = linspace(999, 0, n) plus a trailing zero.

        ``device`` is where the interpolation runs (A1111: the model's device); default the table's.
        """
        _check_steps(n)
        device = self.sigmas.device if device is None else torch.device(device)
        t = torch.linspace(self.num_timesteps - 1, 0, n, dtype=torch.float32, device=device)
        return _append_zero(self.t_to_sigma(t))


def _check_steps(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of steps must be a positive int, got {n!r}")


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not (0.0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                      device: Device = "cpu") -> torch.Tensor:
    """Karras et al. (2022) schedule, eq. 5, with k-diffusion's float32 arithmetic.

    ``sigma_min``/``sigma_max`` are Python floats. The ramp is torch's float32 ``linspace(0, 1, n)`` built on the
    CPU (its rounding depends on the CPU kernel for some n, not for n = 20); the 1/rho powers are float64 Python
    scalars that the tensor ops round to float32. The result is moved to ``device`` afterwards.
    """
    _check_steps(n)
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    _check_range(sigma_min, sigma_max)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float32)
    max_inv_rho = sigma_max ** (1 / rho)
    span = sigma_min ** (1 / rho) - max_inv_rho
    sigmas = (max_inv_rho + ramp * span) ** rho
    return _append_zero(sigmas).to(device)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, device: Device = "cpu") -> torch.Tensor:
    """Sigmas evenly spaced in log-sigma from ``sigma_max`` down to ``sigma_min``, then zero (k-diffusion)."""
    _check_steps(n)
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    _check_range(sigma_min, sigma_max)
    log_sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float32, device=device)
    return _append_zero(log_sigmas.exp())


def img2img_steps(steps: int, denoising_strength: float) -> int:
    """A1111 ``setup_img2img_steps`` default: ``t_enc = int(min(strength, 0.999) * steps)`` (truncation).

    The sampler then runs ``t_enc + 1`` steps. ``img2img_fix_steps`` is not modelled.
    """
    _check_steps(steps)
    d = float(denoising_strength)
    if not 0.0 <= d <= 1.0:  # also rejects NaN
        raise ValueError(f"denoising_strength must be in [0, 1], got {denoising_strength!r}")
    return int(min(d, 0.999) * steps)


def img2img_sigmas(sigmas: torch.Tensor, steps: int, denoising_strength: float) -> torch.Tensor:
    """Truncate a full ``steps``-step schedule for img2img the way A1111 v1.10 does (``sd_samplers_kdiffusion``).

    Returns ``sigmas[steps - t_enc - 1:]`` (a copy): ``t_enc + 2`` values, i.e. ``t_enc + 1`` steps. Strength 1
    starts at ``sigmas[0]``; strength 0 still runs one step from the smallest non-zero sigma.
    """
    t_enc = img2img_steps(steps, denoising_strength)
    if sigmas.ndim != 1 or sigmas.shape[0] != steps + 1:
        raise ValueError(f"expected a full schedule of steps + 1 = {steps + 1} sigmas, got shape {tuple(sigmas.shape)}")
    return sigmas[steps - t_enc - 1:].clone()
