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
from ..settings import INPAINT, Setting, register
from ..settings import between as _between

# Soft inpainting (A1111's built-in extension): its six sliders, labels and ranges as A1111 writes and limits them.
_SOFT = "soft inpainting: "
for _row in (
    Setting("soft_inpainting", bool, False, "A1111's soft inpainting: unrounded masks, a per-step soft blend and a "
            "composite from how far each latent pixel moved (use a large mask blur)", INPAINT,
            infotext="Soft inpainting enabled", example=True),
    Setting("schedule_bias", float, 1.0, _SOFT + "schedule bias, the power of sigma in the mask exponent (0-8)",
            INPAINT, infotext="Soft inpainting schedule bias", check=_between(0, 8), example=1.5),
    Setting("preservation_strength", float, 0.5, _SOFT + "preservation strength, the scale of the mask exponent (0-8)",
            INPAINT, infotext="Soft inpainting preservation strength", check=_between(0, 8), example=0.75),
    Setting("transition_contrast_boost", float, 4.0, _SOFT + "transition contrast boost, the power of the magnitude "
            "mean (1-32)", INPAINT, infotext="Soft inpainting transition contrast boost", check=_between(1, 32),
            example=8.0),
    Setting("mask_influence", float, 0.0, _SOFT + "mask influence on the difference threshold (0-1)", INPAINT,
            infotext="Soft inpainting mask influence", check=_between(0, 1), example=0.25),
    Setting("difference_threshold", float, 0.5, _SOFT + "latent change at which the original is half opaque (0-8)",
            INPAINT, infotext="Soft inpainting difference threshold", check=_between(0, 8), example=1.0),
    Setting("difference_contrast", float, 2.0, _SOFT + "sharpness of the composite's transition (0-8)", INPAINT,
            infotext="Soft inpainting difference contrast", check=_between(0, 8), example=3.0),
):
    register(_row)

SETTING_NAMES = ("schedule_bias", "preservation_strength", "transition_contrast_boost", "mask_influence",
                 "difference_threshold", "difference_contrast")


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
