"""Prefix split, allow-list, architecture detection and strict component loading, on plain dicts and modules."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from inpaintlab.checkpoint import (
    CLIP_PREFIX, IGNORED_KEYS, SCHEDULE_BUFFERS, UNET_PREFIX, VAE_PREFIX, CheckpointError, check_architecture,
    load_component, split_state_dict,
)

T = torch.zeros(1)


def sd1_like(**extra: torch.Tensor) -> dict[str, torch.Tensor]:
    """A minimal dict with one key per component (shapes irrelevant to splitting)."""
    sd = {
        UNET_PREFIX + "input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
        UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(32, 768),
        UNET_PREFIX + "input_blocks.1.1.proj_in.weight": torch.zeros(32, 32, 1, 1),
        VAE_PREFIX + "encoder.conv_in.weight": T,
        VAE_PREFIX + "decoder.mid.attn_1.q.weight": torch.ones(3, 3),  # Linear layout -> reshaped to conv
        CLIP_PREFIX + "embeddings.token_embedding.weight": T,
        CLIP_PREFIX + "embeddings.position_ids": torch.arange(77)[None],
    }
    sd.update(extra)
    return sd


def test_split_strips_prefixes_and_drops_allow_listed_extras(caplog):
    extras = {name: torch.zeros(1000) for name in SCHEDULE_BUFFERS}
    extras.update({"logvar": torch.zeros(1000), "model_ema.decay": torch.tensor(0.9999),
                   "model_ema.num_updates": torch.tensor(7), "model_ema.diffusion_modelinput_blocks00weight": T})
    sd = sd1_like(**extras)
    before = dict(sd)
    with caplog.at_level(logging.DEBUG, logger="inpaintlab.checkpoint"):
        parts = split_state_dict(sd, source="x")
    assert sorted(parts.unet) == ["input_blocks.0.0.weight", "input_blocks.1.1.proj_in.weight",
                                  "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"]
    assert sorted(parts.vae) == ["decoder.mid.attn_1.q.weight", "encoder.conv_in.weight"]
    assert parts.vae["decoder.mid.attn_1.q.weight"].shape == (3, 3, 1, 1)
    assert list(parts.text_encoder) == ["embeddings.token_embedding.weight"]  # position_ids dropped
    assert parts.text_encoder_prefix == CLIP_PREFIX
    assert parts.unet["input_blocks.0.0.weight"] is sd[UNET_PREFIX + "input_blocks.0.0.weight"]  # no copies
    assert sd.keys() == before.keys() and all(sd[k] is before[k] for k in sd)  # input untouched
    assert sd[VAE_PREFIX + "decoder.mid.attn_1.q.weight"].shape == (3, 3)
    assert "ignoring 17 allow-listed keys" in caplog.text  # 12 + logvar + 2 LitEma scalars + EMA copy + ids
    assert len(IGNORED_KEYS) == 15  # the 15 optional keys of the arenasys model toolkit (spec §1.2)


def test_old_clip_layout_gets_text_model_inserted():
    sd = sd1_like()
    old = {k.replace(CLIP_PREFIX, "cond_stage_model.transformer."): v for k, v in sd.items()}
    parts = split_state_dict(old)
    assert list(parts.text_encoder) == ["embeddings.token_embedding.weight"]
    assert parts.text_encoder_prefix == "cond_stage_model.transformer."


def test_clip_key_in_both_layouts_is_an_error():
    sd = sd1_like(**{"cond_stage_model.transformer.embeddings.token_embedding.weight": T})
    with pytest.raises(CheckpointError, match="both with and without 'text_model.'"):
        split_state_dict(sd)


def test_unexpected_keys_are_listed_with_a_count():
    extras = {f"junk.{i}": T for i in range(7)}
    with pytest.raises(CheckpointError) as e:
        split_state_dict(sd1_like(**extras), source="file.safetensors")
    msg = str(e.value)
    assert "file.safetensors: 7 unexpected key(s)" in msg and "'junk.0'" in msg and "(7 in all)" in msg
    assert "'junk.6'" not in msg  # only the first few are printed


@pytest.mark.parametrize("missing, message", [
    (VAE_PREFIX, "has no VAE weights"),
    (CLIP_PREFIX, "has no text encoder weights"),
])
def test_missing_component(missing, message):
    sd = {k: v for k, v in sd1_like().items() if not k.startswith(missing)}
    with pytest.raises(CheckpointError, match=message):
        split_state_dict(sd)


def test_missing_vae_allowed_when_a_separate_vae_is_given():
    sd = {k: v for k, v in sd1_like().items() if not k.startswith(VAE_PREFIX)}
    assert split_state_dict(sd, require_vae=False).vae == {}


FAMILY = "cannot tell the model family"


@pytest.mark.parametrize("extra, message", [
    ({"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 1024)},
     r"2 unexpected key\(s\) for an SD 2.x checkpoint.*'cond_stage_model.transformer.text_model."),
    ({UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(32, 1024)},
     r"SD2-style UNet .*\[32, 1024\].* without SD2's OpenCLIP text encoder.*" + FAMILY),
    ({UNET_PREFIX + "input_blocks.1.1.proj_in.weight": torch.zeros(32, 32)}, r"SD2-style UNet .*proj_in.*" + FAMILY),
    ({"conditioner.embedders.0.transformer.text_model.embeddings.position_ids": T},
     r"sgm conditioner keys .* without SDXL's OpenCLIP bigG.*" + FAMILY),
    ({UNET_PREFIX + "label_emb.0.0.weight": torch.zeros(32, 2816)},
     r"SDXL-style UNet .*label_emb.* without SDXL's text encoders.*" + FAMILY),
    ({UNET_PREFIX + "x_embedder.proj.weight": T}, r"Stable Diffusion 3 \(MMDiT\) checkpoint"),
    ({UNET_PREFIX + "double_blocks.0.img_attn.qkv.weight": T}, "Flux checkpoint"),
    ({"conditioner.embedders.0.model.ln_final.weight": T},
     r"unexpected key\(s\) for an SDXL refiner checkpoint.*'cond_stage_model.transformer"),
    ({"embedder.model.ln_final.weight": T}, "SD 2.x unCLIP checkpoint"),
    ({"depth_model.model.pretrained.act_postprocess3.0.project.0.bias": T}, "SD 2.0 depth checkpoint"),
    ({"cond_stage_model.roberta.embeddings.word_embeddings.weight": T}, "AltDiffusion checkpoint"),
    ({UNET_PREFIX + "input_blocks.0.0.weight": torch.zeros(32, 8, 3, 3)}, r"instruct-pix2pix UNet \(8 input"),
    ({"edm_mean": T}, r"Playground v2.5 \(EDM\) checkpoint"),
], ids=["mixed-text-encoders", "context1024", "linear-proj-in", "sdxl-conditioner", "sdxl-label-emb", "sd3", "flux",
        "refiner", "unclip", "depth", "altdiffusion", "pix2pix", "playground"])
def test_unsupported_architectures(extra, message):
    with pytest.raises(CheckpointError, match=message) as e:
        split_state_dict(sd1_like(**extra), source="m.safetensors")
    assert isinstance(e.value, ValueError) and "m.safetensors" in str(e.value)


@pytest.mark.parametrize("keys", [
    ["down_blocks.0.resnets.0.conv1.weight", "conv_in.weight"],
    ["unet.down_blocks.0.attentions.0.proj_in.weight"],
    ["encoder.down_blocks.0.resnets.0.norm1.weight", "decoder.up_blocks.0.resnets.0.norm1.weight"],
    [UNET_PREFIX + "input_blocks.0.0.weight", "vae.decoder.mid_block.attentions.0.to_q.weight"],
])
def test_diffusers_layout_is_refused(keys):
    with pytest.raises(CheckpointError, match="diffusers layout is not supported"):
        check_architecture(dict.fromkeys(keys, T))


@pytest.mark.parametrize("prefix", ["", VAE_PREFIX, "vae."])
def test_vae_only_dict_as_model(prefix):
    sd = {prefix + "encoder.conv_in.weight": T, prefix + "decoder.conv_out.weight": T}
    with pytest.raises(CheckpointError, match="looks like a standalone VAE file"):
        check_architecture(sd)


def test_not_a_checkpoint_at_all():
    with pytest.raises(CheckpointError, match=r"not a Stable Diffusion checkpoint.*'weight', 'bias'"):
        check_architecture({"weight": T, "bias": T})
    with pytest.raises(CheckpointError, match="has no UNet weights"):
        check_architecture({CLIP_PREFIX + "embeddings.token_embedding.weight": T, VAE_PREFIX + "encoder.x": T})


# ---------------------------------------------------------------------------------------------- load_component


def small_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))


def test_load_component_copies_and_casts_without_touching_the_input():
    src = small_module()
    sd = {k: (v * 3 + 1).half() for k, v in src.state_dict().items()}
    snapshot = {k: v.clone() for k, v in sd.items()}
    dst = load_component(small_module(), sd, "toy")
    for k, v in dst.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, snapshot[k].float())
    assert all(torch.equal(sd[k], snapshot[k]) and sd[k].dtype == torch.float16 for k in sd)
    dst.state_dict()["0.weight"].add_(1)  # the module owns copies, not the caller's tensors
    assert torch.equal(sd["0.weight"], snapshot["0.weight"])


def test_load_component_shape_mismatch_names_component_key_and_shapes():
    sd = dict(small_module().state_dict())
    sd["0.weight"] = torch.zeros(4, 5)
    with pytest.raises(CheckpointError) as e:
        load_component(small_module(), sd, "unet", prefix="model.diffusion_model.")
    msg = str(e.value)
    assert msg.startswith("unet: ")
    assert "model.diffusion_model.0.weight: expected [4, 3], found [4, 5]" in msg


def test_load_component_lists_missing_and_unexpected_keys():
    sd = dict(small_module().state_dict())
    del sd["1.bias"]
    sd["2.weight"] = T
    module = small_module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_component(module, sd, "vae")
    msg = str(e.value)
    assert "vae:" in msg and "1 missing key(s): '1.bias'" in msg and "1 unexpected key(s): '2.weight'" in msg
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())  # nothing copied on error
