"""A1111 v1.10's hires fix for txt2img (`enable_hr`), as a technique: after the first pass (`after_sample`) the
latents are upscaled (a latent mode, or decoded, upscaled as pixels and encoded again), cropped to the target, noised
with a fresh ImageRNG of the new shape and the same seeds, and sampled again as img2img over the tail of a
`int(steps / min(denoising_strength, 0.999))`-step schedule (`inpaintlab.hires` holds the in-between steps).

Settings are A1111's API fields: enable_hr, hr_scale, hr_resize_x/y, hr_upscaler, hr_second_pass_steps, hr_prompt,
hr_negative_prompt, hr_sampler, hr_scheduler, Forge's hr_cfg (0 = the first pass's CFG scale) and
`denoising_strength`; `upscaler_dir` resolves model upscaler names. The infotext keeps the first pass's `Size`.
9-channel (inpainting) models get A1111's second-pass image conditioning (`hires_image_conditioning`). The refiner
(`inpaintlab.refiner`) runs in the pass(es) `hires_fix_refiner_pass` names. Not yet: a hires checkpoint.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import hires as hf
from .. import masking
from ..guidance.unet_techniques import HIRES_PASS
from ..pipeline.conditioning import conditioning
from ..pipeline.job import Job
from ..pipeline.sample import sample
from ..pipeline.technique import Technique
from ..samplers import SAMPLER_CONFIGS, resolve_sampler, sampler_options
from ..settings import SETTINGS, Setting, register, register_infotext_key

TXT2IMG = ("txt2img",)


def _hr_upscaler(v: str) -> str | None:
    return None if v else "must name an upscaler (a latent mode, None, Lanczos, Nearest, a file or an A1111 name)"


def _resize_part(index: int):
    def parse(text: str) -> int:
        return int(text.lower().split("x")[index])
    return parse


ROWS = (
    Setting("enable_hr", bool, False, "txt2img: A1111's hires fix (a second, img2img pass at a larger size)", TXT2IMG,
            # A1111's paste ticks "Hires fix" for "Denoising strength" with a hires key beside it; it always writes
            # "Hires upscaler" with the others, so that key alone tells (an inpaint's strength must not).
            infotext="Hires upscaler", parse=lambda text: True, keyword=False),
    Setting("hr_scale", float, 2.0, "hires fix: upscale by (when no hr_resize_x/y)", TXT2IMG, infotext="Hires upscale",
            check=lambda v: None if v > 0 else "must be positive", keyword=False, example=1.5),
    Setting("hr_resize_x", int, 0, "hires fix: resize width to (0: from the height)", TXT2IMG, infotext="Hires resize",
            parse=_resize_part(0), keyword=False, check=lambda v: None if v >= 0 else "must be >= 0"),
    Setting("hr_resize_y", int, 0, "hires fix: resize height to (0: from the width)", TXT2IMG, infotext="Hires resize",
            parse=_resize_part(1), keyword=False, check=lambda v: None if v >= 0 else "must be >= 0"),
    Setting("hr_upscaler", str, "Latent", "hires fix: upscaler (Latent modes, None, Lanczos, Nearest, a model file or "
            "an A1111 name in upscaler_dir)", TXT2IMG, infotext="Hires upscaler", check=_hr_upscaler, keyword=False,
            example="Latent (nearest-exact)"),
    Setting("hr_second_pass_steps", int, 0, "hires fix: steps of the second pass (0: the first pass's)", TXT2IMG,
            infotext="Hires steps", check=lambda v: None if v >= 0 else "must be >= 0", keyword=False),
    Setting("hr_prompt", str, "", "hires fix: prompt of the second pass (empty: the prompt)", TXT2IMG,
            infotext="Hires prompt", keyword=False),
    Setting("hr_negative_prompt", str, "", "hires fix: negative prompt of the second pass (empty: the negative prompt)",
            TXT2IMG, infotext="Hires negative prompt", keyword=False),
    Setting("hr_sampler", str, "", "hires fix: sampler of the second pass (empty: the first pass's)", TXT2IMG,
            infotext="Hires sampler", keyword=False),
    Setting("hr_scheduler", str, "", "hires fix: schedule type of the second pass (empty: the first pass's)", TXT2IMG,
            infotext="Hires schedule type", keyword=False),
    Setting("hr_cfg", float, 0.0, "hires fix: CFG scale of the second pass, Forge's 'Hires CFG Scale' (0: the first "
            "pass's; A1111 has none)", TXT2IMG, infotext="Hires CFG Scale", keyword=False),
    Setting("upscaler_dir", str, "", "folder of upscaler files for hr_upscaler names (A1111's models/ works)",
            TXT2IMG, keyword=False),
)
for _row in ROWS:
    if _row.name not in SETTINGS:
        register(_row)
register_infotext_key("Hires schedule type")


class HiresFix(Technique):
    name = "hires fix"
    order = 60

    @classmethod
    def for_job(cls, job: Job) -> "HiresFix | None":
        return cls() if job.kind == "txt2img" and job.settings.get("enable_hr") else None

    def setup(self, job: Job) -> None:
        s = job.settings
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
        # A1111 encodes with torch's global generator, which the first pass left where job.posterior_rng is now
        # (reseeded by the first noise draw, then the first pass's own 9-channel conditioning).
        generator = job.posterior_rng
        if self.upscaler in hf.LATENT_MODES:
            interp, antialias = hf.LATENT_MODES[self.upscaler]
            full = F.interpolate(samples, size=(target.to_y // 8, target.to_x // 8), mode=interp, antialias=antialias)
            image_cond = hires_image_conditioning(pipe, full, None, generator, s["inpainting_mask_weight"])
            latent = hf.crop_latent(full, target)
        else:
            with torch.inference_mode():  # the first pass's model decodes (a refiner's VAE after its switch)
                decoded = torch.cat([(job.loaded or pipe)._decode_one(z).float() for z in samples])
            pixels = hf.upscale_decoded(decoded, target, self.upscaler)
            full = pipe.encode_image(pipe.to_vae_input(pixels), generator)
            image_cond = hires_image_conditioning(pipe, full, pixels, generator, s["inpainting_mask_weight"])
            latent = hf.crop_latent(full, target)
        if image_cond is not None:
            image_cond = hf.crop_latent(image_cond, target)
        job.loaded = None  # A1111 reloads the main model for the second pass (after the first pass's decode)
        steps, total = hf.second_pass_steps(s["steps"], s["hr_second_pass_steps"], s["denoising_strength"])
        if total == 0:
            return latent  # denoising strength 0: A1111's schedule [0] returns the upscaled latent
        first = (dict(s), job.image_cond, job.sampler, job.schedule_label, job.sampler_config, job.sampler_options,
                 job.sampler_params)
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
            job.image_cond = image_cond
            job.extra_noise = s.get("img2img_extra_noise", 0.0)
            if job.extra_noise > 0:
                job.extra["Extra noise"] = job.extra_noise
            job.state[HIRES_PASS] = True  # token merging switches to its hires ratio
            sample(job)
            return job.samples
        finally:
            s.clear()
            s.update(first[0])
            job.image_cond = first[1]
            job.state.pop(HIRES_PASS, None)
            job.sampler, job.schedule_label, job.sampler_config, job.sampler_options, job.sampler_params = first[2:]
            (job.width, job.height), job.kind, job.t_enc, job.extra_noise = first_size, kind, None, 0.0


def hires_image_conditioning(pipe, samples: torch.Tensor, pixels: torch.Tensor | None, generator: torch.Generator,
                             weight: float) -> torch.Tensor | None:
    """A1111's image conditioning of the second pass for the upscaled (uncropped) latents `samples`; None for a
    4-channel model.

    * latent modes, `weight >= 1`: txt2img's conditioning (mid-grey image, mask all ones) — at the upscaled size, where
      A1111 builds it at the first pass's size and fails on the size mismatch;
    * latent modes, `weight < 1`: the upscaled latents decoded (unclamped, [-1, 1]), mask all ones, conditioning image
      `lerp(img, 0, weight)`;
    * image modes (`pixels`, the upscaled images): the same with the images in [0, 1] where [-1, 1] is meant, as A1111
      passes them (at weight 1 the conditioning image is 0 either way).
    The caller crops the result with the latents (A1111 builds it before the `Hires resize` crop, and crashes there).
    """
    if not pipe.config.is_inpainting:
        return None
    if pixels is None and weight >= 1.0:
        return pipe._image_conditioning(None, None, tuple(samples.shape), generator, weight)
    with torch.inference_mode():
        if pixels is None:
            pixels = torch.cat([pipe._decode_one(z) for z in samples])
        pixels = pixels.to(pipe.device, pipe._vae_dtype())
        # A1111's mask for "no mask" has the image's size (a target that is no multiple of 8 encodes to floor / 8).
        cmask = torch.ones(1, 1, *pixels.shape[-2:], device=pixels.device, dtype=pixels.dtype)
        cond_latent = pipe.encode_image(masking.masked_image(pixels, cmask, weight), generator, batched=True)
        small = masking.downsample_conditioning_mask(cmask, cond_latent.shape[-2:]).to(cond_latent)
    return torch.cat([small.expand(cond_latent.shape[0], -1, -1, -1), cond_latent], dim=1)
