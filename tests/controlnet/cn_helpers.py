"""ControlNet test helpers: small configs in the SD1 layout, diffusers' own single-file ControlNet conversion."""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from unittest import mock

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unet"))
from unet_helpers import diffusers_convert, original_config  # noqa: E402

from inpaintlab.controlnet import ControlNet, ControlNetConfig  # noqa: E402
from inpaintlab.tiny import reinit_  # noqa: E402
from inpaintlab.unet import UNetConfig, UNetModel  # noqa: E402

PREFIX = "control_model."

# SD1's four levels and 13 residuals (attention at the first three levels, none at the last), widths 32/64/64/64,
# 8 heads, context 64; the hint encoder keeps SD1's widths 16/32/96/256.
SMALL_UNET = UNetConfig(in_channels=4, model_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                        attention_resolutions=(1, 2, 4), num_heads=8, context_dim=64)
SMALL_CN = ControlNetConfig(unet=SMALL_UNET)


def small_controlnet(seed: int = 0) -> ControlNet:
    return reinit_(ControlNet(SMALL_CN), seed).eval()


def small_unet(seed: int = 1, in_channels: int = 4) -> UNetModel:
    return reinit_(UNetModel(UNetConfig(**{**SMALL_UNET.__dict__, "in_channels": in_channels})), seed).eval()


def diffusers_controlnet(model: ControlNet, path: Path):
    """Save `model` in the original layout (control_model.*), read the file back, convert it with diffusers'
    single-file ControlNet converter and load it strictly into diffusers.ControlNetModel."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    diffusers = pytest.importorskip("diffusers")
    sfu = pytest.importorskip("diffusers.loaders.single_file_utils")
    safetensors_torch.save_file({PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    checkpoint = safetensors_torch.load_file(str(path))
    original = original_config(model.config.unet)
    original["model"]["params"]["control_stage_config"] = {
        "target": "cldm.cldm.ControlNet", "params": {"hint_channels": model.config.hint_channels}}
    # diffusers 0.42.1's create_controlnet_diffusers_config_from_ldm calls create_unet_diffusers_config_from_ldm
    # without its `checkpoint` argument (a TypeError); it is supplied here, the rest is diffusers' own code.
    unet_config = sfu.create_unet_diffusers_config_from_ldm
    with mock.patch.object(sfu, "create_unet_diffusers_config_from_ldm", partial(unet_config, checkpoint=checkpoint)):
        dconfig = sfu.create_controlnet_diffusers_config_from_ldm(original, checkpoint)
    dconfig["conditioning_embedding_out_channels"] = model.config.hint_widths
    converted = sfu.convert_controlnet_checkpoint(checkpoint, dconfig)
    ref = diffusers.ControlNetModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def diffusers_unet(model: UNetModel, tmp_path: Path):
    diffusers = pytest.importorskip("diffusers")
    sd = {"model.diffusion_model." + k: v for k, v in model.state_dict().items()}
    dconfig, converted = diffusers_convert(sd, model.config)
    ref = diffusers.UNet2DConditionModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def inputs(cfg: UNetConfig, seed: int = 1, b: int = 2, hw: tuple[int, int] = (8, 16), tokens: int = 77):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.in_channels, *hw, generator=g)
    t = torch.tensor([999.0, 17.25, 500.5, 3.0][:b])
    context = torch.randn(b, tokens, cfg.context_dim, generator=g)
    hint = torch.rand(1, 3, hw[0] * 8, hw[1] * 8, generator=g)
    hint[:, :, : hw[0] * 4] = -1.0  # the inpaint protocol's masked value
    return x, t, context, hint
