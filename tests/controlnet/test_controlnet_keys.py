"""The full SD1.5 ControlNet architecture on the meta device: keys, shapes, totals and config inference, checked
against the published layout and against diffusers' ControlNetModel through diffusers' own converter."""
from __future__ import annotations

import pytest
import torch
from cn_helpers import PREFIX, SMALL_CN

from inpaintlab.checkpoint import CheckpointError
from inpaintlab.controlnet import ControlNet, ControlNetConfig, load_controlnet
from inpaintlab.unet import UNetModel


@pytest.fixture(scope="module")
def sd15():
    with torch.device("meta"):
        return ControlNet(ControlNetConfig()).state_dict()


def test_sd15_totals_and_examples(sd15):
    assert len(sd15) == 340
    assert sum(v.numel() for v in sd15.values()) == 361_279_120
    expected = {
        "time_embed.0.weight": (1280, 320), "input_blocks.0.0.weight": (320, 4, 3, 3),
        "input_hint_block.0.weight": (16, 3, 3, 3), "input_hint_block.14.weight": (320, 256, 3, 3),
        "zero_convs.0.0.weight": (320, 320, 1, 1), "zero_convs.11.0.weight": (1280, 1280, 1, 1),
        "middle_block_out.0.weight": (1280, 1280, 1, 1), "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    }
    for key, shape in expected.items():
        assert tuple(sd15[key].shape) == shape, key
    hint = [tuple(sd15[f"input_hint_block.{i}.weight"].shape[:2]) for i in range(0, 16, 2)]
    assert hint == [(16, 3), (16, 16), (32, 16), (32, 32), (96, 32), (96, 96), (256, 96), (320, 256)]
    widths = [sd15[f"zero_convs.{k}.0.weight"].shape[0] for k in range(12)]
    assert widths == [320] * 4 + [640] * 3 + [1280] * 5


def test_encoder_equals_unet_encoder(sd15):
    """Apart from the extra groups, every key and shape is the SD1.5 UNet's (4-channel conv_in)."""
    with torch.device("meta"):
        unet = UNetModel().state_dict()
    extra = ("input_hint_block.", "zero_convs.", "middle_block_out.")
    encoder = {k: tuple(v.shape) for k, v in sd15.items() if not k.startswith(extra)}
    unet_encoder = {k: tuple(v.shape) for k, v in unet.items() if k.startswith(("time_embed.", "input_blocks.",
                                                                                 "middle_block."))}
    assert encoder == unet_encoder


def test_diffusers_converter_maps_onto_controlnetmodel(sd15):
    diffusers = pytest.importorskip("diffusers")
    sfu = pytest.importorskip("diffusers.loaders.single_file_utils")
    config = dict(conditioning_channels=3, in_channels=4, block_out_channels=(320, 640, 1280, 1280),
                  layers_per_block=2, cross_attention_dim=768, attention_head_dim=8)
    converted = sfu.convert_controlnet_checkpoint({PREFIX + k: v for k, v in sd15.items()}, config)
    with torch.device("meta"):
        ref = diffusers.ControlNetModel(**config).state_dict()
    assert len(converted) == len(ref) == 340
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ref.items()}


def test_config_inference(sd15):
    assert ControlNetConfig.from_state_dict(sd15) == ControlNetConfig()
    with torch.device("meta"):
        small = ControlNet(SMALL_CN).state_dict()
    assert ControlNetConfig.from_state_dict(small) == SMALL_CN
    assert SMALL_CN.num_outputs == ControlNetConfig().num_outputs == 13


def test_load_strict_and_clear_errors(tmp_path):
    from safetensors.torch import save_file

    from inpaintlab.tiny import reinit_

    model = reinit_(ControlNet(SMALL_CN))
    sd = {PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(tmp_path / "cn.safetensors"))
    loaded = load_controlnet(tmp_path / "cn.safetensors", kernels="torch")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert loaded.name == "cn" and len(loaded.hash) == 10
    # Unprefixed keys load too (the extension strips the prefix).
    assert isinstance(load_controlnet({k[len(PREFIX):]: v for k, v in sd.items()}, kernels="torch"), ControlNet)

    missing = dict(sd)
    del missing[PREFIX + "zero_convs.3.0.bias"]
    with pytest.raises(CheckpointError, match="missing key.*zero_convs.3.0.bias"):
        load_controlnet(missing, kernels="torch")
    with pytest.raises(CheckpointError, match="not a supported ControlNet.*Stable Diffusion checkpoint"):
        load_controlnet({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)})
    with pytest.raises(CheckpointError, match="diffusers-format"):
        load_controlnet({"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3)})
    sd2 = {k: (torch.zeros(v.shape[0], 1024) if k.endswith("attn2.to_k.weight") else v) for k, v in sd.items()}
    with pytest.raises(CheckpointError, match="SD2"):
        load_controlnet(sd2)
    with pytest.raises(CheckpointError, match="refusing to read a pickle"):
        torch.save(sd, tmp_path / "cn.pth")
        load_controlnet(tmp_path / "cn.pth")
    assert isinstance(load_controlnet(tmp_path / "cn.pth", allow_pickle=True, kernels="torch"), ControlNet)
