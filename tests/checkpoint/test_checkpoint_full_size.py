"""The full SD1.5-inpainting key layout (shapes only, on the meta device) passes split, config inference and the
strict key/shape check, and comes out as SD1.5's configs.

VAE and CLIP keys come from the manifests in tests/data (cross-checked against published listings there); the
UNet keys from the UNet built on the meta device, checked against the published facts (686 keys, conv_in
[320, 9, 3, 3] for inpainting).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from inpaintlab.checkpoint import (
    CLIP_PREFIX, SCHEDULE_BUFFERS, UNET_PREFIX, VAE_PREFIX, load_component, split_state_dict,
)
from inpaintlab.clip.model import CLIPTextConfig, CLIPTextTransformer
from inpaintlab.unet import UNetConfig, UNetModel
from inpaintlab.vae import AutoencoderKL, VAEConfig

DATA = Path(__file__).resolve().parents[1] / "data"
_LINE = re.compile(r"^(\S+) \[([\d, ]*)\]$")


def manifest(name: str, prefix: str) -> dict[str, torch.Tensor]:
    sd = {}
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = _LINE.match(line).groups()
            key = key if key.startswith(prefix) else prefix + key
            sd[key] = torch.empty([int(s) for s in shape.split(",") if s.strip()], device="meta")
    return sd


def meta_state_dict(module_cls, config, prefix: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return {prefix + k: v for k, v in module_cls(config).state_dict().items()}


def test_sd15_inpainting_layout():
    unet = meta_state_dict(UNetModel, UNetConfig(in_channels=9), UNET_PREFIX)
    assert len(unet) == 686 and unet[UNET_PREFIX + "input_blocks.0.0.weight"].shape == (320, 9, 3, 3)
    vae = manifest("sd15_vae_keys.txt", VAE_PREFIX)
    clip = manifest("sd15_clip_keys.txt", CLIP_PREFIX)
    assert (len(vae), len(clip)) == (248, 197)
    extras = {name: torch.empty(1000, device="meta") for name in (*SCHEDULE_BUFFERS, "logvar")}
    extras |= {"model_ema.decay": torch.empty((), device="meta"), "model_ema.num_updates": torch.empty((), device="meta")}
    sd = unet | vae | clip | extras
    assert len(sd) == 1131 + 15

    parts = split_state_dict(sd, source="sd-v1-5-inpainting (shapes)")
    assert (len(parts.unet), len(parts.vae), len(parts.text_encoder)) == (686, 248, 196)
    configs = (UNetConfig.from_state_dict(parts.unet), VAEConfig.from_state_dict(parts.vae),
               CLIPTextConfig.from_state_dict(parts.text_encoder))
    assert configs == (UNetConfig(in_channels=9), VAEConfig(), CLIPTextConfig())
    for (cls, component), config, part in zip(((UNetModel, "unet"), (AutoencoderKL, "vae"),
                                               (CLIPTextTransformer, "text_encoder")), configs, parts[:3]):
        with torch.device("meta"):
            load_component(cls(config), part, component)
