"""Read Stable Diffusion single-file checkpoints (SD 1.x, SD 2.x, SDXL) and standalone VAE files, tell the model
family apart, split the file by prefix and load each network strictly.

A single-file checkpoint holds the networks under fixed prefixes:

    model.diffusion_model.                            UNet                 (every family)
    first_stage_model.                                VAE                  (every family)
    cond_stage_model.transformer.text_model.          CLIP ViT-L/14        (SD 1.x)
    cond_stage_model.model.                           OpenCLIP ViT-H/14    (SD 2.x)
    conditioner.embedders.0.transformer.text_model.   CLIP ViT-L/14        (SDXL)
    conditioner.embedders.1.model.                    OpenCLIP ViT-bigG/14 (SDXL)
    conditioner.embedders.0.model.                    OpenCLIP ViT-bigG/14 (SDXL refiner, its only encoder)

The modules carry the file's key names, so loading is "strip the prefix, check every shape, load_state_dict(strict)".
Keys outside the family's prefixes must be on the explicit allow-list below; anything else is an error, because a
silently ignored key is how a wrong architecture or a broken merge goes unnoticed. Families inpaintlab does not run
(SD3, Flux, unCLIP, depth, instruct-pix2pix, ...) and diffusers layouts are refused by name.

Files are only ever read: safetensors tensor by tensor with plain reads (no memory map, so resident memory is the
tensors themselves), pickles (`.ckpt`/`.pt`/`.pth`/`.bin`) only on request and then with
`torch.load(weights_only=True)`.

Files: `layout` (the prefixes, allow-list and refused families), `read` (reading files, hashes), `family` (family
detection, splitting by prefix, VAE files), `load` (building and strictly loading the networks).
"""
from __future__ import annotations

from .family import (
    check_architecture,
    detect_family,
    read_vae,
    split_state_dict,
)
from .layout import (
    CLIP_OLD_PREFIX,
    CLIP_POSITION_IDS,
    CLIP_PREFIX,
    CLIP_PREFIXES,
    FAMILIES,
    FAMILY_LABELS,
    IGNORED_KEYS,
    IGNORED_PREFIXES,
    OPENCLIP_IGNORED,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    SCALE_FACTOR,
    SCHEDULE_BUFFERS,
    SD2_TEXT_PREFIX,
    SDXL_CLIP_G_PREFIX,
    SDXL_CLIP_L_PREFIX,
    SDXL_IGNORED_KEYS,
    SDXL_REFINER_CLIP_G_PREFIX,
    SDXL_SCALE_FACTOR,
    UNET_PREFIX,
    VAE_FILE_PREFIXES,
    VAE_PREFIX,
    CheckpointError,
    Components,
)
from .load import (  # noqa: F401 (_check_fit: tested directly)
    _check_fit,
    Models,
    is_v_prediction,
    load_component,
    load_models,
    load_vae_file,
)
from .read import (
    existing_file,
    file_sha256,
    legacy_model_hash,
    read_state_dict,
    short_hash,
)

__all__ = [
    "CLIP_OLD_PREFIX", "CLIP_POSITION_IDS", "CLIP_PREFIX", "CLIP_PREFIXES", "FAMILIES", "FAMILY_LABELS",
    "IGNORED_KEYS", "IGNORED_PREFIXES", "OPENCLIP_IGNORED", "PICKLE_SUFFIXES", "SAFETENSORS_SUFFIXES",
    "SCALE_FACTOR", "SCHEDULE_BUFFERS", "SD2_TEXT_PREFIX", "SDXL_CLIP_G_PREFIX", "SDXL_CLIP_L_PREFIX",
    "SDXL_IGNORED_KEYS",
    "SDXL_REFINER_CLIP_G_PREFIX", "SDXL_SCALE_FACTOR", "UNET_PREFIX", "VAE_FILE_PREFIXES", "VAE_PREFIX", "CheckpointError",
    "Components", "Models", "check_architecture", "detect_family", "existing_file", "file_sha256", "is_v_prediction",
    "legacy_model_hash", "load_component", "load_models", "load_vae_file", "read_state_dict", "read_vae", "short_hash",
    "split_state_dict"
]
