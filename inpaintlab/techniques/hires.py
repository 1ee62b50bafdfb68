"""A1111 v1.10's hires fix for txt2img (`enable_hr`), as a technique: after the first pass (`after_sample`) the
latents are upscaled (a latent mode, or decoded, upscaled as pixels and encoded again), cropped to the target, noised
with a fresh ImageRNG of the new shape and the same seeds, and sampled again as img2img over the tail of a
`int(steps / min(denoising_strength, 0.999))`-step schedule (`inpaintlab.hires` holds the in-between steps).

Settings are A1111's API fields: enable_hr, hr_scale, hr_resize_x/y, hr_upscaler, hr_second_pass_steps, hr_prompt,
hr_negative_prompt, hr_sampler, hr_scheduler, Forge's hr_cfg (0 = the first pass's CFG scale) and
`denoising_strength`; `upscaler_dir` resolves model upscaler names. The infotext keeps the first pass's `Size`.
Not yet: 9-channel (inpainting) models, a hires checkpoint, the refiner.
"""
from __future__ import annotations

from typing import Any

import torch

from .. import hires as hf
from ..pipeline.conditioning import conditioning
from ..pipeline.job import Job
from ..pipeline.sample import sample
from ..pipeline.technique import Technique, TechniqueError
from ..samplers import SAMPLER_CONFIGS, resolve_sampler, sampler_options
from .rows import HIRES_ROWS

ROWS = HIRES_ROWS  # its settings rows (techniques/rows.py)


class HiresFix(Technique):
    name = "hires fix"
    order = 60

    @classmethod
    def for_job(cls, job: Job) -> "HiresFix | None":
        return cls() if job.kind == "txt2img" and job.settings.get("enable_hr") else None

    def setup(self, job: Job) -> None:
        s = job.settings
        if job.pipe.config.is_inpainting:
            raise TechniqueError("hires fix with a 9-channel (inpainting) model is not supported yet")
        name = s["hr_upscaler"]
        if name in hf.LATENT_MODES or name in hf.BUILTIN:
            self.upscaler: Any = name
        else:
            from ..upscalers.command import resolve_upscaler
            self.upscaler = resolve_upscaler(name, s["upscaler_dir"] or None, str(job.device))
        self.target = hf.target_size(s["width"], s["height"], s["hr_scale"], s["hr_resize_x"], s["hr_resize_y"])
        keys = hf.hires_infotext({**s, "hr_sampler": s["hr_sampler"] or None,
                                  "hr_cfg": s["hr_cfg"] or None}, sampler=job.sampler)
        keys.pop("Denoising strength")  # a fixed slot (finish.params)
        job.extra.update(keys)

    def after_sample(self, job: Job, samples: torch.Tensor) -> torch.Tensor:
        s, pipe, target = job.settings, job.pipe, self.target
        if self.upscaler in hf.LATENT_MODES:
            latent = hf.upscale_latent(samples, self.upscaler, target)
        else:
            with torch.inference_mode():
                decoded = torch.cat([pipe._decode_one(z).float() for z in samples])
            pixels = hf.upscale_decoded(decoded, target, self.upscaler)
            generator = torch.Generator("cpu").manual_seed(job.seeds[-1])  # as the pipeline's posterior draws
            latent = hf.crop_latent(pipe.encode_image(pipe.to_vae_input(pixels), generator), target)
        steps, total = hf.second_pass_steps(s["steps"], s["hr_second_pass_steps"], s["denoising_strength"])
        if total == 0:
            return latent  # denoising strength 0: A1111's schedule [0] returns the upscaled latent
        first = dict(s), job.sampler, job.schedule_label, job.sampler_config, job.sampler_options, job.sampler_params
        first_size, kind = (job.width, job.height), job.kind
        try:
            s["steps"] = total
            s["prompt"] = s["hr_prompt"] or s["prompt"]
            s["negative_prompt"] = s["hr_negative_prompt"] or s["negative_prompt"]
            if s["hr_cfg"]:
                s["cfg_scale"] = s["hr_cfg"]
            sampler, label = resolve_sampler(s["hr_sampler"] or s["sampler"],
                                             s["hr_scheduler"] or s["scheduler"])
            if label != job.schedule_label:
                job.extra["Hires schedule type"] = label
            job.sampler, job.schedule_label, job.sampler_config = sampler, label, SAMPLER_CONFIGS[sampler]
            job.sampler_options, _ = sampler_options(sampler, s["eta"], s["s_churn"], s["s_tmin"], s["s_tmax"],
                                                     s["s_noise"])
            job.width, job.height = target.to_x, target.to_y  # SDXL's size conditioning uses the target
            conditioning(job)
            job.rng = job.noise_cfg.rng(tuple(latent.shape[1:]), job.device)
            job.noise = job.rng.next()
            job.init_latent, job.shape, job.kind, job.t_enc = latent, tuple(latent.shape), "img2img", steps - 1
            job.extra_noise = s.get("img2img_extra_noise", 0.0)
            if job.extra_noise > 0:
                job.extra["Extra noise"] = job.extra_noise
            sample(job)
            return job.samples
        finally:
            s.clear()
            s.update(first[0])
            job.sampler, job.schedule_label, job.sampler_config, job.sampler_options, job.sampler_params = first[1:]
            (job.width, job.height), job.kind, job.t_enc, job.extra_noise = first_size, kind, None, 0.0
