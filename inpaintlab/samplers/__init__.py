"""Samplers, schedules and denoiser wrappers, named as AUTOMATIC1111 v1.10 names them.

``SAMPLERS`` maps A1111's 20 sampler names to their functions (``SAMPLER_CONFIGS`` says how A1111 runs each);
``SCHEDULERS`` maps schedule-type names to their labels; ``DEFAULT_SCHEDULER`` is what "Automatic" means for each
sampler (None: the model's own uniform-in-t schedule, ``DiscreteSchedule.get_sigmas``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, Optional, Tuple

import torch

from .brownian import BrownianTreeNoiseSampler, brownian_noise_sampler
from .cfg import CFGParts, a1111_combine
from .denoisers import (CFGDenoiser, DifferentialBlend, EpsDenoiser, InpaintBlend, InpaintBlendInput, LCMDenoiser,
                        ScheduledCFGDenoiser, SoftInpaintBlend, TimestepEpsModel, VDenoiser, cat_conds, stack_conds)
from .extra import sample_restart
from .rng import ImageRNG, resolve_seed
from .sampling import (sample_dpm_2, sample_dpm_2_ancestral, sample_dpm_adaptive, sample_dpm_fast, sample_dpmpp_2m,
                       sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral, sample_dpmpp_3m_sde, sample_dpmpp_sde,
                       sample_euler, sample_euler_ancestral, sample_heun, sample_lcm, sample_lms)
from .schedules import (AYS_SD1, DiscreteSchedule, LCMSchedule, discard_penultimate, get_sigmas_align_your_steps,
                        get_sigmas_beta, get_sigmas_ddim, get_sigmas_exponential, get_sigmas_karras,
                        get_sigmas_kl_optimal, get_sigmas_normal, get_sigmas_polyexponential, get_sigmas_sgm_uniform,
                        get_sigmas_simple, img2img_sigmas, img2img_steps)
from .timestep import get_timesteps, img2img_start, sample_ddim, sample_ddim_cfgpp, sample_plms, sample_unipc


_heun_2m_sde = partial(sample_dpmpp_2m_sde, solver_type="heun")


@dataclass(frozen=True)
class SamplerConfig:
    """How A1111 v1.10 runs a sampler.

    kind: "sigmas" (k-diffusion signature over a sigma schedule), "range" (DPM fast/adaptive: sigma_min, sigma_max
    and a call count), "timesteps" (A1111's DDIM/PLMS/UniPC on eps and integer timesteps). scheduler: the label
    "Automatic" resolves to (None: the model's uniform-in-t schedule). second_order: A1111 counts 2 denoiser calls
    per step for prompt schedules. discard_penultimate: build steps + 1 sigmas and drop the second-to-last.
    brownian: noise from per-image Brownian trees. uses_ensd: A1111 records ENSD for it (when eta != 0). eta: the
    default eta (None: no eta parameter); eta_key: its infotext key. churn: which of s_churn/s_tmin/s_tmax/s_noise it
    takes.
    """

    name: str
    function: Callable
    aliases: Tuple[str, ...] = ()
    kind: str = "sigmas"
    scheduler: Optional[str] = None
    second_order: bool = False
    discard_penultimate: bool = False
    brownian: bool = False
    uses_ensd: bool = False
    eta: Optional[float] = None
    eta_key: str = "Eta"
    churn: Tuple[str, ...] = ()
    extra: Dict[str, object] = field(default_factory=dict)


_ALL_CHURN = ("s_churn", "s_tmin", "s_tmax", "s_noise")
_NOISE_ONLY = ("s_noise",)

# A1111's UI order; "DPM++ 2M" is its default.
SAMPLER_CONFIGS: Dict[str, SamplerConfig] = {c.name: c for c in [
    SamplerConfig("DPM++ 2M", sample_dpmpp_2m, ("k_dpmpp_2m",), scheduler="Karras"),
    SamplerConfig("DPM++ SDE", sample_dpmpp_sde, ("k_dpmpp_sde",), scheduler="Karras", second_order=True,
                  brownian=True, eta=1.0, churn=_NOISE_ONLY),
    SamplerConfig("DPM++ 2M SDE", sample_dpmpp_2m_sde, ("k_dpmpp_2m_sde",), scheduler="Exponential",
                  brownian=True, eta=1.0, churn=_NOISE_ONLY),
    SamplerConfig("DPM++ 2M SDE Heun", _heun_2m_sde, ("k_dpmpp_2m_sde_heun",), scheduler="Exponential",
                  brownian=True, eta=1.0, churn=_NOISE_ONLY),
    SamplerConfig("DPM++ 2S a", sample_dpmpp_2s_ancestral, ("k_dpmpp_2s_a",), scheduler="Karras",
                  second_order=True, uses_ensd=True, eta=1.0, churn=_NOISE_ONLY),
    SamplerConfig("DPM++ 3M SDE", sample_dpmpp_3m_sde, ("k_dpmpp_3m_sde",), scheduler="Exponential",
                  discard_penultimate=True, brownian=True, eta=1.0, churn=_NOISE_ONLY),
    SamplerConfig("Euler a", sample_euler_ancestral, ("k_euler_a", "k_euler_ancestral"), uses_ensd=True, eta=1.0),
    SamplerConfig("Euler", sample_euler, ("k_euler",), churn=_ALL_CHURN),
    SamplerConfig("LMS", sample_lms, ("k_lms",)),
    SamplerConfig("Heun", sample_heun, ("k_heun",), second_order=True, churn=_ALL_CHURN),
    SamplerConfig("DPM2", sample_dpm_2, ("k_dpm_2",), scheduler="Karras", discard_penultimate=True,
                  second_order=True, churn=_ALL_CHURN),
    SamplerConfig("DPM2 a", sample_dpm_2_ancestral, ("k_dpm_2_a",), scheduler="Karras", discard_penultimate=True,
                  second_order=True, uses_ensd=True, eta=1.0, churn=_NOISE_ONLY),
    SamplerConfig("DPM fast", sample_dpm_fast, ("k_dpm_fast",), kind="range", uses_ensd=True, eta=1.0,
                  churn=_NOISE_ONLY),
    SamplerConfig("DPM adaptive", sample_dpm_adaptive, ("k_dpm_ad",), kind="range", uses_ensd=True, eta=1.0),
    SamplerConfig("Restart", sample_restart, ("restart",), scheduler="Karras", second_order=True),
    SamplerConfig("DDIM", sample_ddim, ("ddim",), kind="timesteps", eta=0.0, eta_key="Eta DDIM"),
    SamplerConfig("DDIM CFG++", sample_ddim_cfgpp, ("ddim_cfgpp",), kind="timesteps", eta=0.0, eta_key="Eta DDIM",
                  extra={"cfg_scale_multiplier": 1 / 12.5}),
    SamplerConfig("PLMS", sample_plms, ("plms",), kind="timesteps"),
    SamplerConfig("UniPC", sample_unipc, ("unipc",), kind="timesteps"),
    SamplerConfig("LCM", sample_lcm, ("k_lcm",)),
]}

SAMPLERS: Dict[str, Callable] = {name: c.function for name, c in SAMPLER_CONFIGS.items()}

# A1111 aliases
SAMPLER_ALIASES: Dict[str, str] = {alias: c.name for c in SAMPLER_CONFIGS.values() for alias in c.aliases}

# name -> label
SCHEDULERS: Dict[str, str] = {
    "automatic": "Automatic",
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "polyexponential": "Polyexponential",
    "sgm_uniform": "SGM Uniform",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
    "simple": "Simple",
    "normal": "Normal",
    "ddim": "DDIM",
    "beta": "Beta",
}
SCHEDULER_ALIASES: Dict[str, str] = {"sgmuniform": "SGM Uniform"}

DEFAULT_SCHEDULER: Dict[str, Optional[str]] = {name: c.scheduler for name, c in SAMPLER_CONFIGS.items()}


def _scheduler_label(scheduler: str) -> Optional[str]:
    key = scheduler.strip().lower()
    if key in SCHEDULERS:
        return SCHEDULERS[key]
    for label in SCHEDULERS.values():
        if label.lower() == key:
            return label
    return SCHEDULER_ALIASES.get(key)


def _sampler_name(name: str) -> Optional[str]:
    key = name.strip().lower()
    for canonical in SAMPLERS:
        if canonical.lower() == key:
            return canonical
    return SAMPLER_ALIASES.get(key)


def resolve_sampler(name: str, scheduler: Optional[str] = "Automatic") -> Tuple[str, str]:
    """Canonical ``(sampler name, scheduler label)``.

    Accepts A1111 names case-insensitively, k-diffusion aliases ("k_euler") and pre-1.9 combined names that end in
    a scheduler label ("DPM++ 2M Karras"); scheduler names or labels in any case. "Automatic" (or None) resolves to
    the sampler's default scheduler, which stays "Automatic" for samplers without one (the model's schedule).
    Raises ValueError naming the valid choices for an unknown sampler or scheduler, or when a combined name and
    an explicit scheduler disagree.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"sampler name must be a non-empty string; valid: {', '.join(SAMPLERS)}")
    scheduler = "Automatic" if scheduler is None else scheduler
    if not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be a string; valid: {', '.join(SCHEDULERS.values())}")
    label = _scheduler_label(scheduler)
    if label is None:
        raise ValueError(f"unknown scheduler {scheduler!r}; valid: {', '.join(SCHEDULERS.values())} "
                         f"(or their lowercase names)")
    sampler = _sampler_name(name)
    if sampler is None:
        # old combined names: "<sampler> <scheduler label>"
        for suffix in SCHEDULERS.values():
            stem = name.strip()
            if stem.lower().endswith(" " + suffix.lower()):
                sampler = _sampler_name(stem[: -len(suffix) - 1])
                if sampler is not None:
                    if label != "Automatic" and label != suffix:
                        raise ValueError(f"sampler {name!r} names scheduler {suffix!r} but scheduler={scheduler!r} "
                                         f"was also given")
                    label = suffix
                    break
    if sampler is None:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)} (a trailing scheduler label "
                         f"such as 'DPM++ 2M Karras' is also accepted)")
    if label == "Automatic" and DEFAULT_SCHEDULER[sampler] is not None:
        label = DEFAULT_SCHEDULER[sampler]
    return sampler, label


def sampler_config(name: str) -> SamplerConfig:
    """The :class:`SamplerConfig` of a sampler name or alias (case-insensitive)."""
    return SAMPLER_CONFIGS[resolve_sampler(name)[0]]


def total_steps(sampler: str, steps: int) -> int:
    """Step count A1111 builds prompt schedules over: ``2 * steps`` for second-order samplers."""
    return 2 * steps if sampler_config(sampler).second_order else steps


CHURN_DEFAULTS = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0}
CHURN_KEYS = {"s_churn": "Sigma churn", "s_tmin": "Sigma tmin", "s_tmax": "Sigma tmax", "s_noise": "Sigma noise"}


def sampler_options(sampler: str, eta: Optional[float] = None, s_churn: float = 0.0, s_tmin: float = 0.0,
                    s_tmax: float = 0.0, s_noise: float = 1.0) -> Tuple[Dict[str, float], Dict[str, float]]:
    """``(keyword arguments for the sampler function, infotext entries)`` for eta and the churn settings.

    As A1111 v1.10: eta goes to samplers with an eta parameter (default 1.0, "Eta DDIM" default 0.0; None = the
    default) and is written when it differs from the default; s_churn/s_tmin/s_tmax/s_noise go only to the samplers
    that take them (Euler, Heun, DPM2: all four; DPM2 a, DPM++ 2S a, DPM++ SDE/2M SDE/3M SDE, DPM fast: s_noise) and
    are written as "Sigma churn" etc. when not at their defaults (0, 0, 0 = infinity, 1). Other samplers ignore them.
    """
    config = sampler_config(sampler)
    values = {"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise}
    for key, value in [("eta", eta), *values.items()]:
        if value is None and key == "eta":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
    options: Dict[str, float] = {}
    infotext: Dict[str, float] = {}
    if config.eta is not None:
        options["eta"] = config.eta if eta is None else float(eta)
        if options["eta"] != config.eta:
            infotext[config.eta_key] = options["eta"]
    for key in config.churn:
        value = float(values[key])
        if value != CHURN_DEFAULTS[key]:
            options[key] = value
            infotext[CHURN_KEYS[key]] = value
    return options, infotext


def records_ensd(sampler: str, eta: Optional[float] = None) -> bool:
    """Whether A1111 writes "ENSD" (when non-zero) for this sampler: it must use ENSD and run with eta != 0.

    ENSD still changes every later draw of the per-image generators for DDIM with eta > 0, Restart, LCM and churned
    Euler/Heun/DPM2; A1111 just does not record it for them.
    """
    config = sampler_config(sampler)
    effective = config.eta if eta is None else eta
    return config.uses_ensd and bool(effective)


def schedule_for(schedule: DiscreteSchedule, sampler: str) -> DiscreteSchedule:
    """The table a sampler's denoiser runs on: LCM's 50 levels for "LCM", the model's table otherwise."""
    if sampler_config(sampler).name == "LCM" and not isinstance(schedule, LCMSchedule):
        return LCMSchedule(schedule)
    return schedule


def build_sigmas(schedule: DiscreteSchedule, sampler: str, scheduler: Optional[str], steps: int, *,
                 sigma_min: Optional[float] = None, sigma_max: Optional[float] = None, rho: Optional[float] = None,
                 beta_alpha: float = 0.6, beta_beta: float = 0.6,
                 discard_penultimate_sigma: Optional[bool] = None) -> torch.Tensor:
    """The full ``steps``-step schedule A1111 v1.10 builds for this sampler and schedule type.

    ``steps + 1`` sigmas ending in 0, except: "DDIM" gives ``ceil(999 / (1000 // steps))`` steps, "KL Optimal" ends
    at sigma_min without a 0. sigma_min/sigma_max default to the table ends (A1111's "Schedule min/max sigma"
    options override them; "Align Your Steps" ignores them); ``rho`` overrides Karras' 7 and Polyexponential's 1;
    beta_alpha/beta_beta are the "Beta" schedule's distribution. Samplers with A1111's
    ``discard_next_to_last_sigma`` (DPM2, DPM2 a, DPM++ 3M SDE; or ``discard_penultimate_sigma=True``) get
    ``steps + 1`` sigmas with the second-to-last removed. Built on the CPU. The timestep samplers (DDIM, DDIM
    CFG++, PLMS, UniPC) have no sigma schedule: see :func:`get_timesteps`.
    """
    name, label = resolve_sampler(sampler, scheduler)
    config = SAMPLER_CONFIGS[name]
    if config.kind == "timesteps":
        raise ValueError(f"{name} runs on A1111's own timesteps, not a sigma schedule: use get_timesteps(steps)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"number of steps must be a positive int, got {steps!r}")
    table = schedule_for(schedule, name)
    discard = config.discard_penultimate if discard_penultimate_sigma is None else bool(discard_penultimate_sigma)
    n = steps + 1 if discard else steps
    lo = table.sigma_min if sigma_min is None else float(sigma_min)
    hi = table.sigma_max if sigma_max is None else float(sigma_max)
    if label in ("Automatic", "Uniform"):
        sigmas = table.get_sigmas(n).cpu()
    elif label == "Karras":
        sigmas = get_sigmas_karras(n, lo, hi, rho=7.0 if rho is None else rho, device="cpu")
    elif label == "Exponential":
        sigmas = get_sigmas_exponential(n, lo, hi, device="cpu")
    elif label == "Polyexponential":
        sigmas = get_sigmas_polyexponential(n, lo, hi, rho=1.0 if rho is None else rho, device="cpu")
    elif label == "SGM Uniform":
        sigmas = get_sigmas_sgm_uniform(n, lo, hi, table)
    elif label == "KL Optimal":
        sigmas = get_sigmas_kl_optimal(n, lo, hi)
    elif label == "Align Your Steps":
        sigmas = get_sigmas_align_your_steps(n)
    elif label == "Simple":
        sigmas = get_sigmas_simple(n, table)
    elif label == "Normal":
        sigmas = get_sigmas_normal(n, lo, hi, table)
    elif label == "DDIM":
        sigmas = get_sigmas_ddim(n, table)
    elif label == "Beta":
        sigmas = get_sigmas_beta(n, lo, hi, beta_alpha, beta_beta)
    else:  # pragma: no cover - SCHEDULERS and this function disagree
        raise AssertionError(f"scheduler label {label!r} has no builder")
    if discard and len(sigmas) >= 3:
        sigmas = discard_penultimate(sigmas)
    return sigmas


__all__ = [
    "CFGParts", "a1111_combine",
    "SAMPLERS", "SAMPLER_CONFIGS", "SamplerConfig", "SAMPLER_ALIASES", "SCHEDULERS", "DEFAULT_SCHEDULER",
    "resolve_sampler", "sampler_config", "total_steps", "sampler_options", "records_ensd", "CHURN_DEFAULTS",
    "schedule_for", "build_sigmas", "get_timesteps",
    "img2img_start",
    "sample_euler", "sample_euler_ancestral", "sample_heun", "sample_dpm_2", "sample_dpm_2_ancestral", "sample_lms",
    "sample_dpm_fast", "sample_dpm_adaptive", "sample_dpmpp_2s_ancestral", "sample_dpmpp_sde", "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde", "sample_restart", "sample_lcm", "sample_ddim", "sample_ddim_cfgpp",
    "sample_plms", "sample_unipc", "BrownianTreeNoiseSampler", "brownian_noise_sampler",
    "DiscreteSchedule", "LCMSchedule", "get_sigmas_karras", "get_sigmas_exponential", "get_sigmas_polyexponential",
    "get_sigmas_sgm_uniform", "get_sigmas_kl_optimal", "get_sigmas_align_your_steps", "get_sigmas_simple",
    "get_sigmas_normal", "get_sigmas_ddim", "get_sigmas_beta", "discard_penultimate", "AYS_SD1", "img2img_sigmas",
    "img2img_steps",
    "EpsDenoiser", "VDenoiser", "TimestepEpsModel", "LCMDenoiser", "CFGDenoiser", "ScheduledCFGDenoiser",
    "stack_conds", "cat_conds",
    "InpaintBlend", "InpaintBlendInput", "SoftInpaintBlend", "DifferentialBlend", "ImageRNG", "resolve_seed",
]
