"""What a single-file checkpoint holds: the prefixes of each family's networks, the keys allowed beside them,
the families refused by name; the error type and the split result."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

import torch

from ..errors import CheckpointError  # noqa: F401 - imported from here by the checkpoint modules

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
# Old transformers saves lack the `text_model.` level; it is inserted (A1111 and diffusers do the same).
CLIP_OLD_PREFIX = "cond_stage_model.transformer."
CLIP_PREFIXES = (CLIP_PREFIX, CLIP_OLD_PREFIX)
# Standalone VAE files: no prefix (vae-ft-mse-840000), the checkpoint prefix, or diffusers' single-file "vae.".
VAE_FILE_PREFIXES = ("", VAE_PREFIX, "vae.")

SCALE_FACTOR = 0.18215  # v1-inference.yaml scale_factor: latents are VAE samples times this

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# --- Allow-list: keys that may sit in an SD1 file next to the three networks and are ignored (debug-logged). ---
# The 12 DDPM schedule buffers of ldm's LatentDiffusion, each [1000]. The sampler schedule is always rebuilt from
# the constants (SD1's scaled-linear betas, 0.00085 to 0.012 over 1000 steps): many community files lack these, and
# merges may carry averaged values.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)
IGNORED_KEYS = frozenset(SCHEDULE_BUFFERS) | {
    "logvar",                 # [1000] learned-variance buffer, unused by eps-prediction sampling
    "model_ema.decay",        # LitEma scalars
    "model_ema.num_updates",
}
# LitEma's copy of the UNet ("model_ema.diffusion_modelinput_blocks00weight", dots removed). In emaonly files the EMA
# weights already sit under model.diffusion_model.; A1111 ignores the copy too (use_ema: False).
IGNORED_PREFIXES = ("model_ema.",)
# Stored position_ids are ignored: the text encoder always uses arange(77) (some merges hold drifted floats).
CLIP_POSITION_IDS = "embeddings.position_ids"

# Top-level names of a VAE state dict without prefix.
_VAE_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
# Segment names that exist only in diffusers' vocabulary (ldm says input_blocks/middle_block/down/up/mid).
_DIFFUSERS_KEY = re.compile(r"(^|\.)(down_blocks|up_blocks|mid_block|time_embedding|conv_norm_out)\.")
SD2_TEXT_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H (SD2.x)
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."
# The SDXL refiner's only text encoder, OpenCLIP bigG, is its conditioner's first embedder.
SDXL_REFINER_CLIP_G_PREFIX = "conditioner.embedders.0.model."
# Scalars of the OpenCLIP towers with no role in text encoding (CLIP's contrastive temperature).
OPENCLIP_IGNORED = ("logit_scale",)
# sgm's DiscreteDenoiser keeps its sigma table as a buffer; the schedule is rebuilt from the constants like SD1's.
SDXL_IGNORED_KEYS = frozenset({"denoiser.sigmas"})

SDXL_SCALE_FACTOR = 0.13025  # sd_xl_base.yaml first_stage scale_factor

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")
FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sdxl_refiner": "SDXL refiner"}

_SUPPORTED = ("inpaintlab supports Stable Diffusion 1.x, 2.x (512 eps, 768-v), SDXL base and SDXL refiner single-file "
              "checkpoints (the 9-channel inpainting UNets included)")

# Other model families, recognised so that the refusal names them (checked in this order, first hit wins).
_OTHER_FAMILIES = (
    ("model.diffusion_model.x_embedder.proj.weight", "Stable Diffusion 3 (MMDiT)"),
    ("model.diffusion_model.joint_blocks.", "Stable Diffusion 3 (MMDiT)"),
    ("joint_blocks.0.context_block.", "Stable Diffusion 3 (MMDiT)"),
    ("model.diffusion_model.double_blocks.", "Flux"),
    ("double_blocks.0.img_attn.", "Flux"),
    ("edm_mean", "Playground v2.5 (EDM)"),
    ("embedder.model.ln_final.weight", "SD 2.x unCLIP"),
    ("depth_model.", "SD 2.0 depth"),
    ("cond_stage_model.roberta.", "AltDiffusion"),
    ("clip_txt_mapper.", "Stable Cascade"),
    ("down_blocks.1.0.channelwise.", "Stable Cascade"),
)
# Add-on networks, named when a file holds them instead of a UNet.
_ADD_ON_FILES = (("control_model.", "ControlNet"), ("lora_unet_", "LoRA"), ("lora_te", "LoRA"))


class Components(NamedTuple):
    """Prefix-stripped state dicts of the networks (keys relative to each module).

    text_encoder: CLIP-L (SD1, SDXL's first encoder) or OpenCLIP ViT-H (SD2); text_encoder_2: SDXL's OpenCLIP bigG.
    """

    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    text_encoder_prefix: str = CLIP_PREFIX  # as the keys appear in the file (for messages)
    family: str = "sd1"
    text_encoder_2: dict[str, torch.Tensor] | None = None
    text_encoder_2_prefix: str | None = None


# ------------------------------------------------------------------------------------------------ reading files


def _preview(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
