"""The skeleton: A1111 v1.10's stages in their fixed order, with the job's techniques called at named hooks.

`run(job)`: settings → images and masks → networks → encode and masked content → conditioning → noise → sample →
decode → composite → postprocess → infotext. Each stage is a function in this package (`images`, `conditioning`,
`latents`, `sample`, `finish`); every technique (`inpaintlab.techniques`, or the caller's own) acts only through
the hooks of `technique.HOOKS`, so this module names none of them.

Choices where A1111 is not reproducible from its inputs:
* VAE posterior sample: A1111 draws ε from torch's global CPU generator, whose state is left by the previous job. We draw
  it, in A1111's order, from a CPU generator seeded with the batch's last seed — A1111's state when a job runs twice.
* Noise: A1111's "CPU" RNG source by default (one CPU generator per image seed), so a seed gives the same image on every
  device; `rng_source="NV"` gives A1111's emulation of CUDA noise on any device, `"GPU"` CUDA's own generator.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from .. import masking
from ..clip import OpenCLIPTokenizer, Tokenizer
from ..controlnet.unit import ControlNetUnit
from ..networks import NetworkLibrary, NetworkMerger, ActiveNetwork
from ..noise import noise_settings
from ..result import Result
from ..samplers import SAMPLER_CONFIGS, DiscreteSchedule, resolve_sampler, sampler_options
from .. import settings as registry
from ..settings import validated
from ..techniques import builtin
from ..techniques.lora import NetworksMixin
from .conditioning import ConditioningMixin, conditioning
from .finish import finish
from .images import prepare_images, size_of
from .job import Job
from .latents import VAEMixin, encode, image_conditioning
from .load import PipelineConfig
from .sample import sample
from .technique import Hooks, Technique, order_techniques

# Keywords of the entry points that are not the job's settings.
_NOT_SETTINGS = {"self", "image", "mask", "callback", "progress", "techniques", "technique_settings"}


def _settings(command: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The job's settings: the call's keywords, plus techniques' own registered rows (at their defaults unless
    given through **settings); any other keyword is refused as Python would."""
    extra = arguments["technique_settings"]
    unknown = [k for k in extra if k not in registry.SETTINGS or registry.SETTINGS[k].keyword]
    if unknown:
        raise TypeError(f"{command}() got an unexpected keyword argument {unknown[0]!r}")
    given = {k: v for k, v in arguments.items() if k not in _NOT_SETTINGS}
    rows = {name: registry.SETTINGS[name].default for name in registry.for_command(command)
            if not registry.SETTINGS[name].keyword}
    return {**rows, **given, **extra}


def run(job: Job, techniques: list[Technique]) -> Result:
    """Run one job through the stages; `techniques`: the caller's, after the built-in ones."""
    s = job.settings
    job.sampler, job.schedule_label = resolve_sampler(s["sampler"], s["scheduler"])
    job.sampler_config = SAMPLER_CONFIGS[job.sampler]
    outside = list(techniques)
    bad = [t for t in outside if not isinstance(t, Technique)]
    if bad:
        raise TypeError(f"techniques must be inpaintlab.pipeline.Technique objects, got {type(bad[0]).__name__}")
    job.outside = outside
    job.techniques = order_techniques(builtin(job, outside), outside)
    hooks = job.hooks = Hooks(job.techniques)
    hooks.call("setup", job)
    job.sampler_options, job.sampler_params = sampler_options(job.sampler, s["eta"], s["s_churn"], s["s_tmin"],
                                                              s["s_tmax"], s["s_noise"])
    job.width, job.height = size_of(job)
    job.noise_cfg = noise_settings(s["seed"], s["batch_size"], subseed=s["subseed"],
                                   subseed_strength=s["subseed_strength"], seed_resize_from=s["seed_resize_from"],
                                   rng_source=s["rng_source"], ensd=s["ensd"])
    prepare_images(job)
    hooks.call("prepare", job)
    hooks.call("networks", job)
    encode(job)
    hooks.call("latents", job)
    image_conditioning(job)
    conditioning(job)
    hooks.call("conditioning", job)
    job.noise = hooks.chain("noise", job, job.noise)
    sample(job)
    job.samples = hooks.chain("after_sample", job, job.samples)
    return finish(job)


class Pipeline(NetworksMixin, ConditioningMixin, VAEMixin):
    """SD 1.x / SD 2.x / SDXL txt2img / img2img / inpaint with A1111 v1.10 semantics. Build it with `inpaintlab.load`.

    SD 2.x and SDXL use the same schedule as SD 1.x (1000 linear-in-sqrt betas, 0.00085 to 0.012); 768-v files are
    wrapped in k-diffusion's v denoiser. SDXL's conditioning is a dict {"crossattn", "vector"} per prompt: the ADM
    vector holds the pooled text and the size conditioning A1111 sets (original size = target size = the processing
    size height x width, also in only-masked mode; crop top-left (0, 0)).
    """

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module, config: PipelineConfig,
                 tokenizer: Tokenizer | None = None, embeddings: dict | None = None, *,
                 embedding_files: dict[str, Path] | None = None, text_encoder_2: torch.nn.Module | None = None,
                 lora_dir: str | Path | None = None,
                 allow_pickle: bool = False):
        self.unet, self.vae, self.text_encoder, self.config = unet, vae, text_encoder, config
        self.text_encoder_2 = text_encoder_2
        if config.family == "sdxl" and text_encoder_2 is None:
            raise ValueError("an SDXL pipeline needs text_encoder_2 (OpenCLIP bigG)")
        # A1111 tokenizes SD 2.x prompts with open_clip's tokenizer, SDXL's CLIP-L with transformers' and its bigG
        # with open_clip's.
        if tokenizer is None:
            tokenizer = {"sd2": OpenCLIPTokenizer, "sdxl": lambda: Tokenizer(html_unescape=False),
                         "sdxl_refiner": OpenCLIPTokenizer}.get(config.family, Tokenizer)()
        self.tokenizer = tokenizer
        self.tokenizer_2 = OpenCLIPTokenizer() if config.family == "sdxl" else None
        self.embeddings = embeddings or {}
        self.embedding_files = embedding_files or {}  # name -> file, for the infotext's "TI hashes"
        self._embedding_hashes: dict[str, str] = {}
        self.schedule = DiscreteSchedule()
        self.device = next(unet.parameters()).device
        self._controlnets: dict = {}  # loaded ControlNet files, by path, device, dtype and kernels
        self.lora_dir = None if lora_dir is None else Path(lora_dir)
        self._library: NetworkLibrary | None = None
        self._merger = NetworkMerger(unet, text_encoder, text_encoder_2=text_encoder_2, family=config.family,
                                     allow_pickle=allow_pickle)
        self._networks: list[ActiveNetwork] = []  # set by apply_networks, active under every prompt's own tags

    # --- public entry points ---------------------------------------------------------------------------------------

    @validated
    def txt2img(self, prompt: str, negative_prompt: str = "", *, steps: int = 20, sampler: str = "DPM++ 2M",
                scheduler: str = "Automatic", cfg_scale: float = 7.0, seed: int = -1, width: int = 512,
                height: int = 512, batch_size: int = 1, clip_skip: int = 1, rng_source: str = "CPU", subseed: int = -1,
                subseed_strength: float = 0.0, seed_resize_from: tuple[int, int] | None = None, ensd: int = 0,
                eta: float | None = None, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = 0.0,
                s_noise: float = 1.0, denoising_strength: float = 0.75, inpainting_mask_weight: float = 1.0,
                callback: Callable[[dict], Any] | None = None, progress: bool = False,
                controlnet: Any = None,
                controlnet_preprocessor: str = "inpaint_only", control_weight: float = 1.0,
                control_mode: str = "Balanced", guidance_start: float = 0.0, guidance_end: float = 1.0,
                controlnet_image: Image.Image | None = None, controlnet_mask: Image.Image | None = None,
                controlnet_lama: Any = None, controlnets: list[ControlNetUnit] | None = None,
                techniques: list[Technique] | None = None, **technique_settings: Any) -> Result:
        """Text to image with A1111's UI defaults (DPM++ 2M, Automatic = Karras, 20 steps, CFG 7, 512×512).

        Noise settings (rng_source, subseed, subseed_strength, seed_resize_from, ensd) and ControlNet keywords as in
        `inpaint`; in txt2img a ControlNet unit needs its own image (`controlnet_image`). techniques: as in `inpaint`.
        denoising_strength: the hires fix pass's (with `enable_hr=True` and the other `hr_*` settings, see
        `inpaintlab.techniques.hires`). inpainting_mask_weight: 9-channel models' conditioning image in the hires
        fix's second pass (A1111's "Conditional mask weight" option).
        """
        settings = _settings("txt2img", locals())
        return run(Job(self, "txt2img", settings, callback=callback, progress=progress), techniques or [])

    def img2img(self, image: Image.Image, prompt: str, negative_prompt: str = "", *, denoising_strength: float = 0.75,
                **settings: Any) -> Result:
        """Image to image: `inpaint` without a mask (every pixel regenerated at the given strength)."""
        return self.inpaint(image, None, prompt, negative_prompt, denoising_strength=denoising_strength, **settings)

    @validated
    def inpaint(self, image: Image.Image, mask: Image.Image | None, prompt: str, negative_prompt: str = "", *,
                steps: int = 20, sampler: str = "DPM++ 2M", scheduler: str = "Automatic", cfg_scale: float = 7.0,
                seed: int = -1, width: int | None = None, height: int | None = None, denoising_strength: float = 0.75,
                mask_blur: int = 4, mask_mode: str = "masked", masked_content: str = "original",
                inpaint_area: str = "whole", padding: int = 32, batch_size: int = 1, clip_skip: int = 1,
                fill_space: str = "pixel", inpainting_mask_weight: float = 1.0, resize_mode: int = 0,
                rng_source: str = "CPU", subseed: int = -1, subseed_strength: float = 0.0,
                seed_resize_from: tuple[int, int] | None = None, ensd: int = 0,
                soft_inpainting: bool = False, schedule_bias: float = 1.0, preservation_strength: float = 0.5,
                transition_contrast_boost: float = 4.0, mask_influence: float = 0.0, difference_threshold: float = 0.5,
                difference_contrast: float = 2.0, differential_diffusion: bool = False, eta: float | None = None,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = 0.0, s_noise: float = 1.0,
                callback: Callable[[dict], Any] | None = None, progress: bool = False,
                controlnet: Any = None,
                controlnet_preprocessor: str = "inpaint_only", control_weight: float = 1.0,
                control_mode: str = "Balanced", guidance_start: float = 0.0, guidance_end: float = 1.0,
                controlnet_image: Image.Image | None = None, controlnet_mask: Image.Image | None = None,
                controlnet_lama: Any = None, controlnets: list[ControlNetUnit] | None = None,
                techniques: list[Technique] | None = None, **technique_settings: Any) -> Result:
        """Inpaint `image` where `mask` is white, as A1111 v1.10's img2img inpaint tab does.

        Defaults are A1111's UI defaults (not its API's): DPM++ 2M with schedule "Automatic" (= Karras for DPM++ 2M, the
        model's uniform schedule for Euler), 20 steps, CFG 7, denoising 0.75, mask blur 4, "Inpaint masked", masked
        content "original", "Whole picture", padding 32. width/height default to the image size
        (rounded down to a multiple of 8).

        mask: L/RGB/RGBA image, 255 = repaint (RGBA with a real alpha channel: alpha > 128). A mask of another size than
            the image is resized to the image (Lanczos) first (A1111 would blur and crop in the mask's own pixels; see
            the README's list of differences). An all-black mask in "only_masked"
            mode falls back to plain img2img (A1111 ≥ 1.9.1); in "whole" mode it leaves the image unchanged.
        mask_mode: "masked" | "not_masked" (inverted before the blur). masked_content: "fill" | "original" |
            "latent_noise" | "latent_nothing". inpaint_area: "whole" | "only_masked" (crop around the mask plus `padding`,
            process at width×height, paste back). fill_space: where "fill" runs — "pixel" (A1111: on the image before
            encoding) or "latent" (on the encoded latents). callback: gets k-diffusion's dict (x, i, sigma, sigma_hat,
            denoised) each step.
        rng_source: "CPU" (default: the same noise on every device), "NV" (A1111's emulation of CUDA's generator, any
            device) or "GPU" (torch's CUDA generator; A1111's default; needs CUDA).
        subseed, subseed_strength: A1111's variation seed. With a non-zero strength every image uses `seed` and image i
            the variation seed `subseed + i`; the initial noise is A1111's slerp between the two. -1 = random.
        seed_resize_from: (width, height): make the seed's initial noise as if the image were this size, pasted centred
            ("Resize seed from"); used when both are > 0.
        ensd: A1111's "Eta noise seed delta": sampler noise after the initial noise comes from seed + ensd.
        sampler: any of A1111's 20 (`inpaintlab.samplers.SAMPLERS`, aliases such as "k_euler_a" and old combined names
            such as "DPM++ 2M Karras" accepted); scheduler: any schedule type label (ignored by DDIM, DDIM CFG++, PLMS
            and UniPC, which run on A1111's own timesteps).
        eta: None = the sampler's default (1.0 for the ancestral and SDE samplers, DPM fast/adaptive; 0.0 for DDIM);
            written to the infotext ("Eta" / "Eta DDIM") when not the default. s_churn, s_tmin, s_tmax (0 = infinity),
            s_noise: A1111's sigma churn settings, taken by Euler, Heun, DPM2 (all four) and by DPM2 a, DPM++ 2S a, the
            DPM++ SDE samplers and DPM fast (s_noise); written as "Sigma churn" etc. when not the default.

        ControlNet (sd-webui-controlnet semantics): `controlnet` (a file path or a loaded `ControlNet`),
            `controlnet_preprocessor` ("inpaint_only" | "inpaint_global_harmonious" | "inpaint_only+lama"),
            `control_weight` (1.0), `control_mode` ("Balanced" | "My prompt is more important" | "ControlNet is more
            important"), `guidance_start` / `guidance_end` (0.0 / 1.0, fractions of the steps run, counted as A1111
            does), `controlnet_image` / `controlnet_mask` (the unit's own image; default: this job's image and mask),
            `controlnet_lama` (for inpaint_only+lama: a LaMa model or file, a function or a filled image); or
            `controlnets`, a list of `ControlNetUnit`s. With a mask, inpaint_only falls back to
            inpaint_global_harmonious (the extension's rule: A1111's own inpainting then keeps the unmasked area).

        techniques: `inpaintlab.pipeline.Technique` objects to run with this job, after the built-in ones (see
            `inpaintlab.pipeline.technique` for the hooks).

        Every setting is checked (and A1111's labels such as "latent noise", "Only masked" or "Inpaint not masked"
        accepted) by `inpaintlab.settings` before any work starts.
        """
        if not 0.0 <= denoising_strength <= 1.0:
            raise ValueError(f"denoising_strength must be in [0, 1], got {denoising_strength}")
        settings = _settings("inpaint", locals())
        return run(Job(self, "inpaint", settings, image=image, mask=mask, callback=callback, progress=progress),
                   techniques or [])

    def inpaint_sketch(self, image: Image.Image, sketch: Image.Image, prompt: str, negative_prompt: str = "", *,
                       mask_alpha: float = 0.0, mask_blur: int = 4, **settings: Any) -> Result:
        """A1111's "Inpaint sketch": the mask is wherever `sketch` differs from `image`, and the strokes (blurred by
        `mask_blur`) are composited into the image before inpainting. `mask_alpha` is the UI's mask transparency (%)."""
        composited, mask = masking.inpaint_sketch(image, sketch, mask_blur, mask_alpha)
        return self.inpaint(composited, mask, prompt, negative_prompt, mask_blur=mask_blur, **settings)
