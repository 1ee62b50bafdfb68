"""OpenCLIP's fused q/k/v attention under LyCORIS types, against a float64 re-derivation of A1111's
MultiheadAttention branch: each of q, k, v computes its delta (here LoHa: (w1a·w1b) ⊙ (w2a·w2b) · alpha/rank · te)
and the three are stacked onto in_proj_weight; out_proj is a plain Linear. Also the SD 2.x name conversion."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from inpaintlab.clip.openclip import OpenCLIPTextConfig, OpenCLIPTextTransformer
from inpaintlab.networks import ActiveNetwork, NetworkMerger, convert_kohya_name
from inpaintlab.tiny import reinit_
from inpaintlab.unet import UNetConfig, UNetModel

TE = 0.6
CFG = OpenCLIPTextConfig(width=64, layers=2, mlp_dim=128, projection_dim=64)


def _loha(g, out_f, in_f, rank=3):
    return {"hada_w1_a": torch.randn(out_f, rank, generator=g, dtype=torch.float64),
            "hada_w1_b": torch.randn(rank, in_f, generator=g, dtype=torch.float64),
            "hada_w2_a": torch.randn(out_f, rank, generator=g, dtype=torch.float64),
            "hada_w2_b": torch.randn(rank, in_f, generator=g, dtype=torch.float64),
            "alpha": torch.tensor(2.0, dtype=torch.float64)}


def test_loha_on_fused_attention_matches_float64(tmp_path):
    te = reinit_(OpenCLIPTextTransformer(CFG), seed=9).double().eval().requires_grad_(False)
    unet = UNetModel(UNetConfig(model_channels=32, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(),
                                num_head_channels=32, context_dim=64)).double()
    g = torch.Generator().manual_seed(3)
    sd, parts = {}, {}
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        parts[proj] = _loha(g, 64, 64)
        sd.update({f"lora_te_text_model_encoder_layers_1_self_attn_{proj}.{k}": v for k, v in parts[proj].items()})
    path = tmp_path / "loha.safetensors"
    save_file(sd, str(path), metadata={"ss_v2": "True"})
    attn = te.transformer.resblocks[1].attn
    in_proj, out_w = attn.in_proj_weight.clone(), attn.out_proj.weight.clone()
    NetworkMerger(unet, te, family="sd2").apply([ActiveNetwork(path, TE, 1.0)])

    def delta(p):
        return (p["hada_w1_a"] @ p["hada_w1_b"]) * (p["hada_w2_a"] @ p["hada_w2_b"]) * (2.0 / 3) * TE

    want = in_proj + torch.cat([delta(parts[p]) for p in ("q_proj", "k_proj", "v_proj")])
    torch.testing.assert_close(attn.in_proj_weight, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(attn.out_proj.weight, out_w + delta(parts["out_proj"]), rtol=1e-12, atol=1e-12)
    assert torch.equal(te.transformer.resblocks[0].attn.in_proj_weight,
                       reinit_(OpenCLIPTextTransformer(CFG), seed=9).double().transformer.resblocks[0].attn.in_proj_weight)


@pytest.mark.parametrize("kohya,compvis,is_sd2", [
    ("lora_te_text_model_encoder_layers_3_self_attn_q_proj", "model_transformer_resblocks_3_attn_q_proj", True),
    ("lora_te_text_model_encoder_layers_3_self_attn_out_proj", "model_transformer_resblocks_3_attn_out_proj", True),
    ("lora_te_text_model_encoder_layers_0_mlp_fc1", "model_transformer_resblocks_0_mlp_c_fc", True),
    ("lora_te_text_model_encoder_layers_0_mlp_fc2", "model_transformer_resblocks_0_mlp_c_proj", True),
    ("lora_te_text_model_encoder_layers_0_mlp_fc1", "transformer_text_model_encoder_layers_0_mlp_fc1", False),
    ("lora_te2_text_model_encoder_layers_31_self_attn_v_proj", "1_model_transformer_resblocks_31_attn_v_proj", False),
    ("lora_te2_text_model_encoder_layers_5_mlp_fc2", "1_model_transformer_resblocks_5_mlp_c_proj", False),
    ("lora_te1_text_model_encoder_layers_5_mlp_fc2", "lora_te1_text_model_encoder_layers_5_mlp_fc2", False),
])
def test_a1111_openclip_names(kohya, compvis, is_sd2):
    assert convert_kohya_name(kohya, is_sd2=is_sd2) == compvis


def test_full_size_sdxl_kohya_names_land_on_layers_of_the_same_shape():
    """Full SDXL (UNet, CLIP-L, bigG) on the meta device: every kohya SDXL key of transformers' CLIP models lands on
    our layer of the same shape (q/k/v: a third of the fused in_proj_weight)."""
    transformers = pytest.importorskip("transformers")
    from inpaintlab.clip.model import CLIPTextTransformer
    from inpaintlab.clip.openclip import VIT_BIGG_14
    from inpaintlab.networks.names import match_key, module_names
    from inpaintlab.unet import SDXL_UNET

    with torch.device("meta"):
        names = module_names(UNetModel(SDXL_UNET), CLIPTextTransformer(), text_encoder_2=OpenCLIPTextTransformer(
            VIT_BIGG_14), family="sdxl")
        big_g = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280))
    checked = 0
    for name, module in big_g.named_modules():
        name = name.removeprefix("text_model.")
        if not isinstance(module, torch.nn.Linear) or not name.startswith("encoder.layers."):
            continue
        match = match_key("lora_te2_text_model_" + name.replace(".", "_"), names)
        ours = names[match.module or match.name][2]
        if match.module:
            assert ours.in_proj_weight.shape == (3 * module.weight.shape[0], module.weight.shape[1])
        else:
            assert ours.weight.shape == module.weight.shape, name
        checked += 1
    assert checked == 32 * 6
