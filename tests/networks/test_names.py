"""kohya → compvis module names: A1111 v1.10's table, written out case by case, and a full-size check that every
Linear/Conv2d of diffusers' SD1.5 UNet and transformers' CLIP ViT-L text model (on the meta device) lands on the module
of our full-size models with the same weight shape."""
from __future__ import annotations

import pytest
import torch

from inpaintlab.clip.model import CLIPTextTransformer
from inpaintlab.networks import convert_kohya_name, module_names
from inpaintlab.networks.names import match_key
from inpaintlab.unet import UNetModel

TABLE = [
    ("lora_unet_conv_in", "diffusion_model_input_blocks_0_0"),
    ("lora_unet_conv_out", "diffusion_model_out_2"),
    ("lora_unet_time_embedding_linear_1", "diffusion_model_time_embed_0"),
    ("lora_unet_time_embedding_linear_2", "diffusion_model_time_embed_2"),
    ("lora_unet_down_blocks_0_attentions_0_proj_in", "diffusion_model_input_blocks_1_1_proj_in"),
    ("lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_q",
     "diffusion_model_input_blocks_2_1_transformer_blocks_0_attn1_to_q"),
    ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj",
     "diffusion_model_input_blocks_4_1_transformer_blocks_0_ff_net_0_proj"),
    ("lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_attn2_to_out_0",
     "diffusion_model_input_blocks_8_1_transformer_blocks_0_attn2_to_out_0"),
    ("lora_unet_down_blocks_0_resnets_0_conv1", "diffusion_model_input_blocks_1_0_in_layers_2"),
    ("lora_unet_down_blocks_0_resnets_1_conv2", "diffusion_model_input_blocks_2_0_out_layers_3"),
    ("lora_unet_down_blocks_1_resnets_0_norm1", "diffusion_model_input_blocks_4_0_in_layers_0"),
    ("lora_unet_down_blocks_1_resnets_0_norm2", "diffusion_model_input_blocks_4_0_out_layers_0"),
    ("lora_unet_down_blocks_1_resnets_0_time_emb_proj", "diffusion_model_input_blocks_4_0_emb_layers_1"),
    ("lora_unet_down_blocks_1_resnets_0_conv_shortcut", "diffusion_model_input_blocks_4_0_skip_connection"),
    ("lora_unet_down_blocks_3_resnets_1_conv2", "diffusion_model_input_blocks_11_0_out_layers_3"),
    ("lora_unet_down_blocks_0_downsamplers_0_conv", "diffusion_model_input_blocks_3_0_op"),
    ("lora_unet_down_blocks_2_downsamplers_0_conv", "diffusion_model_input_blocks_9_0_op"),
    ("lora_unet_mid_block_attentions_0_proj_out", "diffusion_model_middle_block_1_proj_out"),
    ("lora_unet_mid_block_resnets_0_conv1", "diffusion_model_middle_block_0_in_layers_2"),
    ("lora_unet_mid_block_resnets_1_time_emb_proj", "diffusion_model_middle_block_2_emb_layers_1"),
    ("lora_unet_up_blocks_0_resnets_2_conv1", "diffusion_model_output_blocks_2_0_in_layers_2"),
    ("lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn1_to_v",
     "diffusion_model_output_blocks_5_1_transformer_blocks_0_attn1_to_v"),
    ("lora_unet_up_blocks_3_resnets_0_conv_shortcut", "diffusion_model_output_blocks_9_0_skip_connection"),
    ("lora_unet_up_blocks_0_upsamplers_0_conv", "diffusion_model_output_blocks_2_1_conv"),
    ("lora_unet_up_blocks_1_upsamplers_0_conv", "diffusion_model_output_blocks_5_2_conv"),
    ("lora_unet_up_blocks_2_upsamplers_0_conv", "diffusion_model_output_blocks_8_2_conv"),
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", "transformer_text_model_encoder_layers_0_self_attn_q_proj"),
    ("lora_te_text_model_encoder_layers_11_mlp_fc2", "transformer_text_model_encoder_layers_11_mlp_fc2"),
    # not converted by the table
    ("lora_te1_text_model_encoder_layers_0_mlp_fc1", "lora_te1_text_model_encoder_layers_0_mlp_fc1"),
    ("lora_unet_input_blocks_4_1_proj_in", "lora_unet_input_blocks_4_1_proj_in"),
    ("unet", "unet"),
]


@pytest.mark.parametrize("kohya,compvis", TABLE)
def test_a1111_table(kohya, compvis):
    assert convert_kohya_name(kohya) == compvis


@pytest.fixture(scope="module")
def full_size_names():
    with torch.device("meta"):
        return module_names(UNetModel(), CLIPTextTransformer())


@pytest.mark.parametrize("key,expected", [
    # compvis-named kohya keys (SDXL trainers, some SD1 ones): lora_unet → diffusion_model
    ("lora_unet_input_blocks_4_1_proj_in", "diffusion_model_input_blocks_4_1_proj_in"),
    ("lora_unet_output_blocks_2_1_conv", "diffusion_model_output_blocks_2_1_conv"),
    # lora_te1_ on SD1: tried as SDXL's first encoder, then as the SD1 encoder
    ("lora_te1_text_model_encoder_layers_3_self_attn_out_proj",
     "transformer_text_model_encoder_layers_3_self_attn_out_proj"),
    ("lora_te1_text_model_final_layer_norm", "transformer_text_model_final_layer_norm"),
    ("oft_unet_middle_block_1_proj_in", "diffusion_model_middle_block_1_proj_in"),
    # matched by nothing: dotted diffusers keys (split at the first '.'), unknown top-level names, lora_te_ outside
    # the encoder layers (no fallback for lora_te_)
    ("unet", None), ("lora_unet_conv_norm_out", None), ("lora_te_text_model_final_layer_norm", None),
])
def test_fallbacks(full_size_names, key, expected):
    assert match_key(key, full_size_names).name == expected


def test_every_diffusers_sd15_layer_lands_on_our_layer_of_the_same_shape(full_size_names):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)  # SD1.5's config
        text = transformers.CLIPTextModel(transformers.CLIPTextConfig(  # ViT-L/14
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12))
    pairs = [("lora_unet_" + n.replace(".", "_"), m) for n, m in unet.named_modules()]
    pairs += [("lora_te_text_model_" + n.replace(".", "_"), m) for n, m in text.named_modules()
              if n.startswith("encoder.layers.")]
    checked = set()
    for key, module in pairs:
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        match = match_key(key, full_size_names)
        assert match.name is not None, key
        ours = full_size_names[match.name][2]
        assert isinstance(ours, type(module)), (key, match.name)
        assert ours.weight.shape == module.weight.shape, (key, match.name, ours.weight.shape, module.weight.shape)
        checked.add(match.name)
    # one to one: every Linear/Conv2d of our UNet and text encoder layers is hit exactly once
    ours = {name for name, (_, dotted, m) in full_size_names.items()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and (name.startswith("diffusion_model_")
                                                                       or "_encoder_layers_" in name)}
    assert checked == ours and len(ours) == 282 + 72
