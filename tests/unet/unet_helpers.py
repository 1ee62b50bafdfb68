"""UNet test helpers: tiny configs, visible re-initialisation, diffusers' own ldm converter as the oracle."""
from __future__ import annotations


import pytest

from inpaintlab.tiny import reinit_  # noqa: F401  (spec checkpoints.md §6.3 re-initialisation, shared)
from inpaintlab.unet import UNetConfig

PREFIX = "model.diffusion_model."


def tiny_config(in_channels: int = 4, num_res_blocks: int = 2) -> UNetConfig:
    # Widths 32/64/64: level 2 keeps 64 channels (no skip conv there), attention at the two upper levels only,
    # 8 heads as in SD1 (head dims 4 and 8), context 64 wide.
    return UNetConfig(in_channels=in_channels, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=num_res_blocks,
                      attention_resolutions=(2, 1), num_heads=8, context_dim=64)


def original_config(cfg: UNetConfig) -> dict:
    """The parts of a v1-inference.yaml (as a dict) that diffusers' single-file converter reads, with cfg's widths."""
    unet = {
        "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "model_channels": cfg.model_channels,
        "attention_resolutions": list(cfg.attention_resolutions), "num_res_blocks": cfg.num_res_blocks,
        "channel_mult": list(cfg.channel_mult), "num_heads": cfg.num_heads, "use_spatial_transformer": True,
        "transformer_depth": cfg.transformer_depth, "context_dim": cfg.context_dim, "use_checkpoint": True,
        "legacy": False,
    }
    vae = {"embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                                        "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                        "attn_resolutions": [], "dropout": 0.0}}
    return {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": 64, "channels": 4,
        "conditioning_key": "hybrid" if cfg.is_inpainting else "crossattn", "scale_factor": 0.18215,
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": vae}}}}


def diffusers_convert(checkpoint: dict, cfg: UNetConfig) -> tuple[dict, dict]:
    """Run diffusers' ldm -> diffusers UNet conversion on a prefixed checkpoint; returns (diffusers config, state)."""
    single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")
    dconfig = single_file_utils.create_unet_diffusers_config_from_ldm(original_config(cfg), checkpoint)
    return dconfig, single_file_utils.convert_ldm_unet_checkpoint(checkpoint, dconfig)
