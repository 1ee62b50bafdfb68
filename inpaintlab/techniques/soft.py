"""Soft inpainting (A1111 v1.10's built-in extension): unrounded masks, a per-step soft blend in place of the binary
one, and a composite from how far each latent pixel moved. The maths is in `inpaintlab.masking.soft`, the per-step
blend in `inpaintlab.samplers.SoftInpaintBlend`."""
from __future__ import annotations

from .. import masking
from ..masking.soft import SoftInpaintingSettings, overlay_source, soft_overlays
from ..pipeline.job import Job
from ..pipeline.technique import Technique
from ..prepare import flatten
from ..result import Result
from ..samplers import SoftInpaintBlend
from .rows import SOFT_SETTING_NAMES

SETTING_NAMES = SOFT_SETTING_NAMES  # the sliders' rows (techniques/rows.py)


class SoftInpainting(Technique):
    name = "soft inpainting"
    order = 50
    slot = "blend"

    def __init__(self, settings: SoftInpaintingSettings) -> None:
        self.settings = settings

    @classmethod
    def for_job(cls, job: Job) -> "SoftInpainting | None":
        if not job.settings.get("soft_inpainting"):
            return None
        return cls(SoftInpaintingSettings(*(job.settings[name] for name in SETTING_NAMES)))

    def setup(self, job: Job) -> None:
        job.mask_round = False  # A1111 switches mask rounding off in its `process` hook, before anything else runs
        if job.mask is not None:
            job.extra.update(self.settings.infotext())

    def wrap_denoiser(self, job: Job, model):
        if job.latent_mask is None:
            return model
        # A1111's timestep samplers blend the model input, with their timestep where the others pass sigma
        before = job.sampler_config.kind == "timesteps"
        return SoftInpaintBlend(model, job.init_latent, job.latent_mask, self.settings, mask_before_denoising=before)

    def composite(self, job: Job, result: Result) -> Result:
        if job.latent_mask is None:
            return result
        # Rebuilt per image from the unmodified original and the raw samples (A1111's post-sample hook).
        prep = job.prep
        source = overlay_source(flatten(job.image), job.width, job.height, job.settings["resize_mode"],
                                prep.paste_to is not None)
        overlays, masks = soft_overlays(source, job.latent_mask, job.init_latent, job.samples, self.settings,
                                        job.width, job.height, prep.paste_to)
        result.images = [masking.apply_overlay(img, overlay, prep.paste_to)
                         for img, overlay in zip(result.images, overlays)]
        result.overlay_mask, result.overlay_masks = masks[0], masks
        return result
