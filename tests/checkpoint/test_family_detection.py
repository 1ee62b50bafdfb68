"""Family detection on tiny files of every family, A1111's v-prediction probe, and the full-size SD2/SDXL layouts
(meta device) through split, config inference and the strict key/shape check."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from inpaintlab.checkpoint import (SD2_TEXT_PREFIX, SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX, UNET_PREFIX, VAE_PREFIX,
                                   CheckpointError, _check_fit, detect_family, is_v_prediction, load_models,
                                   read_state_dict, split_state_dict)
from inpaintlab.clip.model import CLIPTextConfig, CLIPTextTransformer
from inpaintlab.clip.openclip import VIT_BIGG_14, VIT_H_14, OpenCLIPTextTransformer
from inpaintlab.unet import SD2_UNET, SDXL_UNET, UNetConfig, UNetModel
from inpaintlab.vae import AutoencoderKL, VAEConfig


@pytest.mark.parametrize("name,family,prediction,inpainting,scale", [
    ("sd2", "sd2", "eps", False, 0.18215),
    ("sd2-v", "sd2", "v", False, 0.18215),
    ("sdxl", "sdxl", "eps", False, 0.13025),
    ("sdxl-inpainting", "sdxl", "eps", True, 0.13025),
])
def test_tiny_files_are_told_apart(tiny_family_checkpoints, name, family, prediction, inpainting, scale):
    path = tiny_family_checkpoints[name]
    assert detect_family(read_state_dict(path)) == family
    models = load_models(path, kernels="torch")
    assert (models.family, models.prediction, models.is_inpainting, models.scale_factor) == \
        (family, prediction, inpainting, scale)
    assert isinstance(models.text_encoder, OpenCLIPTextTransformer if family == "sd2" else CLIPTextTransformer)
    assert (models.text_encoder_2 is not None) == (family == "sdxl")
    assert models.unet.config.use_linear_in_transformer and models.unet.config.num_head_channels == 64
    assert (models.unet.config.adm_in_channels is not None) == (family == "sdxl")


def test_v_probe_is_a1111s_rule(tiny_family_checkpoints):
    """mean(unet(0.5, t=999, ctx=0.5) - 0.5) < -1 on [1, 4, 8, 8], recomputed here by hand for both SD2 files."""
    for name, expected in (("sd2", False), ("sd2-v", True)):
        unet = load_models(tiny_family_checkpoints[name], kernels="torch").unet
        x = torch.full((1, 4, 8, 8), 0.5)
        with torch.no_grad():
            value = (unet(x, torch.tensor([999]), torch.full((1, 2, unet.config.context_dim), 0.5)) - x).mean()
        assert (value.item() < -1) is expected and is_v_prediction(unet) is expected


def test_fp16_file_keeps_its_dtype_when_asked(tmp_path):
    from inpaintlab.tiny import make_tiny_family_checkpoint

    path = make_tiny_family_checkpoint(tmp_path / "tiny-sdxl-fp16.safetensors", "sdxl", dtype=torch.float16)
    kept = load_models(path, kernels="torch", dtype=None)
    cast = load_models(path, kernels="torch")
    assert kept.dtype == torch.float16 and next(kept.unet.parameters()).dtype == torch.float16
    assert next(kept.text_encoder_2.parameters()).dtype == torch.float16
    assert next(cast.unet.parameters()).dtype == torch.float32
    sd = read_state_dict(path)
    key = "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"
    assert torch.equal(kept.unet.state_dict()[key], sd[UNET_PREFIX + key])
    assert torch.equal(cast.unet.state_dict()[key], sd[UNET_PREFIX + key].float())


def test_refused_layouts_by_name(tmp_path, tiny_family_checkpoints):
    sd = read_state_dict(tiny_family_checkpoints["sdxl"])
    no_g = {k: v for k, v in sd.items() if not k.startswith(SDXL_CLIP_G_PREFIX)}
    with pytest.raises(CheckpointError, match="without SDXL's OpenCLIP bigG.*cannot tell the model family"):
        detect_family(no_g)
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in sd.items()
               if not k.startswith(SDXL_CLIP_L_PREFIX)}
    assert detect_family(refiner) == "sdxl_refiner"  # bigG alone as embedder 0: A1111's sd_xl_refiner.yaml
    with pytest.raises(CheckpointError, match=r"Flux checkpoint \(key 'double_blocks"):
        detect_family({"double_blocks.0.img_attn.qkv.weight": torch.zeros(1), "img_in.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="Stable Diffusion 3"):
        detect_family({UNET_PREFIX + "joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(1)})
    folder = tmp_path / "sdxl-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="diffusers-format folders are not supported"):
        load_models(folder)
    sd2 = read_state_dict(tiny_family_checkpoints["sd2"])
    sd2["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.zeros(64)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\) for an SD 2.x checkpoint"):
        split_state_dict(sd2)


def _meta(module_cls, config, prefix: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return {prefix + k: v for k, v in module_cls(config).state_dict().items()}


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_full_size_layout(family):
    """Full-size files (shapes only): split, infer every config back and check every key and shape strictly.

    Key counts: SD2 686 UNet + 248 VAE + 294 OpenCLIP-H (with logit_scale); SDXL 1680 + 248 + 197 CLIP-L (with
    position_ids) + 390 bigG (with logit_scale) = 2515.
    """
    unet_config = SD2_UNET if family == "sd2" else SDXL_UNET
    sd = _meta(UNetModel, unet_config, UNET_PREFIX) | _meta(AutoencoderKL, VAEConfig(), VAE_PREFIX)
    if family == "sd2":
        sd |= _meta(OpenCLIPTextTransformer, VIT_H_14, SD2_TEXT_PREFIX)
        sd[SD2_TEXT_PREFIX + "logit_scale"] = torch.empty((), device="meta")
        assert len(sd) == 686 + 248 + 294
    else:
        sd |= _meta(CLIPTextTransformer, CLIPTextConfig(), SDXL_CLIP_L_PREFIX)
        sd[SDXL_CLIP_L_PREFIX + "embeddings.position_ids"] = torch.empty(1, 77, device="meta")
        sd |= _meta(OpenCLIPTextTransformer, VIT_BIGG_14, SDXL_CLIP_G_PREFIX)
        sd[SDXL_CLIP_G_PREFIX + "logit_scale"] = torch.empty((), device="meta")
        assert len(sd) == 2515
    parts = split_state_dict(sd, source=f"{family} (shapes)")
    assert parts.family == family
    assert UNetConfig.from_state_dict(parts.unet) == unet_config
    assert VAEConfig.from_state_dict(parts.vae) == VAEConfig()
    from inpaintlab.clip.openclip import OpenCLIPTextConfig

    if family == "sd2":
        assert OpenCLIPTextConfig.from_state_dict(parts.text_encoder) == VIT_H_14
    else:
        assert CLIPTextConfig.from_state_dict(parts.text_encoder) == CLIPTextConfig()
        assert OpenCLIPTextConfig.from_state_dict(parts.text_encoder_2) == VIT_BIGG_14
    with torch.device("meta"):
        _check_fit(UNetModel(unet_config).state_dict(), parts.unet, "unet", UNET_PREFIX)
        inpainting = dataclasses.replace(unet_config, in_channels=9)
        with pytest.raises(CheckpointError, match=r"input_blocks.0.0.weight: expected \[320, 9, 3, 3\], found "
                                                  r"\[320, 4, 3, 3\]"):
            _check_fit(UNetModel(inpainting).state_dict(), parts.unet, "unet", UNET_PREFIX)
