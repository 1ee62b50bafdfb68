"""VAEConfig: SD1 defaults, validation, inference from state-dict shapes."""
import pytest
import torch

from inpaintlab.vae import AutoencoderKL, VAEConfig, conv_attention_weights


def test_sd1_defaults():
    cfg = VAEConfig()
    assert (cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.z_channels, cfg.embed_dim) == (128, (1, 2, 4, 4), 2, 4, 4)
    assert (cfg.in_channels, cfg.out_ch, cfg.scale_factor) == (3, 3, 0.18215)
    assert cfg.widths == (128, 256, 512, 512)
    with pytest.raises(AttributeError):
        cfg.ch = 64  # frozen


def test_ch_mult_list_becomes_tuple():
    assert VAEConfig(ch=32, ch_mult=[1, 2]).ch_mult == (1, 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(ch=48), "multiple of 32"),
    (dict(ch_mult=()), "non-empty"),
    (dict(ch_mult=(1, 0)), "positive"),
    (dict(num_res_blocks=0), "num_res_blocks"),
    (dict(z_channels=0), "z_channels"),
])
def test_invalid_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)


@pytest.mark.parametrize("cfg", [
    VAEConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2),
    VAEConfig(ch=32, ch_mult=(1, 3), num_res_blocks=1, z_channels=8, embed_dim=6, in_channels=4, out_ch=5),
])
def test_from_state_dict_round_trip(cfg):
    sd = AutoencoderKL(cfg).state_dict()
    assert VAEConfig.from_state_dict(sd) == cfg
    linear = {k: v[:, :, 0, 0] if ".attn_1." in k and k.endswith("weight") and v.ndim == 4 else v
              for k, v in sd.items()}
    assert VAEConfig.from_state_dict(linear) == cfg
    model = AutoencoderKL(VAEConfig.from_state_dict(linear))
    model.load_state_dict(conv_attention_weights(linear), strict=True)
    assert VAEConfig.from_state_dict(sd, scale_factor=0.13).scale_factor == 0.13


def test_from_state_dict_names_the_problem():
    sd = AutoencoderKL(VAEConfig(ch=32, ch_mult=(1, 2))).state_dict()
    prefixed = {"first_stage_model." + k: v for k, v in sd.items()}
    with pytest.raises(KeyError, match="encoder.conv_in.weight.*prefix-free"):
        VAEConfig.from_state_dict(prefixed)
    gap = {k: v for k, v in sd.items() if not k.startswith("encoder.down.0.")}
    with pytest.raises(ValueError, match=r"levels are \[1\]"):
        VAEConfig.from_state_dict(gap)
    bad = dict(sd)
    bad["encoder.conv_out.weight"] = torch.zeros(5, 64, 3, 3)
    with pytest.raises(ValueError, match="double_z"):
        VAEConfig.from_state_dict(bad)
