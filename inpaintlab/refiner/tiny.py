"""A tiny random SDXL refiner in the real single-file layout (`inpaintlab tiny` writes it next to tiny SDXL).

The refiner's structure at small width (its published UNet: 384 channels, mult 1/2/4/4, transformers of depth 4 at
levels 1 and 2 and in the middle, 64-channel heads, Linear projections, ADM 2560 = pooled 1280 + 5 x 256): here 32
channels, mult 1/2/2/2, depth 1, context = the tiny OpenCLIP bigG width, ADM = its projection + 5 x 256. The text
tower is `tiny.TINY_OPENCLIP` under `conditioner.embedders.0.model.`, the VAE `tiny.TINY_VAE` (SDXL's refiner and
base share a VAE; with the same seed the tiny ones do too).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import SDXL_REFINER_CLIP_G_PREFIX, UNET_PREFIX, VAE_PREFIX
from ..clip.openclip import OpenCLIPTextTransformer
from ..tiny import TINY_OPENCLIP, TINY_VAE, _build, _check_suffix, _save, _stored
from ..unet import UNetConfig, UNetModel
from ..vae import AutoencoderKL
from .conditioning import REFINER_SIZE_FEATURES

TINY_REFINER_UNET = UNetConfig(model_channels=64, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                               attention_resolutions=(4, 2), num_head_channels=64, use_linear_in_transformer=True,
                               transformer_depth=1, context_dim=TINY_OPENCLIP.width,
                               adm_in_channels=TINY_OPENCLIP.projection_dim + REFINER_SIZE_FEATURES)
TINY_REFINER_FILES = {"tiny-sdxl-refiner.safetensors": False}  # file name -> 9-channel UNet


def build_tiny_refiner_models(*, inpainting: bool = False, seed: int = 0,
                              kernels: str = "torch") -> dict[str, nn.Module]:
    """{"unet", "vae", "text_encoder"} that `make_tiny_refiner` saves for the same `inpainting` and `seed`."""
    config = dataclasses.replace(TINY_REFINER_UNET, in_channels=9 if inpainting else 4)
    return {"unet": _build(UNetModel, config, seed, "unet", kernels),
            "vae": _build(AutoencoderKL, TINY_VAE, seed, "vae", kernels),
            "text_encoder": _build(OpenCLIPTextTransformer, TINY_OPENCLIP, seed, "text_encoder_2", kernels)}


def tiny_refiner_state_dict(models: dict[str, nn.Module], *, dtype: torch.dtype = torch.float32
                            ) -> dict[str, torch.Tensor]:
    """The refiner's single-file layout (as sd_xl_refiner_1.0: bigG as embedder 0, its logit_scale, no schedule)."""
    sd: dict[str, torch.Tensor] = {}
    for prefix, name in ((UNET_PREFIX, "unet"), (VAE_PREFIX, "vae"), (SDXL_REFINER_CLIP_G_PREFIX, "text_encoder")):
        sd.update({prefix + k: _stored(v, dtype) for k, v in models[name].state_dict().items()})
    sd[SDXL_REFINER_CLIP_G_PREFIX + "logit_scale"] = torch.tensor(4.6052)
    return sd


def make_tiny_refiner(path: str | Path, *, inpainting: bool = False, seed: int = 0,
                      dtype: torch.dtype = torch.float32) -> Path:
    """Write a tiny SDXL refiner checkpoint (4- or 9-channel UNet) and return its path."""
    path = _check_suffix(path)
    models = build_tiny_refiner_models(inpainting=inpainting, seed=seed)
    return _save(tiny_refiner_state_dict(models, dtype=dtype), path)


def write_tiny_refiner_files(folder: str | Path, seed: int = 0) -> list[Path]:
    """The tiny SDXL refiner (`TINY_REFINER_FILES`) in `folder`."""
    return [make_tiny_refiner(Path(folder) / name, inpainting=inpainting, seed=seed)
            for name, inpainting in TINY_REFINER_FILES.items()]
