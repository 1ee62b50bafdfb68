"""A1111's "Extra noise multiplier for img2img and hires fix" (`img2img_extra_noise`): after the initial noise is
added to the init latent, the same noise times the multiplier is added once more (k-diffusion samplers:
`x + noise·σ0 + noise·v`; DDIM/PLMS/UniPC: `√ᾱ·x + √(1−ᾱ)·noise + noise·v·√ᾱ`), and `Extra noise: v` is written.
img2img and inpaint, and the hires fix's second pass; a plain txt2img ignores it, as A1111 does."""
from __future__ import annotations

from ..pipeline.job import Job
from ..pipeline.technique import Technique
from .noise_rows import EXTRA_NOISE  # noqa: F401 (its row)


class ExtraNoise(Technique):
    name = "extra noise"
    order = 40

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    @classmethod
    def for_job(cls, job: Job) -> "ExtraNoise | None":
        v = job.settings.get("img2img_extra_noise", 0.0)
        applies = job.kind != "txt2img" or job.settings.get("enable_hr")
        return cls(v) if v > 0 and applies else None

    def noise(self, job: Job, noise):
        if job.kind != "txt2img":  # the hires fix's pass sets it itself (techniques/hires.py)
            job.extra_noise = self.multiplier  # the sample stage adds `noise · v` to the start latent
            job.extra["Extra noise"] = self.multiplier
        return noise
