"""A1111's "Noise multiplier for img2img" (`initial_noise_multiplier`): img2img and inpaint multiply the initial
sampling noise (the first draw, which is added to the init latent) by it and write `Noise multiplier`. The noise of
"latent noise" masked content and the ancestral/SDE draws keep their scale, as in A1111 v1.10."""
from __future__ import annotations

from ..pipeline.job import Job
from ..pipeline.technique import Technique
from .noise_rows import NOISE_MULTIPLIER  # noqa: F401 (its row)


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
