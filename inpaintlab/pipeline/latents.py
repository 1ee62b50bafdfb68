"""Stage 4, encode and masked content: the init image through the VAE, the latent mask, the first noise draw and
A1111's latent masked-content modes; the 9-channel image conditioning; and the VAE decode of stage 8."""
from __future__ import annotations

import logging
from typing import Callable

import torch
from PIL import Image

from .. import masking
from ..samplers import ImageRNG
from .images import image_to_tensor, tensor_to_image
from .job import Job

log = logging.getLogger(__name__)


def posterior_generator(seeds: list[int]) -> torch.Generator:
    """CPU generator for VAE posterior samples, in the state A1111's global generator has when the same job runs twice.

    A1111 samples the posterior from torch's global CPU generator; drawing the job's noise last reseeds it with the
    batch's last seed. (Its very first run starts from whatever state the previous job left, which cannot be
    reproduced; under the NV source A1111 never reseeds it. The same choice serves every source.)
    """
    return torch.Generator("cpu").manual_seed(seeds[-1])


class VAEMixin:
    """The `Pipeline`'s VAE methods (public: `to_vae_input`, `encode_image`, `decode_latents`)."""

    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def to_vae_input(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0,1] → [-1,1] in the VAE's dtype, cast first as A1111 does (it matters in fp16)."""
        x = x.to(self.device, self._vae_dtype())
        return 2.0 * x - 1.0

    def encode_image(self, x: torch.Tensor, generator: torch.Generator | None = None, *,
                     batched: bool = False) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] → posterior samples × scale factor (float32).

        The posterior noise comes from `generator` (CPU): one draw per image in order, as A1111 encodes a batch image
        by image; `batched=True` encodes and draws for the whole batch at once, as A1111 does for the 9-channel
        conditioning image.
        """
        with torch.inference_mode():
            parts = [x] if batched else list(x.split(1))
            samples = [self.vae.encode(part.to(self.device, self._vae_dtype())).sample(generator) for part in parts]
        return self.config.scale_factor * torch.cat(samples).float()

    def decode_latents(self, latents: torch.Tensor,
                       postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[Image.Image]:
        """Decode image by image. A half-precision VAE whose output starts with NaN (SDXL's VAE overflows in fp16) is
        converted to float32 for good and the image decoded again, with a warning: A1111's "Automatically revert VAE
        to 32-bit floats" (on by default), which tests only the first element of the decoded image."""
        images = []
        with torch.inference_mode():
            for z in latents:
                decoded = self._decode_one(z)
                if torch.isnan(decoded[(0,) * decoded.ndim]) and self._vae_dtype() != torch.float32:
                    log.warning("A tensor with NaNs was produced in the VAE decode (%s); converting the VAE to 32-bit "
                                "floats and decoding again. Load with a float32 VAE or an fp16-safe VAE file to avoid "
                                "this.", self._vae_dtype())
                    self.vae.float()
                    decoded = self._decode_one(z)
                if not torch.isfinite(decoded).all():
                    raise FloatingPointError("VAE decode produced NaN/inf (try dtype=torch.float32 for the VAE)")
                images.append(tensor_to_image(decoded[0], postprocess))
        return images

    def _decode_one(self, z: torch.Tensor) -> torch.Tensor:
        # ldm: `1 / scale_factor * z` in the VAE's dtype (a division rounds differently in the last bit).
        return self.vae.decode((1.0 / self.config.scale_factor) * z[None].to(self._vae_dtype()))

    def _image_conditioning(self, source: torch.Tensor | None, image_mask: Image.Image | None, shape: tuple[int, ...],
                            generator: torch.Generator, weight: float, mask_round: bool = True) -> torch.Tensor | None:
        """9-channel models: cat[mask, VAE(masked image)] (A1111 step 11); None for ordinary 4-channel models.

        source: the prepared init image in [-1,1] (VAE dtype), or None for txt2img (a mid-grey image, all repainted).
        """
        if not self.config.is_inpainting:
            return None
        batch, _, h, w = shape
        if source is None:
            source = self.to_vae_input(torch.full((1, 3, h * 8, w * 8), 0.5))
        # Without a mask (txt2img, img2img) everything is repainted: the conditioning mask is all ones, as in A1111.
        cmask = (masking.conditioning_mask(image_mask, round=mask_round) if image_mask is not None
                 else torch.ones(1, 1, h * 8, w * 8))
        cmask = cmask.to(source)
        masked = masking.masked_image(source, cmask, weight)
        cond_latent = self.encode_image(masked.expand(batch, -1, -1, -1), generator, batched=True)
        small = masking.downsample_conditioning_mask(cmask, (h, w)).to(cond_latent)
        return torch.cat([small.expand(batch, -1, -1, -1), cond_latent], dim=1)


def encode(job: Job) -> None:
    """Init latent (txt2img: none), latent mask, the sampling noise's first draw, and masked content in latent space.

    Sets job.init_latent, job.latent_mask, job.shape, job.rng, job.noise, job.posterior_rng (the generator the
    9-channel conditioning continues)."""
    pipe, s = job.pipe, job.settings
    job.posterior_rng = posterior_generator(job.seeds)
    if job.prep is None:
        job.shape = (s["batch_size"], 4, job.height // 8, job.width // 8)
        job.rng = job.noise_cfg.rng(job.shape[1:], job.device)
        job.noise = job.rng.next()
        return
    job.source = pipe.to_vae_input(image_to_tensor(job.prep.init))
    job.init_latent = pipe.encode_image(job.source.expand(s["batch_size"], -1, -1, -1), job.posterior_rng)
    job.shape = tuple(job.init_latent.shape)
    job.rng = job.noise_cfg.rng(job.shape[1:], job.device)
    job.noise = job.rng.next()
    if job.image_mask is None:
        return
    source_mask = job.image_mask if job.prep.latent_mask is None else job.prep.latent_mask  # A1111's p.latent_mask
    latent_mask = masking.latent_mask(source_mask, job.width, job.height, round=job.mask_round).to(job.device)
    job.latent_mask = latent_mask.expand(job.shape).contiguous()
    content = s["masked_content"]
    if content == "fill" and s["fill_space"] == "latent":
        job.init_latent = masking.apply_masked_content("fill", job.init_latent, job.latent_mask)
    elif content in ("latent_noise", "latent_nothing"):
        # A1111 draws this from a fresh generator per image seed, without variation seed or seed resize: the same
        # numbers as the first sampling noise when neither is used.
        fill_noise = job.noise if job.noise_cfg.plain else ImageRNG(job.shape[1:], job.seeds, job.device,
                                                                    source=job.noise_cfg.rng_source).next()
        job.init_latent = masking.apply_masked_content(content, job.init_latent, job.latent_mask, fill_noise)
        job.extra["Masked content"] = masking.MASKED_CONTENT_LABELS[content]
        if content == "latent_noise":
            job.posterior_rng = posterior_generator(job.seeds)  # A1111 reseeds torch's global generator here


def image_conditioning(job: Job) -> None:
    """job.image_cond: the 9-channel models' cat[mask, VAE(masked image)]; None for 4-channel models."""
    job.image_cond = job.pipe._image_conditioning(job.source, job.image_mask, job.shape, job.posterior_rng,
                                                  job.settings.get("inpainting_mask_weight", 1.0), job.mask_round)


def decode(job: Job, postprocess: Callable[[torch.Tensor], torch.Tensor] | None) -> list[Image.Image]:
    return job.pipe.decode_latents(job.samples, postprocess)
