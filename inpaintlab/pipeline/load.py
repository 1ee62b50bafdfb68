"""Loading a checkpoint into a ready `Pipeline`, and the pipeline's fixed configuration."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .._version import __version__
from ..checkpoint import load_models
from ..clip import load_embeddings, load_sdxl_embeddings

VERSION_TAG = f"inpaintlab-{__version__}"  # A1111 writes its git tag; ours names the library


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    scale_factor: float
    is_inpainting: bool
    model_name: str | None = None
    model_hash: str | None = None
    vae_name: str | None = None
    vae_hash: str | None = None
    family: str = "sd1"       # "sd1", "sd2", "sdxl" or "sdxl_refiner"
    prediction: str = "eps"   # "eps" or "v" (SD 2.x 768-v): which k-diffusion denoiser wraps the UNet


def load(path: str | Path, vae: str | Path | None = None, device: str | torch.device = "cpu",
         dtype: torch.dtype | None = torch.float32, kernels: str = "auto", *,
         embeddings_dir: str | Path | None = None, lora_dir: str | Path | None = None,
         allow_pickle: bool = False):
    """Load a single-file SD 1.x, SD 2.x (512 eps or 768-v), SDXL (base or inpainting) or SDXL refiner checkpoint, and
    optionally a separate VAE, into a ready `Pipeline`. `dtype` None keeps the file's own dtype (least memory).

    lora_dir: directory of LoRA/LyCORIS files that `<lora:name:…>` prompt tags name (A1111's `--lora-dir`).
    """
    from .pipeline import Pipeline

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


def load_like(pipe, path: str | Path, vae: str | Path | None = None):
    """Another checkpoint loaded the way `pipe` was: on its device, in its UNet's dtype, with its kernels and LoRA
    folder (a refiner, an ADetailer tab's own checkpoint)."""
    return load(path, vae=vae, device=pipe.device, dtype=next(pipe.unet.parameters()).dtype,
                kernels=getattr(pipe.unet, "kernels", "auto"), lora_dir=pipe.lora_dir)
