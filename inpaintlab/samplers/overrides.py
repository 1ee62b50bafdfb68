"""A1111's schedule overrides (Settings → Sampler parameters): "Schedule min/max sigma", "Schedule rho" and the Beta
schedule's alpha/beta, as `KDiffusionSampler.get_sigmas` applies and records them.

They act only on the path that calls a scheduler function, i.e. with a schedule type other than "Automatic" (samplers
whose Automatic has no default scheduler, such as Euler, keep the model's own schedule and write nothing). There:

* ``Schedule min sigma`` / ``Schedule max sigma``: when the option is not 0 and differs from the model's value;
* ``Schedule rho``: for schedulers with a default rho (Karras 7, Polyexponential 1) when not 0 and not that default;
* ``Beta schedule alpha`` / ``Beta schedule beta``: always when the schedule is Beta (the option values).
"""
from __future__ import annotations

from typing import Any

DEFAULT_RHO = {"Karras": 7.0, "Polyexponential": 1.0}


def schedule_overrides(label: str, model_sigma_min: float, model_sigma_max: float, sigma_min: float = 0.0,
                       sigma_max: float = 0.0, rho: float = 0.0, beta_alpha: float = 0.6,
                       beta_beta: float = 0.6) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(keyword arguments for build_sigmas, infotext entries in A1111's order)`` for one schedule type."""
    kwargs: dict[str, Any] = {"beta_alpha": beta_alpha, "beta_beta": beta_beta}
    infotext: dict[str, Any] = {}
    if label == "Automatic":
        return kwargs, infotext
    if label == "Beta":
        infotext["Beta schedule alpha"], infotext["Beta schedule beta"] = beta_alpha, beta_beta
    if sigma_min != 0 and sigma_min != model_sigma_min:
        kwargs["sigma_min"] = infotext["Schedule min sigma"] = sigma_min
    if sigma_max != 0 and sigma_max != model_sigma_max:
        kwargs["sigma_max"] = infotext["Schedule max sigma"] = sigma_max
    if label in DEFAULT_RHO and rho != 0 and rho != DEFAULT_RHO[label]:
        kwargs["rho"] = infotext["Schedule rho"] = rho
    return kwargs, infotext
