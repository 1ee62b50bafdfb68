"""The inpaint pipeline: AUTOMATIC1111 v1.10's img2img inpaint tab, step by step.

`inpaintlab.load(path)` returns a `Pipeline`; `pipe.inpaint(image, mask, prompt, ...)` runs, in the order of A1111
v1.10's img2img job with a mask: seeds → mask intake, invert, blur → whole-picture / only-masked geometry → init image
(flatten, resize or crop, fill) → VAE encode × 0.18215 → latent mask and masked content → 9-channel image conditioning →
text conditioning → noise → strength truncation → sampling (blend after CFG) → final latent blend → decode, truncate to
uint8 → overlay / paste back → infotext. Each step is a function of `inpaintlab.masking`, `inpaintlab.samplers` or the
models; this module only puts them in order.

Choices where A1111 is not reproducible from its inputs:
* VAE posterior sample: A1111 draws ε from torch's global CPU generator, whose state is left by the previous job. We draw
  it, in A1111's order, from a CPU generator seeded with the batch's last seed — A1111's state when a job runs twice.
* Noise: A1111's "CPU" RNG source by default (one CPU generator per image seed), so a seed gives the same image on every
  device; `rng_source="NV"` gives A1111's emulation of CUDA noise on any device, `"GPU"` CUDA's own generator.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from . import masking
from ._version import __version__
from .checkpoint import FAMILY_LABELS, file_sha256, load_models
from .clip import (OpenCLIPTokenizer, Tokenizer, encode_prompts, encode_prompts_sd2, encode_prompts_sdxl,
                   load_embeddings, load_sdxl_embeddings, tokenize_prompt)
from .clip.schedule import get_prompt_schedule, split_and
from .controlnet.inject import ControlledUNet
from .controlnet.unit import ControlNetUnit, PreparedUnits, get_model, prepare_units
from .infotext import build_infotext
from .masking.soft import SoftInpaintingSettings, overlay_source, soft_overlays
from .noise import NoiseSettings, noise_settings
from .networks import ActiveNetwork, NetworkError, NetworkLibrary, NetworkMerger, lora_tags, parse_prompt, strip_networks
from .prepare import flatten, prepare_inpaint, processing_size
from .result import Result
from .settings import validated
from .samplers import (SAMPLER_CONFIGS, CFGDenoiser, DifferentialBlend, DiscreteSchedule, EpsDenoiser, ImageRNG,
                       InpaintBlend, InpaintBlendInput, LCMDenoiser, SamplerConfig, SoftInpaintBlend, TimestepEpsModel,
                       VDenoiser, brownian_noise_sampler, build_sigmas, get_timesteps, img2img_start, img2img_steps,
                       resolve_sampler, sampler_options, total_steps)
from .samplers.denoisers import ScheduledCFGDenoiser
from .unet import sdxl_adm_vector

log = logging.getLogger(__name__)


VERSION_TAG = f"inpaintlab-{__version__}"  # A1111 writes its git tag; ours names the library


@dataclasses.dataclass
class ScheduledConditioning:
    """Text conditioning that changes during sampling (prompt editing, alternation, ``AND``).

    cond_schedules: one ``[(end_at_step, [1, L, C]), ...]`` per ``AND`` sub-prompt; weights: their CFG weights;
    uncond_schedule: the negative prompt's schedule.
    """

    cond_schedules: list[list[tuple[int, torch.Tensor]]]
    weights: list[float]
    uncond_schedule: list[tuple[int, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    scale_factor: float
    is_inpainting: bool
    model_name: str | None = None
    model_hash: str | None = None
    vae_name: str | None = None
    vae_hash: str | None = None
    family: str = "sd1"       # "sd1", "sd2" or "sdxl"
    prediction: str = "eps"   # "eps" or "v" (SD 2.x 768-v): which k-diffusion denoiser wraps the UNet


# A1111's options `sdxl_crop_top` / `sdxl_crop_left` (default 0): the crop coordinates of SDXL's size conditioning.
SDXL_CROP_TOP_LEFT = (0, 0)


def load(path: str | Path, vae: str | Path | None = None, device: str | torch.device = "cpu",
         dtype: torch.dtype | None = torch.float32, kernels: str = "auto", *,
         embeddings_dir: str | Path | None = None, lora_dir: str | Path | None = None,
         allow_pickle: bool = False) -> "Pipeline":
    """Load a single-file SD 1.x, SD 2.x (512 eps or 768-v) or SDXL (base or inpainting) checkpoint, and optionally a
    separate VAE, into a ready `Pipeline`. `dtype` None keeps the file's own dtype (least memory).

    lora_dir: directory of LoRA/LyCORIS files that `<lora:name:…>` prompt tags name (A1111's `--lora-dir`).
    """
    models = load_models(path, vae, device=device, dtype=dtype, kernels=kernels, allow_pickle=allow_pickle)
    config = PipelineConfig(models.scale_factor, models.is_inpainting, models.model_name, models.model_hash,
                            models.vae_name, models.vae_hash, models.family, models.prediction)
    files: dict[str, Path] = {}
    embeddings = None
    if embeddings_dir and models.family == "sdxl":
        embeddings = load_sdxl_embeddings(embeddings_dir, width_l=models.text_encoder.config.width,
                                          width_g=models.text_encoder_2.config.width)
    elif embeddings_dir:
        embeddings = load_embeddings(embeddings_dir, width=models.text_encoder.config.width, files=files)
    return Pipeline(models.unet, models.vae, models.text_encoder, config, embeddings=embeddings,
                    embedding_files=files, text_encoder_2=models.text_encoder_2, lora_dir=lora_dir,
                    allow_pickle=allow_pickle)


# --- small conversions -------------------------------------------------------------------------------------------------

def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → [1,3,H,W] float32 in [0,1] (A1111: value / 255; the 2x − 1 happens in the VAE's dtype)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def tensor_to_image(x: torch.Tensor, postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Image.Image:
    """[3,H,W] decoder output in [-1,1] → uint8 image, truncating like A1111 (no rounding). `postprocess` acts on the
    [1,3,H,W] image in [0,1] before the truncation (where A1111 scripts' postprocess_batch runs)."""
    x = torch.clamp((x.float() + 1.0) / 2.0, min=0.0, max=1.0)
    if postprocess is not None:
        x = postprocess(x[None])[0]
    array = (255.0 * np.moveaxis(x.cpu().numpy(), 0, 2)).astype(np.uint8)
    return Image.fromarray(array)


_COMMENT_LINE = re.compile(r"(?:^|\n)#[^\n]*(?:\n|$)")
_COMMENT_TAIL = re.compile(r"#[^\n]*(?:\n|$)")


def strip_comments(text: str) -> str:
    """A1111 prompt comments: a line starting with '#' is removed, then any other '#…' to the end of its line;
    each removal leaves one newline (what A1111 encodes and writes into the infotext)."""
    return _COMMENT_TAIL.sub("\n", _COMMENT_LINE.sub("\n", text))


def _posterior_generator(seeds: list[int]) -> torch.Generator:
    """CPU generator for VAE posterior samples, in the state A1111's global generator has when the same job runs twice.

    A1111 samples the posterior from torch's global CPU generator; drawing the job's noise last reseeds it with the
    batch's last seed. (Its very first run starts from whatever state the previous job left, which cannot be
    reproduced; under the NV source A1111 never reseeds it. The same choice serves every source.)
    """
    return torch.Generator("cpu").manual_seed(seeds[-1])


class Pipeline:
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
            tokenizer = {"sd2": OpenCLIPTokenizer, "sdxl": lambda: Tokenizer(html_unescape=False)}.get(
                config.family, Tokenizer)()
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
        self._merger = NetworkMerger(unet, text_encoder, allow_pickle=allow_pickle)
        self._networks: list[ActiveNetwork] = []  # set by apply_networks, active under every prompt's own tags

    # --- networks (LoRA / LyCORIS) ---------------------------------------------------------------------------------

    @property
    def library(self) -> NetworkLibrary:
        """The networks in `lora_dir`, listed on first use."""
        if self._library is None:
            self._library = NetworkLibrary(self.lora_dir)
        return self._library

    def network_path(self, name_or_path: str | Path) -> Path:
        """The file a network name (file stem or `ss_output_name` alias in `lora_dir`) or path refers to."""
        path = Path(name_or_path)
        if path.suffix.lower() in (".safetensors", ".pt", ".ckpt") and path.is_file():
            return path
        try:
            return self.library.find(str(name_or_path))
        except NetworkError:
            if self._library is not None and self.lora_dir is not None:
                self._library = NetworkLibrary(self.lora_dir)  # A1111 re-lists the directory when a name is missing
                return self.library.find(str(name_or_path))
            raise

    def apply_networks(self, networks: list[tuple]) -> None:
        """Merge networks into the UNet and text encoder: `[(path_or_name, te_weight, unet_weight[, dyn]), ...]`.

        Deltas are added in list order into the live weights, each time from a kept copy of the original weights, so
        calling it again (or `clear_networks()`) restores the base bit for bit. A name is looked up in `lora_dir`
        (file stem or `ss_output_name` alias). Prompt tags add their networks after these at each generation.
        """
        wanted = []
        for item in networks:
            if isinstance(item, (str, Path)):
                item = (item,)
            if not 1 <= len(item) <= 4:
                raise ValueError(f"apply_networks: expected (path_or_name, te_weight, unet_weight[, dyn]), got {item!r}")
            source, te, unet, dyn = (tuple(item) + (None, None, None))[:4]
            te = 1.0 if te is None else float(te)
            unet = te if unet is None else float(unet)
            path = self.network_path(source)
            wanted.append(ActiveNetwork(path, te, unet, None if dyn is None else int(dyn), Path(path).stem))
        self._merger.apply(wanted)
        self._networks = wanted

    def clear_networks(self) -> None:
        """Remove every merged network: all touched weights return to the checkpoint's, bit for bit."""
        self._networks = []
        self._merger.clear()

    @property
    def active_networks(self) -> list[ActiveNetwork]:
        """The networks merged into the weights right now (those of `apply_networks`, then the last prompt's)."""
        return list(self._merger.active)

    def _activate_prompt_networks(self, prompt: str) -> dict[str, str]:
        """Merge `apply_networks`' set plus the prompt's `<lora:…>` tags (A1111: the batch's first prompt decides);
        returns the infotext's {name: shorthash} for `Lora hashes`."""
        _, data = parse_prompt(strip_comments(prompt))
        wanted = list(self._networks)
        for tag in lora_tags(data):
            wanted.append(ActiveNetwork(self.network_path(tag.name), tag.te, tag.unet, tag.dyn, tag.name))
        files = self._merger.apply(wanted)
        hashes: dict[str, str] = {}
        for net, file in zip(wanted, files):
            if file.shorthash:
                hashes[net.name.replace(":", "").replace(",", "")] = file.shorthash
        return hashes

    # --- conditioning ----------------------------------------------------------------------------------------------

    def encode_prompt(self, text: str, clip_skip: int = 1, **kwargs: Any):
        """A1111 conditioning for one prompt: [1, 77·k, C] (weights, mean restore, 75-token chunks, embeddings), or
        SDXL's {"crossattn": [1, 77·k, 2048], "vector": [1, 2816]}."""
        return self.encode_prompts([text], clip_skip, **kwargs)

    def encode_prompts(self, texts: list[str], clip_skip: int = 1, *, negative: bool = False,
                       size: tuple[int, int] | None = None):
        """Conditioning for a batch of prompts. SDXL only: `negative` marks a negative prompt (all-empty texts then
        give zeros, as sgm's force_zero_embeddings in A1111), `size` is the processing (width, height) of the size
        conditioning (A1111's default 1024 x 1024 when not given)."""
        family = self.config.family
        with torch.inference_mode():
            if family == "sd1":
                return encode_prompts(self.text_encoder, self.tokenizer, texts, clip_skip=clip_skip,
                                      embeddings=self.embeddings).float()
            if family == "sd2":
                return encode_prompts_sd2(self.text_encoder, self.tokenizer, texts, clip_skip=clip_skip,
                                          embeddings=self.embeddings).float()
            context, pooled = encode_prompts_sdxl(self.text_encoder, self.text_encoder_2, self.tokenizer, texts,
                                                  clip_skip=clip_skip, embeddings=self.embeddings,
                                                  tokenizer_g=self.tokenizer_2, negative=negative)
            width, height = size or (1024, 1024)
            vector = sdxl_adm_vector(pooled.float(), (height, width), SDXL_CROP_TOP_LEFT, (height, width))
            return {"crossattn": context.float(), "vector": vector.to(context.device)}

    # --- VAE -------------------------------------------------------------------------------------------------------

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

    # --- sampling --------------------------------------------------------------------------------------------------

    def _denoiser(self, config: SamplerConfig, unet: Callable, cond: torch.Tensor | ScheduledConditioning,
                  uncond: torch.Tensor | None, cfg_scale: float, image_cond: torch.Tensor | None) -> Callable:
        # The UNet runs in its own dtype; x stays float32 (x + eps·c_out promotes), as in A1111 under autocast.
        if self.config.prediction == "v" and (config.kind == "timesteps" or config.name == "LCM"):
            raise ValueError(f"{config.name} runs on eps-prediction models only; this model predicts v")
        if config.kind == "timesteps":
            model: Callable = TimestepEpsModel(unet, self.schedule, image_cond=image_cond)
        elif config.name == "LCM":
            model = LCMDenoiser(unet, self.schedule, image_cond=image_cond)
        else:
            denoiser = VDenoiser if self.config.prediction == "v" else EpsDenoiser
            model = denoiser(unet, self.schedule, image_cond=image_cond)
        cfg_scale = cfg_scale * config.extra.get("cfg_scale_multiplier", 1.0)  # DDIM CFG++: A1111 scales by 1/12.5
        if isinstance(cond, ScheduledConditioning):
            # Counts its own calls from 0, so a truncated img2img run starts at the schedule's first entry (A1111).
            return ScheduledCFGDenoiser(model, cond.cond_schedules, cond.uncond_schedule, cfg_scale, cond.weights)
        return CFGDenoiser(model, cond, uncond, cfg_scale)

    def _sample(self, config: SamplerConfig, schedule_label: str, steps: int, noise: torch.Tensor,
                init_latent: torch.Tensor | None, denoising_strength: float | None, rng: ImageRNG, seeds: list[int],
                cond: torch.Tensor | ScheduledConditioning, uncond: torch.Tensor | None, cfg_scale: float,
                image_cond: torch.Tensor | None, blend: Callable[[Callable, torch.Tensor], Callable] | None,
                options: dict[str, Any], callback: Callable[[dict], Any] | None, progress: bool,
                control: PreparedUnits | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run a sampler as A1111 v1.10 does; returns (samples, start latent, the sigmas / timesteps run).

        txt2img when denoising_strength is None: k-diffusion samplers start from noise · sigmas[0], timestep samplers
        from the raw noise. img2img: A1111's truncation of the schedule / timesteps, start latent in VE resp. VP form.
        `blend(model, schedule run)` wraps the CFG denoiser (InpaintBlend, SoftInpaintBlend, DifferentialBlend,
        InpaintBlendInput) or is None for no mask.
        """
        kwargs: dict[str, Any] = {"disable": not progress}
        if "eta" in options:
            kwargs["eta"] = options["eta"]
        kwargs.update({k: options[k] for k in config.churn if k in options})
        if "s_tmax" in kwargs and not kwargs["s_tmax"]:
            kwargs["s_tmax"] = float("inf")  # A1111: 0 means infinity
        takes_noise = "noise_sampler" in inspect.signature(config.function).parameters
        img2img = denoising_strength is not None
        noise_sampler = rng.noise_sampler
        if control is not None and control.lama_latent is not None:
            def noise_sampler(sigma, sigma_next):
                return control.noise(rng.next())
        with torch.inference_mode():
            if config.kind == "timesteps":
                timesteps = get_timesteps(steps)
                ac = self.schedule.alphas_cumprod
                if img2img:
                    t_enc = img2img_steps(steps, denoising_strength)
                    x = img2img_start(init_latent, noise, timesteps, t_enc, ac)
                    timesteps = timesteps[:t_enc]
                else:
                    x = noise
                if config.name == "UniPC":
                    kwargs["is_img2img"] = img2img
                if takes_noise:
                    kwargs["noise_sampler"] = noise_sampler
                # callbacks per run: one per call for DDIM/PLMS (len - 1 steps), one per step for UniPC
                run = (len(timesteps) if config.name == "UniPC" else len(timesteps) - 1, timesteps)
                function, args = config.function, (timesteps.to(x.device), ac)
            else:
                full = build_sigmas(self.schedule, config.name, schedule_label, steps)
                if img2img:
                    t_enc = img2img_steps(steps, denoising_strength)
                    sigmas = full[steps - t_enc - 1:].clone()
                    x = init_latent + noise * sigmas[0]
                else:
                    sigmas = full
                    x = noise * sigmas[0]
                if config.brownian:
                    # one tree per image, seeded with its seed, spanning the untruncated schedule (A1111)
                    kwargs["noise_sampler"] = brownian_noise_sampler(x, full, seeds, source=rng.source)
                elif takes_noise:
                    # the next draws of each image's seeded generator, as A1111's ImageRNG does
                    kwargs["noise_sampler"] = noise_sampler
                if config.kind == "range":
                    if img2img:
                        bounds, n = (sigmas[-2], sigmas[0]), len(sigmas) - 1
                    else:
                        bounds, n = (self.schedule.sigma_min, self.schedule.sigma_max), steps
                    if config.name == "DPM fast":
                        kwargs["n"] = n
                    function, args = config.function, bounds
                else:
                    function, args = config.function, (sigmas.to(x.device),)
                run = (len(sigmas) - 1, sigmas)
            unet: Callable = self.unet
            if control is not None:
                # ControlNet units act where the UNet is called; the step counter follows the sampler's callback.
                unet = ControlledUNet(self.unet, control.inputs, sampling_steps=run[0])
                callback = _chain(unet.step_callback, callback)
            model = self._denoiser(config, unet, cond, uncond, cfg_scale, image_cond)
            if blend is not None:
                model = blend(model, run[1])
            # DifferentialBlend resets pixels of the sampler's state in place: the sampler starts from a copy.
            return function(model, x.clone(), *args, callback=callback, **kwargs), x, run[1]

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

    # --- public entry points ---------------------------------------------------------------------------------------

    @validated
    def txt2img(self, prompt: str, negative_prompt: str = "", *, steps: int = 20, sampler: str = "DPM++ 2M",
                scheduler: str = "Automatic", cfg_scale: float = 7.0, seed: int = -1, width: int = 512,
                height: int = 512, batch_size: int = 1, clip_skip: int = 1, rng_source: str = "CPU", subseed: int = -1,
                subseed_strength: float = 0.0, seed_resize_from: tuple[int, int] | None = None, ensd: int = 0,
                eta: float | None = None, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = 0.0,
                s_noise: float = 1.0, callback: Callable[[dict], Any] | None = None, progress: bool = False,
                controlnet: Any = None,
                controlnet_preprocessor: str = "inpaint_only", control_weight: float = 1.0,
                control_mode: str = "Balanced", guidance_start: float = 0.0, guidance_end: float = 1.0,
                controlnet_image: Image.Image | None = None, controlnet_mask: Image.Image | None = None,
                controlnet_lama: Any = None, controlnets: list[ControlNetUnit] | None = None) -> Result:
        """Text to image with A1111's UI defaults (DPM++ 2M, Automatic = Karras, 20 steps, CFG 7, 512×512).

        Noise settings (rng_source, subseed, subseed_strength, seed_resize_from, ensd) and ControlNet keywords as in
        `inpaint`; in txt2img a ControlNet unit needs its own image (`controlnet_image`).
        """
        units = controlnet_units(controlnet, controlnets=controlnets, controlnet_preprocessor=controlnet_preprocessor,
                                 control_weight=control_weight, control_mode=control_mode,
                                 guidance_start=guidance_start, guidance_end=guidance_end,
                                 controlnet_image=controlnet_image, controlnet_mask=controlnet_mask,
                                 controlnet_lama=controlnet_lama)
        sampler, schedule_label = resolve_sampler(sampler, scheduler)
        config = SAMPLER_CONFIGS[sampler]
        options, sampler_params = sampler_options(sampler, eta, s_churn, s_tmin, s_tmax, s_noise)
        processing_size((width, height), width, height)
        noise_cfg = noise_settings(seed, batch_size, subseed=subseed, subseed_strength=subseed_strength,
                                   seed_resize_from=seed_resize_from, rng_source=rng_source, ensd=ensd)
        seeds = noise_cfg.seeds
        lora_hashes = self._activate_prompt_networks(prompt)
        shape = (batch_size, 4, height // 8, width // 8)
        rng = noise_cfg.rng(shape[1:], self.device)
        control = self._prepare_units(units, width, height, seeds)
        noise = rng.next()
        if control is not None:
            noise = control.noise(noise)
        cond, uncond = self._conditioning(prompt, negative_prompt, batch_size, clip_skip, total_steps(sampler, steps),
                                          (width, height))
        image_cond = self._image_conditioning(None, None, shape, _posterior_generator(seeds), 1.0)
        samples, start, sigmas = self._sample(config, schedule_label, steps, noise, None, None, rng, seeds, cond, uncond,
                                              cfg_scale, image_cond, None, options, callback, progress, control)
        params = self._params(steps, sampler, schedule_label, cfg_scale, width, height, clip_skip, noise_cfg, eta)
        if self.config.is_inpainting:
            params["Conditional mask weight"] = 1.0
        # ControlNet writes its keys when the job is set up; the Lora hashes follow when the networks activate, the
        # sampler's keys while sampling (A1111).
        extra = {**_lora_extra({} if control is None else control.infotext, lora_hashes), **sampler_params}
        return self._finish(samples, noise_cfg, prompt, negative_prompt, params, extra, start_latent=start,
                            sigmas=sigmas, control=control)

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
                controlnet_lama: Any = None, controlnets: list[ControlNetUnit] | None = None) -> Result:
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
            `controlnet_lama` (for inpaint_only+lama: the LaMa function or a filled image); or `controlnets`, a list
            of `ControlNetUnit`s. With a mask, inpaint_only falls back to inpaint_global_harmonious (the extension's
            rule: A1111's own inpainting then keeps the unmasked area).

        Every setting is checked (and A1111's labels such as "latent noise", "Only masked" or "Inpaint not masked"
        accepted) by `inpaintlab.settings` before any work starts.
        """
        units = controlnet_units(controlnet, controlnets=controlnets, controlnet_preprocessor=controlnet_preprocessor,
                                 control_weight=control_weight, control_mode=control_mode,
                                 guidance_start=guidance_start, guidance_end=guidance_end,
                                 controlnet_image=controlnet_image, controlnet_mask=controlnet_mask,
                                 controlnet_lama=controlnet_lama)
        if not 0.0 <= denoising_strength <= 1.0:
            raise ValueError(f"denoising_strength must be in [0, 1], got {denoising_strength}")
        if soft_inpainting and differential_diffusion:
            raise ValueError("soft_inpainting and differential_diffusion are two different blends; choose one")
        soft = SoftInpaintingSettings(schedule_bias, preservation_strength, transition_contrast_boost, mask_influence,
                                      difference_threshold, difference_contrast) if soft_inpainting else None
        sampler, schedule_label = resolve_sampler(sampler, scheduler)
        config = SAMPLER_CONFIGS[sampler]
        if config.kind == "timesteps" and differential_diffusion:
            raise ValueError(f"differential_diffusion runs with the k-diffusion samplers, not {sampler}")
        options, sampler_params = sampler_options(sampler, eta, s_churn, s_tmin, s_tmax, s_noise)
        width, height = processing_size(image.size, width, height)
        noise_cfg = noise_settings(seed, batch_size, subseed=subseed, subseed_strength=subseed_strength,
                                   seed_resize_from=seed_resize_from, rng_source=rng_source, ensd=ensd)
        seeds = noise_cfg.seeds
        lora_hashes = self._activate_prompt_networks(prompt)

        # Soft inpainting switches mask rounding off before anything else runs (A1111 sets it in its `process` hook).
        mask_round = not (soft_inpainting or differential_diffusion)
        prep = prepare_inpaint(image, mask, width, height, mask_blur=mask_blur, mask_mode=mask_mode,
                               masked_content=masked_content, inpaint_area=inpaint_area, padding=padding,
                               resize_mode=resize_mode, fill_space=fill_space, mask_round=mask_round)
        image_mask = prep.image_mask
        extra = dict(soft.infotext()) if soft is not None and mask is not None else {}
        extra.update(prep.extra)
        if differential_diffusion and mask is not None:
            extra["Differential diffusion"] = True

        # Encode, then the latent mask and the latent stage of masked content.
        source = self.to_vae_input(image_to_tensor(prep.init))
        posterior_rng = _posterior_generator(seeds)
        init_latent = self.encode_image(source.expand(batch_size, -1, -1, -1), posterior_rng)
        shape = tuple(init_latent.shape)
        crop = None if prep.paste_to is None else (prep.paste_to[0], prep.paste_to[1], prep.paste_to[0] + prep.paste_to[2],
                                                    prep.paste_to[1] + prep.paste_to[3])
        job_mask = None
        if image_mask is not None:  # the extension reads A1111's mask itself (at the image's size, as prepare does)
            job_mask = mask if mask.size == image.size else mask.resize(image.size, Image.Resampling.LANCZOS)
        control = self._prepare_units(units, width, height, seeds, init=flatten(image), mask=job_mask,
                                      mask_blur=mask_blur, invert=mask_mode == "not_masked", crop=crop,
                                      resize_mode=resize_mode)
        rng = noise_cfg.rng(shape[1:], self.device)
        noise = rng.next()
        latent_mask = None
        if image_mask is not None:
            latent_mask = masking.latent_mask(image_mask, width, height, round=mask_round).to(self.device)
            latent_mask = latent_mask.expand(shape).contiguous()
            if masked_content == "fill" and fill_space == "latent":
                init_latent = masking.apply_masked_content("fill", init_latent, latent_mask)
            elif masked_content in ("latent_noise", "latent_nothing"):
                # A1111 draws this from a fresh generator per image seed, without variation seed or seed resize: the
                # same numbers as the first sampling noise when neither is used.
                fill_noise = noise if noise_cfg.plain else ImageRNG(shape[1:], seeds, self.device,
                                                                     source=noise_cfg.rng_source).next()
                init_latent = masking.apply_masked_content(masked_content, init_latent, latent_mask, fill_noise)
                extra["Masked content"] = masking.MASKED_CONTENT_LABELS[masked_content]
                if masked_content == "latent_noise":
                    posterior_rng = _posterior_generator(seeds)  # A1111 reseeds torch's global generator here
        image_cond = self._image_conditioning(source, image_mask, shape, posterior_rng, inpainting_mask_weight,
                                              mask_round)

        # Strength truncation, noise, sampling with the per-step blend, final blend.
        cond, uncond = self._conditioning(prompt, negative_prompt, batch_size, clip_skip, total_steps(sampler, steps),
                                          (width, height))
        if control is not None:
            noise = control.noise(noise)  # inpaint_only+lama: the sampling noise, not the masked-content noise
        blend = None
        if latent_mask is not None and soft is not None:
            # A1111's timestep samplers blend the model input, with their timestep where the others pass sigma
            before = config.kind == "timesteps"
            blend = lambda model, sigmas: SoftInpaintBlend(model, init_latent, latent_mask, soft,  # noqa: E731
                                                           mask_before_denoising=before)
        elif latent_mask is not None and differential_diffusion:
            blend = lambda model, sigmas: DifferentialBlend(model, init_latent, latent_mask, sigmas, noise)  # noqa: E731
        elif latent_mask is not None:
            # k-diffusion samplers blend the denoised estimate; A1111's timestep samplers blend the model input
            kind = InpaintBlendInput if config.kind == "timesteps" else InpaintBlend
            blend = lambda model, sigmas: kind(model, init_latent, latent_mask)  # noqa: E731
        samples, start, sigmas = self._sample(config, schedule_label, steps, noise, init_latent, denoising_strength, rng,
                                              seeds, cond, uncond, cfg_scale, image_cond, blend, options, callback,
                                              progress, control)
        if latent_mask is not None and soft is None and not differential_diffusion:
            samples = masking.blend_latents(samples, init_latent, latent_mask)

        params = self._params(steps, sampler, schedule_label, cfg_scale, width, height, clip_skip, noise_cfg, eta)
        params["Denoising strength"] = denoising_strength
        if self.config.is_inpainting:
            params["Conditional mask weight"] = inpainting_mask_weight
        if control is not None:
            extra.update(control.infotext)
        result = self._finish(samples, noise_cfg, prompt, negative_prompt, params,
                              {**_lora_extra(extra, lora_hashes), **sampler_params}, init_latent=init_latent,
                              start_latent=start, latent_mask=latent_mask, sigmas=sigmas,
                              repaint_mask=prep.repaint_mask, overlay_mask=prep.overlay_mask, control=control)
        if soft is not None and latent_mask is not None:
            # Rebuilt per image from the unmodified original and the raw samples (A1111's post-sample hook).
            source_image = overlay_source(flatten(image), width, height, resize_mode, prep.paste_to is not None)
            overlays, masks = soft_overlays(source_image, latent_mask, init_latent, samples, soft, width, height,
                                            prep.paste_to)
            result.images = [masking.apply_overlay(img, overlay, prep.paste_to)
                             for img, overlay in zip(result.images, overlays)]
            result.overlay_mask, result.overlay_masks = masks[0], masks
        elif prep.overlay is not None:
            result.images = [masking.apply_overlay(img, prep.overlay, prep.paste_to) for img in result.images]
            result.overlay_masks = [prep.overlay_mask] * len(result.images)
        return result

    def inpaint_sketch(self, image: Image.Image, sketch: Image.Image, prompt: str, negative_prompt: str = "", *,
                       mask_alpha: float = 0.0, mask_blur: int = 4, **settings: Any) -> Result:
        """A1111's "Inpaint sketch": the mask is wherever `sketch` differs from `image`, and the strokes (blurred by
        `mask_blur`) are composited into the image before inpainting. `mask_alpha` is the UI's mask transparency (%)."""
        composited, mask = masking.inpaint_sketch(image, sketch, mask_blur, mask_alpha)
        return self.inpaint(composited, mask, prompt, negative_prompt, mask_blur=mask_blur, **settings)

    # --- helpers ---------------------------------------------------------------------------------------------------

    def _used_embeddings(self, texts: list[str]) -> list[str]:
        """Embedding names one encoder call over `texts` uses, in A1111's order (chunk by chunk, then by text)."""
        if not self.embeddings:
            return []
        embeddings = self.embeddings
        if self.config.family == "sdxl":  # {"clip_l", "clip_g"} pairs: CLIP-L's vectors place them the same way
            embeddings = {name: pair["clip_l"] for name, pair in embeddings.items()}
        per_text = [tokenize_prompt(self.tokenizer, text, embeddings) for text in dict.fromkeys(texts)]
        names: dict[str, None] = {}
        for i in range(max(len(chunks) for chunks in per_text)):
            for chunks in per_text:
                for fix in chunks[i].fixes if i < len(chunks) else ():
                    names[fix.name] = None
        return list(names)

    def _ti_hashes(self, cond_texts: list[str], uncond_texts: list[str]) -> str | None:
        """A1111's "TI hashes": `name: sha256[:12]` of each embedding file used, the prompt's first, then the negative
        prompt's (A1111 encodes the negative prompt first and prepends each later call's hashes); None if unused."""
        entries = []
        for texts in (cond_texts, uncond_texts):
            for name in self._used_embeddings(texts):
                path = self.embedding_files.get(name)
                if path is None:
                    continue  # given as a tensor, not loaded from a file: nothing to hash
                if name not in self._embedding_hashes:
                    self._embedding_hashes[name] = file_sha256(path)[:12]
                entries.append(f"{name.replace(':', '').replace(',', '')}: {self._embedding_hashes[name]}")
        return ", ".join(entries) or None

    def _conditioning(self, prompt: str, negative_prompt: str, batch: int, clip_skip: int, steps: int,
                      size: tuple[int, int] | None = None):
        """(cond, uncond) tensors for fixed prompts, or (ScheduledConditioning, None) when a prompt uses prompt
        editing, alternation, ``AND`` or a ``:weight`` suffix (A1111 step 12). `size`: the processing (width, height),
        which SDXL's size conditioning takes in every mode."""
        # Network tags leave the positive prompt only; in the negative prompt they stay text (A1111).
        prompt, negative_prompt = strip_networks(strip_comments(prompt)), strip_comments(negative_prompt)
        # Schedules span the user's step count (doubled for second-order samplers, whose schedules A1111 indexes by
        # denoiser call), not the truncated img2img run.
        parts = split_and(prompt)
        cond_schedules = [get_prompt_schedule(text, steps) for text, _ in parts]
        uncond_schedule = get_prompt_schedule(negative_prompt, steps)
        if (parts == [(prompt, 1.0)] and cond_schedules == [[(steps, prompt)]]
                and uncond_schedule == [(steps, negative_prompt)]):
            cond = self.encode_prompts([prompt] * batch, clip_skip, size=size)
            uncond = self.encode_prompts([negative_prompt] * batch, clip_skip, negative=True, size=size)
            return cond, uncond

        # Like A1111, each distinct (sub-)prompt is encoded once, all its schedule texts in one batch (emphasis
        # "Original" restores the mean over that whole batch, and shorter texts get empty chunks).
        cache: dict[tuple[str, bool], list[tuple[int, Any]]] = {}

        def encoded(text: str, schedule: list[tuple[int, str]], negative: bool = False) -> list[tuple[int, Any]]:
            if (text, negative) not in cache:
                z = self.encode_prompts([variant for _, variant in schedule], clip_skip, negative=negative, size=size)
                rows = ({k: v[i : i + 1] for k, v in z.items()} if isinstance(z, dict) else z[i : i + 1]
                        for i in range(len(schedule)))
                cache[text, negative] = [(end_at_step, row) for (end_at_step, _), row in zip(schedule, rows)]
            return cache[text, negative]

        conds = [encoded(text, schedule) for (text, _), schedule in zip(parts, cond_schedules)]
        uncond = encoded(negative_prompt, uncond_schedule, negative=True)
        return ScheduledConditioning(conds, [weight for _, weight in parts], uncond), None

    def _params(self, steps, sampler, schedule_label, cfg_scale, width, height, clip_skip,
                noise_cfg: NoiseSettings, eta: float | None = None) -> dict[str, Any]:
        return {
            "Steps": steps, "Sampler": sampler, "Schedule type": schedule_label,
            "CFG scale": int(cfg_scale) if float(cfg_scale).is_integer() else cfg_scale,
            "Size": f"{width}x{height}", "Model hash": self.config.model_hash, "Model": self.config.model_name,
            "VAE hash": self.config.vae_hash, "VAE": self.config.vae_name,
            "Clip skip": clip_skip if clip_skip > 1 else None, **noise_cfg.params(sampler, eta),
        }

    def _prepare_units(self, units: list[ControlNetUnit], width: int, height: int, seeds: list[int], *,
                       init: Image.Image | None = None, mask: Image.Image | None = None, mask_blur: int = 0,
                       invert: bool = False, crop: tuple[int, int, int, int] | None = None,
                       resize_mode: int = 0) -> PreparedUnits | None:
        if not units:
            return None
        if self.config.family != "sd1":
            raise ValueError(f"ControlNet units need an SD 1.x checkpoint; this one is "
                             f"{FAMILY_LABELS[self.config.family]}")
        dtype = next(self.unet.parameters()).dtype

        def load(model):
            return get_model(model, self._controlnets, self.device, dtype, self.unet.kernels)

        def encode(x: torch.Tensor) -> torch.Tensor:
            # A1111 samples these posteriors from its global generator; see _posterior_generator for our choice.
            return self.encode_image(x.to(self.device, self._vae_dtype()), _posterior_generator(seeds))

        return prepare_units(units, width=width, height=height, encode=encode, load=load,
                             unet_channels=self.unet.config.in_channels, init=init, mask=mask, mask_blur=mask_blur,
                             invert=invert, crop=crop, a1111_resize_mode=resize_mode)

    def _finish(self, samples, noise_cfg: NoiseSettings, prompt, negative_prompt, params, extra, control=None,
                **latents) -> Result:
        prompt, negative_prompt = strip_comments(prompt), strip_comments(negative_prompt)
        if self.embeddings:
            cond_texts = [variant for text, _ in split_and(prompt)
                          for _, variant in get_prompt_schedule(text, params["Steps"])]
            uncond_texts = [variant for _, variant in get_prompt_schedule(negative_prompt, params["Steps"])]
            extra = {**extra, "TI hashes": self._ti_hashes(cond_texts, uncond_texts)}
        subseeds = noise_cfg.subseeds or [None] * len(noise_cfg.seeds)
        infotexts = [build_infotext(prompt, negative_prompt, {**params, "Seed": s, "Variation seed": sub}, extra,
                                    version=VERSION_TAG)
                     for s, sub in zip(noise_cfg.seeds, subseeds)]
        postprocess = None if control is None or not control.paste else control.postprocess
        return Result(self.decode_latents(samples, postprocess), infotexts, noise_cfg.seeds, noise_cfg.subseeds,
                      samples=samples, **latents)


def _chain(first: Callable[[dict], Any], second: Callable[[dict], Any] | None) -> Callable[[dict], Any]:
    def callback(d: dict) -> None:
        first(d)
        if second is not None:
            second(d)
    return callback


def controlnet_units(controlnet: Any = None, *, controlnets: list[ControlNetUnit] | None = None,
                     controlnet_preprocessor: str = "inpaint_only", control_weight: float = 1.0,
                     control_mode: str = "Balanced", guidance_start: float = 0.0, guidance_end: float = 1.0,
                     controlnet_image: Image.Image | None = None, controlnet_mask: Image.Image | None = None,
                     controlnet_lama: Any = None) -> list[ControlNetUnit]:
    """The ControlNet units of a call: `controlnets`, or one unit from the single-unit keywords."""
    single = dict(preprocessor=controlnet_preprocessor, weight=control_weight, control_mode=control_mode,
                  guidance_start=guidance_start, guidance_end=guidance_end, image=controlnet_image,
                  mask=controlnet_mask, lama=controlnet_lama)
    if controlnets is not None:
        if controlnet is not None:
            raise ValueError("pass either `controlnet` (one unit) or `controlnets` (a list of units), not both")
        bad = [u for u in controlnets if not isinstance(u, ControlNetUnit)]
        if bad:
            raise TypeError(f"controlnets must hold ControlNetUnit objects, got {type(bad[0]).__name__}")
        return list(controlnets)
    if controlnet is None:
        return []
    return [ControlNetUnit(controlnet, **single)]


def _lora_extra(extra: dict[str, Any], hashes: dict[str, str]) -> dict[str, Any]:
    """A1111's `Lora hashes: "name: hash12, ..."`, after the keys set before the networks are activated."""
    if not hashes:
        return extra
    return {**extra, "Lora hashes": ", ".join(f"{name}: {h}" for name, h in hashes.items())}


def main(argv: list[str] | None = None) -> int:
    """The `inpaintlab` command; argument parsing lives in `inpaintlab.cli`."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
