"""UNetConfig: defaults, validation, and inference from state-dict shapes (round trips and rejected layouts)."""
from __future__ import annotations

import pytest
import torch
from unet_helpers import tiny_config

from inpaintlab.unet import UNetConfig, UNetModel


def meta_state_dict(cfg: UNetConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return UNetModel(cfg).state_dict()


def test_sd15_defaults():
    cfg = UNetConfig()
    assert (cfg.in_channels, cfg.out_channels, cfg.model_channels, cfg.channel_mult, cfg.num_res_blocks,
            cfg.attention_resolutions, cfg.num_heads, cfg.transformer_depth, cfg.context_dim) == \
        (4, 4, 320, (1, 2, 4, 4), 2, (4, 2, 1), 8, 1, 768)
    assert not cfg.is_inpainting and UNetConfig(in_channels=9).is_inpainting
    assert cfg.widths == (320, 640, 1280, 1280) and cfg.downsample_factor == 8
    with pytest.raises(AttributeError):
        cfg.in_channels = 9  # frozen


@pytest.mark.parametrize("cfg", [
    UNetConfig(),
    UNetConfig(in_channels=9),
    tiny_config(4, 2),
    tiny_config(9, 1),
    UNetConfig(model_channels=64, channel_mult=(1, 3), num_res_blocks=1, attention_resolutions=(2,), context_dim=32,
               transformer_depth=2),
    UNetConfig(model_channels=32, channel_mult=(2,), num_res_blocks=3, attention_resolutions=(1,), out_channels=8),
], ids=["sd15", "sd15-inpainting", "tiny", "tiny-inpainting", "odd", "one-level"])
def test_from_state_dict_round_trip(cfg):
    assert UNetConfig.from_state_dict(meta_state_dict(cfg)) == cfg


def test_attention_resolutions_are_normalised():
    assert UNetConfig(attention_resolutions=[1, 2, 4]).attention_resolutions == (4, 2, 1)


def test_from_state_dict_linear_projection_means_64_channel_heads():
    """Linear proj_in/proj_out (SD2/SDXL `use_linear_in_transformer`) switch the head convention to 64-wide heads."""
    linear = UNetConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                        num_head_channels=64, use_linear_in_transformer=True, context_dim=1024)
    sd = meta_state_dict(linear)
    assert sd["input_blocks.1.1.proj_in.weight"].shape == (64, 64)
    assert UNetConfig.from_state_dict(sd) == linear
    # The same layout with 1x1-conv weights is SD1-style: 8 heads per level, whatever the context width.
    conv = dict(sd)
    for k in [k for k in conv if k.endswith(("proj_in.weight", "proj_out.weight"))]:
        conv[k] = conv[k][:, :, None, None]
    inferred = UNetConfig.from_state_dict(conv)
    assert (inferred.use_linear_in_transformer, inferred.num_head_channels, inferred.num_heads) == (False, -1, 8)
    assert inferred.context_dim == 1024
    # 32-wide levels cannot hold a 64-channel head: refused with the reason.
    narrow = dict(meta_state_dict(tiny_config()))
    for k in [k for k in narrow if k.endswith(("proj_in.weight", "proj_out.weight"))]:
        narrow[k] = narrow[k][:, :, 0, 0]
    with pytest.raises(ValueError, match="heads of 64 channels"):
        UNetConfig.from_state_dict(narrow)


def test_from_state_dict_adm():
    sd = dict(meta_state_dict(tiny_config()))
    sd["label_emb.0.0.weight"] = torch.empty(128, 2816, device="meta")
    with pytest.raises(ValueError, match="sequential ADM"):
        UNetConfig.from_state_dict(sd)
    sd["label_emb.0.2.weight"] = torch.empty(128, 128, device="meta")
    assert UNetConfig.from_state_dict(sd).adm_in_channels == 2816


def test_from_state_dict_needs_stripped_prefix():
    sd = {"model.diffusion_model." + k: v for k, v in meta_state_dict(tiny_config()).items()}
    with pytest.raises(ValueError, match="strip the prefix"):
        UNetConfig.from_state_dict(sd)


@pytest.mark.parametrize("kwargs,match", [
    ({"model_channels": 48}, "multiple of 32"),
    ({"model_channels": 32, "num_heads": 3}, "heads"),
    ({"channel_mult": ()}, "channel_mult"),
    ({"num_res_blocks": 0}, "num_res_blocks"),
])
def test_invalid_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)
