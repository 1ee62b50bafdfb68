"""The binary inpaint blend, A1111's default: keep the original latent outside the mask at every step, once more
after sampling, and paste the original pixels back over the decoded image.

k-diffusion samplers blend the denoised estimate (`InpaintBlend`); A1111's timestep samplers (DDIM, PLMS, UniPC)
blend the model input (`InpaintBlendInput`). Soft inpainting, Differential Diffusion or an outside technique with
`slot = "blend"` take its place.
"""
from __future__ import annotations

from .. import masking
from ..pipeline.composite import overlay_composite
from ..pipeline.job import Job
from ..pipeline.technique import Technique
from ..result import Result
from ..samplers import InpaintBlend, InpaintBlendInput


class BinaryBlend(Technique):
    name = "inpaint blend"
    order = 50
    slot = "blend"
    default = True  # used when no other technique takes the blend slot

    @classmethod
    def for_job(cls, job: Job) -> "BinaryBlend":
        return cls()

    def wrap_denoiser(self, job: Job, model):
        if job.latent_mask is None:
            return model
        kind = InpaintBlendInput if job.sampler_config.kind == "timesteps" else InpaintBlend
        return kind(model, job.init_latent, job.latent_mask)

    def after_sample(self, job: Job, samples):
        if job.latent_mask is None:
            return samples
        return masking.blend_latents(samples, job.init_latent, job.latent_mask)

    def composite(self, job: Job, result: Result) -> Result:
        return overlay_composite(job, result)
