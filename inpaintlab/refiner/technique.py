"""A1111 v1.10's refiner as a technique: at every denoiser call, before the UNet runs, A1111's `apply_refiner` decides
whether to hand over to the refiner checkpoint; from that call on the refiner's UNet runs with conditioning recomputed
by the refiner, while the latent, the sigma schedule, the step counter and the sampler's own state carry on.

The switch rule (A1111 `sd_samplers_common.apply_refiner`), with `sigma` the call's noise level (the timestep for
DDIM, PLMS and UniPC):

    by timestep (default):  t = argmin_i |table_i - max(sigma)|   (the current model's 1000 sigmas; LCM's 50-level
                                                                   table for LCM; DDIM/PLMS/UniPC: t = int(max(t)))
                            ratio = (999 - t) / 1000
    by sampling steps:      ratio = calls so far / total_steps(steps run)   (x2 for second-order samplers)
    switch at the first call with ratio >= refiner_switch_at (1.0 never switches by timestep).

txt2img with hires fix: the refiner runs in the pass(es) `hires_fix_refiner_pass` names ("second pass" by default);
the hires pass starts on the main model again. Keys are written when the switch happens: `Refiner switch by sampling
steps` (step rule, at the first call), `Hires refiner` (not "second pass"), `Refiner: name [hash]`, `Refiner switch
at`. After a switch the refiner's VAE decodes (A1111 decodes with the loaded model).

Image conditioning: a 4-channel refiner ignores the 9-channel base's (A1111); a 9-channel refiner after a 9-channel base
keeps the base's (A1111); a 9-channel refiner after a 4-channel base gets its own, built by its VAE from the job's
image and mask (A1111 crashes: it keeps the base's empty conditioning). UNet-level techniques (ControlNet, FreeU,
token merging, SEG) act on the main model only.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..guidance.unet_techniques import HIRES_PASS
from ..pipeline.conditioning import conditioning
from ..pipeline.job import Job
from ..pipeline.latents import posterior_generator
from ..pipeline.sample import cfg_denoiser, model_denoiser
from ..pipeline.technique import Technique
from ..samplers import schedule_for, total_steps
from . import rows  # noqa: F401  (registers the settings rows)
from .rows import find_refiner, refiner_name

# The CFG layer's per-run state: kept when the refiner's conds and model move in.
_RUN_STATE = ("calls", "last_uncond")


def load_refiner(job: Job, value: Any) -> Any:
    """The refiner `Pipeline` a setting names (a loaded one as is); files are loaded once per main pipeline, the way
    it was loaded (`load_like`)."""
    if hasattr(value, "unet") and hasattr(value, "config"):
        return value
    from ..pipeline.load import load_like

    name = refiner_name(str(value)) if isinstance(value, str) else value
    path = find_refiner(name).resolve()
    cache = job.pipe.__dict__.setdefault("_refiners", {})
    key = (str(path), path.stat().st_mtime_ns)
    if key not in cache:
        cache[key] = load_like(job.pipe, path)
    return cache[key]


class Refiner(Technique):
    name = "refiner"
    order = 5  # the innermost CFG wrapper: the switch changes the CFG layer every other technique wraps

    @classmethod
    def for_job(cls, job: Job) -> "Refiner | None":
        value = job.settings.get("refiner_checkpoint")
        if value is None or isinstance(value, str) and refiner_name(value) is None:
            return None
        return cls()

    def setup(self, job: Job) -> None:
        s = job.settings
        self.model = load_refiner(job, s["refiner_checkpoint"])
        config = self.model.config
        self.title = f"{config.model_name} [{config.model_hash}]" if config.model_hash else config.model_name
        self.switch_at = s.get("refiner_switch_at", 0.8)
        self.by_steps = bool(s.get("refiner_switch_by_sample_steps", False))
        self.hires_pass = s.get("hires_fix_refiner_pass", "second pass") if s.get("enable_hr") else None

    # --- the switch ------------------------------------------------------------------------------------------------

    def ratio(self, job: Job, sigma: torch.Tensor, calls: int) -> torch.Tensor | float:
        """A1111's completed ratio at this call (see the module docstring)."""
        if self.by_steps:
            job.extra["Refiner switch by sampling steps"] = True
            return calls / total_steps(job.sampler, self.steps_run(job))
        top = torch.max(torch.as_tensor(sigma))
        if job.sampler_config.kind == "timesteps":  # sigma is the timestep
            t = top.to(dtype=torch.int64)
        else:
            table = schedule_for((job.loaded or job.pipe).schedule, job.sampler).sigmas.to(top.device)
            t = torch.argmin(torch.abs(table - top))
        return (999 - t) / 1000

    @staticmethod
    def steps_run(job: Job) -> int:
        """The steps A1111's `launch_sampling` gets: `steps` (txt2img), `t_enc + 1` (img2img and the hires pass)."""
        from ..samplers import img2img_steps

        s = job.settings
        if job.kind == "txt2img":
            return s["steps"]
        t_enc = img2img_steps(s["steps"], s["denoising_strength"]) if job.t_enc is None else job.t_enc
        return t_enc + 1

    def allowed(self, job: Job) -> bool:
        """The hires fix's pass rule (`hires_fix_refiner_pass`); always true without hires fix."""
        hr_pass = bool(job.state.get(HIRES_PASS))  # set by the hires fix while its second pass samples
        if self.hires_pass == "first pass":
            return not hr_pass
        if self.hires_pass == "second pass":
            return hr_pass
        return True

    def switch(self, job: Job, layer: Any) -> None:
        """Hand over: the refiner's conditioning, model denoiser and image conditioning into the CFG layer."""
        if self.hires_pass is not None and self.hires_pass != "second pass":
            job.extra["Hires refiner"] = self.hires_pass
        job.extra["Refiner"] = self.title
        job.extra["Refiner switch at"] = self.switch_at
        refiner = self.model
        conditioning(job, refiner)
        fresh = cfg_denoiser(job, model_denoiser(job, refiner.unet, refiner, self.image_cond(job)))
        if type(fresh) is not type(layer):
            raise TypeError(f"the refiner's CFG layer {type(fresh).__name__} cannot replace {type(layer).__name__}")
        for name, value in vars(fresh).items():
            if name not in _RUN_STATE:
                setattr(layer, name, value)
        job.loaded = refiner

    def image_cond(self, job: Job) -> torch.Tensor | None:
        refiner = self.model
        if not refiner.config.is_inpainting:
            return None  # A1111: a 4-channel model ignores c_concat
        if job.image_cond is not None:
            return job.image_cond  # A1111 keeps the base's conditioning
        weight = job.settings.get("inpainting_mask_weight", 1.0)
        return refiner._image_conditioning(job.source, job.image_mask, tuple(job.shape),
                                           posterior_generator(job.seeds), weight, job.mask_round)

    def wrap_cfg(self, job: Job, cfg: Callable) -> Callable:
        # A new sampling run (the first pass, or the hires pass, which starts on the main model again).
        layer, state = getattr(cfg, "cfg_layer", cfg), {"calls": 0, "switched": False}

        def refined(x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
            if not state["switched"]:
                ratio = self.ratio(job, sigma, state["calls"])
                if not bool(ratio < self.switch_at) and self.allowed(job):
                    self.switch(job, layer)
                    state["switched"] = True
            state["calls"] += 1
            return cfg(x, sigma, **kw)

        refined.cfg_layer = layer
        return refined

