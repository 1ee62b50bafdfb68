"""A1111's "Noise multiplier for img2img" (`initial_noise_multiplier`): img2img and inpaint multiply the initial
sampling noise (the first draw, which is added to the init latent) by it and write `Noise multiplier`. The noise of
"latent noise" masked content and the ancestral/SDE draws keep their scale, as in A1111 v1.10."""
from __future__ import annotations

from ..pipeline.job import Job
from ..pipeline.technique import Technique
from ..settings import IMAGE, SETTINGS, Setting, register


def _range(v: float) -> str | None:
    return None if 0.0 <= v <= 1.5 else f"must be in [0, 1.5] (A1111's slider), got {v}"


NOISE_MULTIPLIER = Setting("initial_noise_multiplier", float, 1.0,
                           "img2img/inpaint: multiply the initial noise by this (A1111's 'Noise multiplier for img2img')",
                           IMAGE, infotext="Noise multiplier", check=_range, example=0.85, keyword=False)
if NOISE_MULTIPLIER.name not in SETTINGS:
    register(NOISE_MULTIPLIER)


class NoiseMultiplier(Technique):
    name = "noise multiplier"
    order = 40

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    @classmethod
    def for_job(cls, job: Job) -> "NoiseMultiplier | None":
        m = job.settings.get("initial_noise_multiplier", 1.0)
        return cls(m) if job.kind != "txt2img" and m != 1.0 else None

    def noise(self, job: Job, noise):
        # The initial noise only (masked content took its own draw); a new tensor, so no other holder sees a change.
        job.extra["Noise multiplier"] = self.multiplier
        return noise * self.multiplier
