"""Original configs (v2-inference.yaml, sd_xl_base.yaml as dicts) for diffusers' single-file UNet converter."""
from __future__ import annotations

import pytest

from inpaintlab.unet import UNetConfig


def original_config(cfg: UNetConfig) -> dict:
    """The yaml fields diffusers' `create_unet_diffusers_config_from_ldm` reads, with cfg's architecture.

    SD2 (v2-inference.yaml): num_head_channels 64, use_linear_in_transformer, context 1024. SDXL (sd_xl_base.yaml):
    per-level transformer depths, num_classes "sequential" with adm_in_channels; diffusers makes the ADM input SDXL's
    "text_time" embedding only for context widths 2048 or 1280, so tiny SDXL test models use 1280.
    """
    unet = {
        "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "model_channels": cfg.model_channels,
        "attention_resolutions": list(cfg.attention_resolutions), "num_res_blocks": cfg.num_res_blocks,
        "channel_mult": list(cfg.channel_mult), "num_head_channels": cfg.num_head_channels,
        "use_linear_in_transformer": cfg.use_linear_in_transformer, "use_spatial_transformer": True,
        "transformer_depth": (cfg.transformer_depth if isinstance(cfg.transformer_depth, int)
                              else list(cfg.transformer_depth)),
        "context_dim": cfg.context_dim, "use_checkpoint": True, "legacy": False,
    }
    if cfg.adm_in_channels is not None:
        unet |= {"num_classes": "sequential", "adm_in_channels": cfg.adm_in_channels}
    vae = {"embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                                        "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                        "attn_resolutions": [], "dropout": 0.0}}
    return {"model": {"params": {
        "unet_config": {"params": unet}, "first_stage_config": {"params": vae}}}}


def diffusers_convert(checkpoint: dict, cfg: UNetConfig) -> tuple[dict, dict]:
    """diffusers' own ldm -> diffusers UNet conversion of a prefixed checkpoint: (diffusers config, state dict)."""
    single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")
    dconfig = single_file_utils.create_unet_diffusers_config_from_ldm(original_config(cfg), checkpoint)
    if cfg.adm_in_channels is not None:
        assert dconfig["addition_embed_type"] == "text_time", "diffusers did not recognise the SDXL ADM input"
    return dconfig, single_file_utils.convert_ldm_unet_checkpoint(checkpoint, dconfig)
