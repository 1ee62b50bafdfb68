"""An inpaint blend written outside inpaintlab: a feathered blend in place of A1111's binary one.

A1111 rounds the latent mask and, at every step, keeps the original latent wherever the mask is 0. This technique
keeps the mask unrounded (the blurred edge survives into latent space) and raises it to a power: `power` > 1 keeps
more of the original along the edge, < 1 repaints more. It takes the pipeline's "blend" slot, so the binary blend
steps aside, and it declares its own setting row, so `feather_power` is a keyword of `inpaint` and a sweep axis.

    from feathered_blend import FeatheredBlend
    result = pipe.inpaint(image, mask, "a cat", mask_blur=8, techniques=[FeatheredBlend()], feather_power=2.0)
    sweep(spec, "out", techniques=[FeatheredBlend()])     # with e.g. "x": {"feather_power": [0.5, 1, 2]}
"""
from __future__ import annotations

from inpaintlab.pipeline import Technique
from inpaintlab.pipeline.composite import overlay_composite
from inpaintlab.settings import INPAINT, SETTINGS, Setting, register, register_infotext_key

# keyword=False: a technique's row, taken by `inpaint(**settings)`; it reads back from the infotext like any other.
FEATHER_POWER = Setting("feather_power", float, 1.0, "feathered blend: power of the unrounded latent mask", INPAINT,
                        infotext="Feather power", check=lambda v: None if v > 0 else "must be > 0", keyword=False)


class FeatheredBlend(Technique):
    name = "feathered blend"
    slot = "blend"  # replaces the binary inpaint blend

    def __init__(self):
        if "feather_power" not in SETTINGS:  # registered once, when the technique is first used
            register(FEATHER_POWER)
            register_infotext_key("Feathered blend")

    def setup(self, job):
        job.mask_round = False  # before the masks are made: keep the blurred edge in the latent mask

    def _weight(self, job):
        return job.latent_mask ** job.settings["feather_power"]

    def wrap_denoiser(self, job, model):
        if job.latent_mask is None:
            return model
        weight = self._weight(job)

        def blended(x, sigma, **kwargs):
            # after CFG, like A1111's binary blend: the original latent where the weight is 0
            return model(x, sigma, **kwargs) * weight + job.init_latent * (1 - weight)
        return blended

    def after_sample(self, job, samples):
        if job.latent_mask is None:
            return samples
        weight = self._weight(job)
        return samples * weight + job.init_latent * (1 - weight)

    def composite(self, job, result):
        return overlay_composite(job, result)  # the original pixels back outside the blurred mask, as A1111 does

    def infotext(self, job, extra):
        if job.latent_mask is not None:
            extra["Feathered blend"] = True
            extra["Feather power"] = job.settings["feather_power"]
