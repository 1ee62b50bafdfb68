"""The CFG-level techniques as pipeline techniques: NGMS / Skip Early CFG, dynamic thresholding, CFG rescale, PAG.

Each counts the denoiser calls itself (A1111's ``CFGDenoiser.step``) through `wrap_cfg`, and reads A1111's lagging
``sampling_step`` from ``job.step``. ``total_calls`` is A1111's ``CFGDenoiser.total_steps``: the steps run
(``job.sampling_steps``), ``2·n − 1`` for second-order samplers.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..pipeline.technique import CFGParts, Technique, TechniqueError
from ..samplers.cfg import CFGDenoiser, ScheduledCFGDenoiser
from ..samplers.conds import _context, _repeat_cond, _sigma_batch
from ..ui_numbers import ui_number
from .cfg_rescale import INFOTEXT_KEY as RESCALE_KEY, cfg_rescale
from .cfg_rules import combine_cond_only, uncond_skip
from .dynamic_thresholding import DynamicThresholding

from .pag import PerturbedAttention, pag_active, pag_combine

DYNTHRES_FIELDS = ("mimic_scale", "threshold_percentile", "mimic_mode", "mimic_scale_min", "cfg_mode", "cfg_scale_min",
                   "scheduler_value", "separate_feature_channels", "scaling_startpoint", "variability_measure",
                   "interpolate_phi")


def total_calls(job: Any) -> int:
    """A1111's ``total_steps`` of the CFG denoiser for the current run."""
    n = job.sampling_steps or job.settings.get("steps", 1)
    config = job.sampler_config
    return 2 * n - 1 if config is not None and config.second_order else n


def cfg_conds(cfg: Callable, advance: bool = False) -> tuple[Callable, Any, list[float]]:
    """``(inner denoiser, cond of this call, sub-prompt weights)`` of a CFG layer; ``advance`` counts the call on a
    scheduled layer (a call that bypasses it)."""
    if isinstance(cfg, ScheduledCFGDenoiser):
        call = cfg.calls
        if advance:
            cfg.calls += 1
        return cfg.inner, cfg.conds_at(call)[0], list(cfg.cond_weights)
    if isinstance(cfg, CFGDenoiser):
        return cfg.inner, cfg.cond, list(cfg.cond_weights or [1.0])
    raise TechniqueError(f"this technique needs A1111's CFG layer, got {type(cfg).__name__}")


def run_cond_rows(inner: Callable, cond: Any, weights: list[float], x: torch.Tensor,
                  sigma: torch.Tensor) -> torch.Tensor:
    """The inner denoiser on the cond rows only, image-major ([B·n] rows for n sub-prompts)."""
    batch, n = x.shape[0], len(weights)
    rows = _context(cond).shape[0]
    if rows in (1, n) and rows != batch * n:
        cond = _repeat_cond(cond, batch * n // rows)
    extra: dict[str, Any] = {}
    if n > 1:
        extra["image_index"] = torch.arange(batch, device=x.device).repeat_interleave(n)
    if getattr(inner, "accepts_cond_mark", False):
        extra["cond_mark"] = torch.ones(batch * n, device=x.device, dtype=x.dtype)
    return inner(x.repeat_interleave(n, dim=0), sigma.repeat_interleave(n, dim=0), cond=cond, **extra)


class CallCounter(Technique):
    """Base: counts the CFG layer's calls (``self.calls`` is the index of the call in progress)."""

    def wrap_cfg(self, job: Any, cfg: Callable) -> Callable:
        # `layer`: the CFG layer itself under any wrappers of other techniques (for its conds and inner model).
        self.layer, self.calls = getattr(cfg, "cfg_layer", cfg), 0

        def counted(x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
            try:
                return self.call(job, cfg, x, sigma, **kw)
            finally:
                self.calls += 1
        counted.cfg_layer = self.layer
        return counted

    def call(self, job: Any, cfg: Callable, x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
        return cfg(x, sigma, **kw)


class SkipUncond(CallCounter):
    """A1111's NGMS (`s_min_uncond`, "all steps") and Skip Early CFG (`skip_early_cond`)."""

    name = "NGMS / Skip Early CFG"
    order = 40

    def __init__(self, s_min_uncond: float = 0.0, s_min_uncond_all: bool = False, skip_early_cond: float = 0.0):
        self.s_min_uncond, self.s_min_uncond_all = float(s_min_uncond), bool(s_min_uncond_all)
        self.skip_early_cond = float(skip_early_cond)

    @classmethod
    def for_job(cls, job: Any) -> "SkipUncond | None":
        s = job.settings
        if not s.get("s_min_uncond") and not s.get("skip_early_cond"):
            return None
        return cls(s.get("s_min_uncond", 0.0), s.get("s_min_uncond_all", False), s.get("skip_early_cond", 0.0))

    def call(self, job: Any, cfg: Callable, x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        keys = uncond_skip(self.calls, total_calls(job), float(sigma[0]), s_min_uncond=self.s_min_uncond,
                           s_min_uncond_all=self.s_min_uncond_all, skip_early_cond=self.skip_early_cond)
        if keys is None:
            return cfg(x, sigma, **kw)
        job.extra.update({k: ui_number(v) for k, v in keys.items()})
        inner, cond, weights = cfg_conds(self.layer, advance=True)
        out = run_cond_rows(inner, cond, weights, x, sigma)
        self.layer.last_uncond = out[::len(weights)]  # A1111's fake uncond: each image's first cond
        return combine_cond_only(out, weights)


class DynamicThresholdingTechnique(CallCounter):
    """sd-dynamic-thresholding: replaces the CFG combination (not for DDIM/PLMS, as the extension refuses them)."""

    name = "dynamic thresholding"
    order = 60

    def __init__(self, settings: DynamicThresholding):
        self.settings = settings

    @classmethod
    def for_job(cls, job: Any) -> "DynamicThresholdingTechnique | None":
        s = job.settings
        if not s.get("dynamic_thresholding"):
            return None
        return cls(DynamicThresholding(**{f: s[f] for f in DYNTHRES_FIELDS}))

    def setup(self, job: Any) -> None:
        if job.sampler in ("DDIM", "PLMS"):
            raise TechniqueError(f"dynamic thresholding does not run with {job.sampler} (as the extension)")

    def combine_cfg(self, job: Any, parts: CFGParts) -> torch.Tensor:
        job.state["cfg combined"] = self.name
        return self.settings.combine(parts.cond, parts.uncond, parts.cfg_scale, self.calls, total_calls(job),
                                     parts.weights)

    def infotext(self, job: Any, extra: dict[str, Any]) -> None:
        extra.update({k: ui_number(v) for k, v in self.settings.infotext().items()})


class CFGRescale(Technique):
    """CFG_Rescale_webui's φ (`CFG Rescale`); a combination replaced by another technique wins, as in A1111."""

    name = "CFG rescale"
    order = 70

    def __init__(self, phi: float):
        self.phi = float(phi)

    @classmethod
    def for_job(cls, job: Any) -> "CFGRescale | None":
        return cls(job.settings["cfg_rescale"]) if job.settings.get("cfg_rescale") else None

    def after_cfg(self, job: Any, parts: CFGParts, denoised: torch.Tensor) -> torch.Tensor:
        if self.phi == 0 or job.state.get("cfg combined"):
            return denoised
        return cfg_rescale(parts.cond, parts.uncond, parts.cfg_scale, self.phi, parts.weights)

    def infotext(self, job: Any, extra: dict[str, Any]) -> None:
        if self.phi > 0:
            extra[RESCALE_KEY] = ui_number(self.phi)


class PAG(CallCounter):
    """Perturbed-Attention Guidance (incantations): an extra UNet pass with the middle self-attention replaced by
    its value projection, combined on x0. The extra pass runs the B cond rows the combination uses (the extension
    runs the whole 2B-row CFG batch and drops the second half)."""

    name = "PAG"
    order = 50

    def __init__(self, scale: float = 0.0, start: int = 0, end: int = 150, sanf: bool = False):
        self.scale, self.start, self.end, self.sanf = float(scale), int(start), int(end), bool(sanf)

    @classmethod
    def for_job(cls, job: Any) -> "PAG | None":
        s = job.settings
        if not s.get("pag_scale"):
            return None
        return cls(s["pag_scale"], s.get("pag_start", 0), s.get("pag_end", 150), s.get("pag_sanf", False))

    def call(self, job: Any, cfg: Callable, x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
        self.x, self.sigma = x, _sigma_batch(sigma, x)
        self.conds = cfg_conds(self.layer)  # before the scheduled layer counts this call
        return cfg(x, sigma, **kw)

    def combine_cfg(self, job: Any, parts: CFGParts) -> torch.Tensor:
        run = pag_active(job.step, self.start, self.end, self.scale)
        inner, cond, weights = self.conds
        if run and len(weights) > 1:
            raise TechniqueError("PAG does not run with AND sub-prompts (the extension's extra pass does not fit)")
        ptb = None
        if run:
            with PerturbedAttention(job.pipe.unet):
                ptb = run_cond_rows(inner, cond, weights, self.x, self.sigma)
        job.state["cfg combined"] = self.name
        return pag_combine(parts.cond, parts.uncond, ptb, parts.cfg_scale, self.scale, parts.weights, self.sanf,
                           run_pag=run)

    def infotext(self, job: Any, extra: dict[str, Any]) -> None:
        extra.update({"PAG Active": True, "PAG SANF": self.sanf, "PAG Scale": ui_number(self.scale),
                      "PAG Start Step": self.start, "PAG End Step": self.end})
