"""Samplers, schedules and denoiser wrappers, named as AUTOMATIC1111 v1.10 names them.

``SAMPLERS`` maps A1111 sampler names to k-diffusion-style functions; ``SCHEDULERS`` maps scheduler names to their
labels; ``DEFAULT_SCHEDULER`` is what "Automatic" means for each sampler (None: the model's own uniform-in-t
schedule, ``DiscreteSchedule.get_sigmas``).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from .denoisers import (CFGDenoiser, DifferentialBlend, EpsDenoiser, InpaintBlend, ScheduledCFGDenoiser,
                        SoftInpaintBlend, VDenoiser, cat_conds,
                        stack_conds)
from .rng import ImageRNG, resolve_seed
from .sampling import sample_dpmpp_2m, sample_euler, sample_euler_ancestral
from .schedules import (DiscreteSchedule, get_sigmas_exponential, get_sigmas_karras, img2img_sigmas,
                        img2img_steps)

SAMPLERS: Dict[str, Callable] = {
    "Euler": sample_euler,
    "Euler a": sample_euler_ancestral,
    "DPM++ 2M": sample_dpmpp_2m,
}

# A1111 aliases (k-diffusion function names)
SAMPLER_ALIASES: Dict[str, str] = {
    "k_euler": "Euler",
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "k_dpmpp_2m": "DPM++ 2M",
}

# name -> label
SCHEDULERS: Dict[str, str] = {
    "automatic": "Automatic",
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
}

DEFAULT_SCHEDULER: Dict[str, Optional[str]] = {
    "Euler": None,
    "Euler a": None,
    "DPM++ 2M": "Karras",
}


def _scheduler_label(scheduler: str) -> Optional[str]:
    key = scheduler.strip().lower()
    if key in SCHEDULERS:
        return SCHEDULERS[key]
    return None


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


def build_sigmas(schedule: DiscreteSchedule, sampler: str, scheduler: Optional[str], steps: int) -> torch.Tensor:
    """The full ``steps``-step schedule (``steps + 1`` sigmas ending in 0) A1111 builds for this sampler/scheduler.

    Karras and Exponential use the table ends (``schedule.sigma_min``/``sigma_max``) and are built on the CPU;
    "Automatic" without a sampler default, and "Uniform", interpolate the table (``schedule.get_sigmas``).
    """
    _, label = resolve_sampler(sampler, scheduler)
    if label in ("Automatic", "Uniform"):
        return schedule.get_sigmas(steps)
    if label == "Karras":
        return get_sigmas_karras(steps, schedule.sigma_min, schedule.sigma_max, device="cpu")
    if label == "Exponential":
        return get_sigmas_exponential(steps, schedule.sigma_min, schedule.sigma_max, device="cpu")
    raise AssertionError(f"scheduler label {label!r} has no builder")  # SCHEDULERS and this function disagree


__all__ = [
    "SAMPLERS", "SAMPLER_ALIASES", "SCHEDULERS", "DEFAULT_SCHEDULER", "resolve_sampler", "build_sigmas",
    "sample_euler", "sample_euler_ancestral", "sample_dpmpp_2m",
    "DiscreteSchedule", "get_sigmas_karras", "get_sigmas_exponential", "img2img_sigmas", "img2img_steps",
    "EpsDenoiser", "VDenoiser", "CFGDenoiser", "ScheduledCFGDenoiser", "stack_conds", "cat_conds", "InpaintBlend",
    "SoftInpaintBlend", "DifferentialBlend", "ImageRNG", "resolve_seed",
]
