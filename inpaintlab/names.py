"""A1111's names for the choices settings take: samplers, schedules, mask modes, masked content, inpaint areas,
ControlNet preprocessors and control modes, emphasis modes and sd-dynamic-thresholding's choices, in one module that
needs no torch (the settings table and the infotext reader use only the names); the modules that implement each
choice import their names from here.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from .errors import SettingsError

# A1111's UI order ("DPM++ 2M" is its default): name -> (k-diffusion aliases, what "Automatic" schedule means; None:
# the model's own uniform-in-t schedule). `inpaintlab.samplers.SAMPLER_CONFIGS` must agree (checked at its import).
SAMPLER_TABLE: Dict[str, Tuple[Tuple[str, ...], Optional[str]]] = {
    "DPM++ 2M": (("k_dpmpp_2m",), "Karras"),
    "DPM++ SDE": (("k_dpmpp_sde",), "Karras"),
    "DPM++ 2M SDE": (("k_dpmpp_2m_sde",), "Exponential"),
    "DPM++ 2M SDE Heun": (("k_dpmpp_2m_sde_heun",), "Exponential"),
    "DPM++ 2S a": (("k_dpmpp_2s_a",), "Karras"),
    "DPM++ 3M SDE": (("k_dpmpp_3m_sde",), "Exponential"),
    "Euler a": (("k_euler_a", "k_euler_ancestral"), None),
    "Euler": (("k_euler",), None),
    "LMS": (("k_lms",), None),
    "Heun": (("k_heun",), None),
    "DPM2": (("k_dpm_2",), "Karras"),
    "DPM2 a": (("k_dpm_2_a",), "Karras"),
    "DPM fast": (("k_dpm_fast",), None),
    "DPM adaptive": (("k_dpm_ad",), None),
    "Restart": (("restart",), "Karras"),
    "DDIM": (("ddim",), None),
    "DDIM CFG++": (("ddim_cfgpp",), None),
    "PLMS": (("plms",), None),
    "UniPC": (("unipc",), None),
    "LCM": (("k_lcm",), None),
}
SAMPLER_NAMES: Tuple[str, ...] = tuple(SAMPLER_TABLE)
# A1111 aliases
SAMPLER_ALIASES: Dict[str, str] = {alias: name for name, (aliases, _) in SAMPLER_TABLE.items() for alias in aliases}
DEFAULT_SCHEDULER: Dict[str, Optional[str]] = {name: scheduler for name, (_, scheduler) in SAMPLER_TABLE.items()}

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
    for canonical in SAMPLER_NAMES:
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
        raise SettingsError(f"sampler name must be a non-empty string; valid: {', '.join(SAMPLER_NAMES)}")
    scheduler = "Automatic" if scheduler is None else scheduler
    if not isinstance(scheduler, str):
        raise SettingsError(f"scheduler must be a string; valid: {', '.join(SCHEDULERS.values())}")
    label = _scheduler_label(scheduler)
    if label is None:
        raise SettingsError(f"unknown scheduler {scheduler!r}; valid: {', '.join(SCHEDULERS.values())} "
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
                        raise SettingsError(f"sampler {name!r} names scheduler {suffix!r} but scheduler={scheduler!r} "
                                         f"was also given")
                    label = suffix
                    break
    if sampler is None:
        raise SettingsError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLER_NAMES)} (a trailing scheduler label "
                         f"such as 'DPM++ 2M Karras' is also accepted)")
    if label == "Automatic" and DEFAULT_SCHEDULER[sampler] is not None:
        label = DEFAULT_SCHEDULER[sampler]
    return sampler, label


# Masks and masked content (inpaintlab.masking)
MASK_MODES = ("masked", "not_masked")
INPAINT_AREAS = ("whole", "only_masked")
MASKED_CONTENT = ("fill", "original", "latent_noise", "latent_nothing")

# ControlNet (inpaintlab.controlnet)
PREPROCESSORS = ("inpaint_only", "inpaint_global_harmonious", "inpaint_only+lama")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")

# Prompt emphasis (inpaintlab.clip.conditioning)
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")

# sd-dynamic-thresholding (inpaintlab.guidance.dynamic_thresholding)
SCALE_MODES = ("Constant", "Linear Down", "Cosine Down", "Half Cosine Down", "Linear Up", "Cosine Up",
               "Half Cosine Up", "Power Up", "Power Down", "Linear Repeating", "Cosine Repeating", "Sawtooth")
STARTPOINTS = ("MEAN", "ZERO")
MEASURES = ("AD", "STD")
