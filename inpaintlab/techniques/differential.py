"""Differential Diffusion (Levin & Fried 2023) with the blurred mask as change map: per step, pixels whose change is
below the step's threshold restart from the original noised to the current sigma (`samplers.DifferentialBlend`).
Not an A1111 feature; its infotext key `Differential diffusion: True` is inpaintlab's own. Its row and the check
that it is not combined with soft inpainting are in `techniques/rows.py`."""
from __future__ import annotations

from ..pipeline.composite import overlay_composite
from ..pipeline.job import Job
from ..pipeline.technique import Technique, TechniqueError
from ..result import Result
from ..samplers import DifferentialBlend

class DifferentialDiffusion(Technique):
    name = "Differential Diffusion"
    order = 50
    slot = "blend"

    @classmethod
    def for_job(cls, job: Job) -> "DifferentialDiffusion | None":
        return cls() if job.settings.get("differential_diffusion") else None

    def setup(self, job: Job) -> None:
        if job.sampler_config.kind == "timesteps":
            raise TechniqueError(f"differential_diffusion runs with the k-diffusion samplers, not {job.sampler}")
        job.mask_round = False

    def prepare(self, job: Job) -> None:
        if job.mask is not None:
            job.extra["Differential diffusion"] = True

    def wrap_denoiser(self, job: Job, model):
        if job.latent_mask is None:
            return model
        return DifferentialBlend(model, job.init_latent, job.latent_mask, job.sigmas, job.noise)

    def composite(self, job: Job, result: Result) -> Result:
        return overlay_composite(job, result)  # the binary overlay (the blend replaces only the latent steps)
