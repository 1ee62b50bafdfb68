"""Stages 5 and 6, noise and sampling: the denoiser stack around the UNet and the sampler run, as A1111 v1.10 does.

The stack, innermost first: UNet → `wrap_unet` hooks → model denoiser (eps / v / timestep / LCM) → CFG (with the
`combine_cfg` / `after_cfg` hooks) → `wrap_cfg` hooks → `wrap_denoiser` hooks (the inpaint blends) → the sampler.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from ..samplers import (CFGDenoiser, EpsDenoiser, LCMDenoiser, TimestepEpsModel, VDenoiser, a1111_combine,
                        brownian_noise_sampler, build_sigmas, get_timesteps, img2img_start, img2img_steps)
from ..samplers import schedule_for
from ..samplers.cfg import CFGParts, ScheduledCFGDenoiser
from ..samplers.overrides import schedule_overrides
from .conditioning import ScheduledConditioning
from .job import Job


_JOB = object()


def model_denoiser(job: Job, unet: Callable, pipe: Any = None, image_cond: Any = _JOB) -> Callable:
    """The UNet as the sampler's model: k-diffusion's eps or v denoiser, A1111's timestep model, or LCM's.
    `pipe` / `image_cond`: another model's (a refiner's) instead of the job's."""
    config, pipe = job.sampler_config, pipe or job.pipe
    image_cond = job.image_cond if image_cond is _JOB else image_cond
    # The UNet runs in its own dtype; x stays float32 (x + eps·c_out promotes), as in A1111 under autocast.
    if pipe.config.prediction == "v" and (config.kind == "timesteps" or config.name == "LCM"):
        raise ValueError(f"{config.name} runs on eps-prediction models only; this model predicts v")
    if config.kind == "timesteps":
        return TimestepEpsModel(unet, pipe.schedule, image_cond=image_cond)
    if config.name == "LCM":
        return LCMDenoiser(unet, pipe.schedule, image_cond=image_cond)
    denoiser = VDenoiser if pipe.config.prediction == "v" else EpsDenoiser
    return denoiser(unet, pipe.schedule, image_cond=image_cond)


def cfg_denoiser(job: Job, model: Callable) -> Callable:
    """CFG over the job's conditioning (scheduled when prompts change during sampling)."""
    hooks = job.hooks
    combine = None
    if hooks.having("combine_cfg") or hooks.having("after_cfg"):
        def combine(parts: CFGParts) -> torch.Tensor:
            denoised = hooks.first("combine_cfg", job, parts)
            if denoised is None:
                denoised = a1111_combine(parts)
            return hooks.chain("after_cfg", job, denoised, parts)
    cfg_scale = job.settings["cfg_scale"] * job.sampler_config.extra.get("cfg_scale_multiplier", 1.0)  # DDIM CFG++
    cond = job.cond
    if isinstance(cond, ScheduledConditioning):
        # Counts its own calls from 0, so a truncated img2img run starts at the schedule's first entry (A1111).
        return ScheduledCFGDenoiser(model, cond.cond_schedules, cond.uncond_schedule, cfg_scale, cond.weights,
                                    combine=combine)
    return CFGDenoiser(model, cond, job.uncond, cfg_scale, combine=combine)


def _callback(job: Job) -> Callable[[dict], Any] | None:
    having, user = job.hooks.having("on_step"), job.callback
    if not having:
        return user

    def callback(d: dict) -> None:
        for t in having:
            t.on_step(job, d)
        job.step += 1
        if user is not None:
            user(d)
    return callback


def sample(job: Job) -> None:
    """Run the sampler as A1111 v1.10 does; sets job.samples, job.start_latent and job.sigmas (the schedule run).

    txt2img: k-diffusion samplers start from noise · sigmas[0], timestep samplers from the raw noise. img2img and
    inpaint: A1111's truncation of the schedule / timesteps, start latent in VE resp. VP form.
    """
    config, pipe, s, hooks = job.sampler_config, job.pipe, job.settings, job.hooks
    steps, options = s["steps"], job.sampler_options
    kwargs: dict[str, Any] = {"disable": not job.progress}
    if "eta" in options:
        kwargs["eta"] = options["eta"]
    kwargs.update({k: options[k] for k in config.churn if k in options})
    if "s_tmax" in kwargs and not kwargs["s_tmax"]:
        kwargs["s_tmax"] = float("inf")  # A1111: 0 means infinity
    takes_noise = "noise_sampler" in inspect.signature(config.function).parameters
    img2img = job.kind != "txt2img"
    rng, noise, init_latent = job.rng, job.noise, job.init_latent
    noise_sampler = rng.noise_sampler
    if hooks.having("sampler_noise"):
        def noise_sampler(sigma, sigma_next):
            return hooks.chain("sampler_noise", job, rng.next())
    with torch.inference_mode():
        if config.kind == "timesteps":
            timesteps = get_timesteps(steps)
            ac = pipe.schedule.alphas_cumprod
            if img2img:
                t_enc = img2img_steps(steps, s["denoising_strength"]) if job.t_enc is None else job.t_enc
                x = img2img_start(init_latent, noise, timesteps, t_enc, ac, job.extra_noise)
                timesteps = timesteps[:t_enc]
            else:
                x = noise
            if config.name == "UniPC":
                kwargs["is_img2img"] = img2img
            if takes_noise:
                kwargs["noise_sampler"] = noise_sampler
            # callbacks per run: one per call for DDIM/PLMS (len - 1 steps), one per step for UniPC
            run = (len(timesteps) if config.name == "UniPC" else len(timesteps) - 1, timesteps)
            function, args = config.function, (timesteps.to(x.device), ac)
        else:
            table = schedule_for(pipe.schedule, config.name)
            overrides, keys = schedule_overrides(
                job.schedule_label, table.sigma_min, table.sigma_max, s.get("sigma_min", 0.0),
                s.get("sigma_max", 0.0), s.get("rho", 0.0), s.get("beta_dist_alpha", 0.6), s.get("beta_dist_beta", 0.6))
            job.extra.update(keys)  # written as the schedule is built, before the sampler's own keys (A1111)
            full = build_sigmas(pipe.schedule, config.name, job.schedule_label, steps, **overrides)
            if img2img:
                t_enc = img2img_steps(steps, s["denoising_strength"]) if job.t_enc is None else job.t_enc
                sigmas = full[steps - t_enc - 1:].clone()
                x = init_latent + noise * sigmas[0]
                if job.extra_noise > 0:  # A1111: the same noise tensor again, times the option
                    x = x + noise * job.extra_noise
            else:
                sigmas = full
                x = noise * sigmas[0]
            if config.brownian:
                # one tree per image, seeded with its seed, spanning the untruncated schedule (A1111)
                kwargs["noise_sampler"] = brownian_noise_sampler(x, full, job.seeds, source=rng.source)
            elif takes_noise:
                # the next draws of each image's seeded generator, as A1111's ImageRNG does
                kwargs["noise_sampler"] = noise_sampler
            if config.kind == "range":
                if img2img:
                    bounds, n = (sigmas[-2], sigmas[0]), len(sigmas) - 1
                else:
                    bounds, n = (pipe.schedule.sigma_min, pipe.schedule.sigma_max), steps
                if config.name == "DPM fast":
                    kwargs["n"] = n
                function, args = config.function, bounds
            else:
                function, args = config.function, (sigmas.to(x.device),)
            run = (len(sigmas) - 1, sigmas)
        job.sampling_steps, job.sigmas, job.start_latent, job.step = run[0], run[1], x, 0
        unet = hooks.chain("wrap_unet", job, pipe.unet)
        model = hooks.chain("wrap_cfg", job, cfg_denoiser(job, model_denoiser(job, unet)))
        model = hooks.chain("wrap_denoiser", job, model)
        # A blend may reset pixels of the sampler's state in place (Differential Diffusion): it starts from a copy.
        job.samples = function(model, x.clone(), *args, callback=_callback(job), **kwargs)
