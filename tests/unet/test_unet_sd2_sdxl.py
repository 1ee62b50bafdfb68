"""SD2 (Linear projections, 64-channel heads, context 1024) and SDXL (per-level depths 0/2/10, ADM `label_emb`) UNets
against diffusers' UNet2DConditionModel loaded through diffusers' own single-file converter; full-size layouts on the
meta device.

SDXL's ADM input goes to diffusers as `added_cond_kwargs` (pooled `text_embeds` and the six `time_ids`), so the size
embedding (`inpaintlab.unet.sdxl_adm_vector`) is checked together with `label_emb`.
"""
from __future__ import annotations

import math

import pytest
import torch
from sd2_sdxl_helpers import diffusers_convert
from unet_helpers import PREFIX, reinit_

from inpaintlab.unet import SD2_UNET, SDXL_UNET, UNetConfig, UNetModel, sdxl_adm_vector, size_embedding

safetensors_torch = pytest.importorskip("safetensors.torch")
diffusers = pytest.importorskip("diffusers")

# fp32. Measured max|diff| on this CPU: 0 (bit-identical) for SD2 and SDXL, 4 and 9 channels (outputs up to ~2.6);
# the bound allows another summation order (other BLAS, other SDPA backend) at fp32 rounding.
REL_TOL = 1e-5


def tiny_sd2(in_channels: int = 4) -> UNetConfig:
    # Widths 64/128/128 (heads of 64: 1, 2, 2), attention at the two upper levels, SD2's context width.
    return UNetConfig(in_channels=in_channels, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1,
                      attention_resolutions=(2, 1), num_head_channels=64, use_linear_in_transformer=True,
                      context_dim=1024)


def tiny_sdxl(in_channels: int = 4) -> UNetConfig:
    # SDXL's shape at small width: no attention at level 0, depths 1 and 2 below it (SDXL 2 and 10), middle as the last
    # level; pooled width 64 + 6x256 size features.
    return UNetConfig(in_channels=in_channels, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                      attention_resolutions=(4, 2), num_head_channels=64, use_linear_in_transformer=True,
                      transformer_depth=(0, 1, 2), context_dim=1280, adm_in_channels=64 + 1536)


def _oracle(model: UNetModel, tmp_path) -> torch.nn.Module:
    path = tmp_path / "unet.safetensors"
    safetensors_torch.save_file({PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    dconfig, converted = diffusers_convert(safetensors_torch.load_file(str(path)), model.config)
    ref = diffusers.UNet2DConditionModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def _inputs(cfg: UNetConfig, seed: int = 1, hw=(16, 24)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, *hw, generator=g)
    t = torch.tensor([999.0, 17.25])
    context = torch.randn(2, 77, cfg.context_dim, generator=g)
    return x, t, context


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    scale = theirs.abs().max().item()
    assert scale > 0.1, "degenerate outputs would make the comparison meaningless"
    err = (ours - theirs).abs().max().item()
    assert err <= REL_TOL * scale, f"max|diff| {err:.3g} vs tolerance {REL_TOL * scale:.3g} (scale {scale:.3g})"
    return err / scale


@pytest.mark.parametrize("in_channels", [4, 9])
def test_sd2_matches_diffusers(tmp_path, in_channels):
    model = reinit_(UNetModel(tiny_sd2(in_channels))).eval()
    assert isinstance(model.input_blocks[1][1].proj_in, torch.nn.Linear)
    ref = _oracle(model, tmp_path)
    x, t, context = _inputs(model.config)
    with torch.inference_mode():
        _close(model(x, t, context), ref(x, t, encoder_hidden_states=context).sample)


@pytest.mark.parametrize("in_channels", [4, 9])
def test_sdxl_matches_diffusers_with_added_cond_kwargs(tmp_path, in_channels):
    model = reinit_(UNetModel(tiny_sdxl(in_channels))).eval()
    ref = _oracle(model, tmp_path)
    x, t, context = _inputs(model.config, hw=(16, 16))
    pooled = torch.randn(2, 64, generator=torch.Generator().manual_seed(5))
    sizes = ((1024, 768), (32, 0), (896, 640))  # (h, w), (top, left), (h, w): all six numbers distinct from their pair
    time_ids = torch.tensor([[*sizes[0], *sizes[1], *sizes[2]]] * 2, dtype=torch.float32)
    y = sdxl_adm_vector(pooled, *sizes)
    with torch.inference_mode():
        ours = model(x, t, context, y)
        theirs = ref(x, t, encoder_hidden_states=context,
                     added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        _close(ours, theirs)
        # Negative control: (h, w) read as (w, h) must be far outside the tolerance.
        swapped = model(x, t, context, sdxl_adm_vector(pooled, sizes[0][::-1], sizes[1], sizes[2][::-1]))
    assert (swapped - theirs).abs().max().item() > 100 * REL_TOL * theirs.abs().max().item()


def test_size_embedding_hand_computed():
    """E(n)[i] = cos(n * f_i), E(n)[128 + i] = sin(n * f_i), f_i = 10000^(-i/128); six numbers in h, w order."""
    emb = size_embedding((1024, 768), (0, 16), (1024, 1024))[0].double()
    assert emb.shape == (1536,)
    for slot, n in enumerate((1024, 768, 0, 16, 1024, 1024)):
        for i in (0, 1, 37, 127):
            f = math.exp(-math.log(10000.0) * i / 128)
            assert emb[256 * slot + i].item() == pytest.approx(math.cos(n * f), abs=2e-4)  # fp32 argument rounding
            assert emb[256 * slot + 128 + i].item() == pytest.approx(math.sin(n * f), abs=2e-4)
    # crop (0, 0) embeds as 128 ones then 128 zeros, exactly
    zero = size_embedding((1, 1), (0, 0), (1, 1))[0, 512:768]
    assert torch.equal(zero, torch.cat([torch.ones(128), torch.zeros(128)]))


def test_adm_input_checked():
    model = UNetModel(tiny_sdxl())
    x, t, context = _inputs(model.config, hw=(8, 8))
    with pytest.raises(ValueError, match="ADM vector"):
        model(x, t, context)
    with pytest.raises(ValueError, match="no ADM"):
        UNetModel(tiny_sd2())(x, t, torch.zeros(2, 77, 1024), torch.zeros(2, 4))


@pytest.mark.parametrize("config,keys,params", [
    (SD2_UNET, 686, 865_910_724),
    (UNetConfig(**{**SD2_UNET.__dict__, "in_channels": 9}), 686, 865_925_124),
    (SDXL_UNET, 1680, 2_567_463_684),
    (UNetConfig(**{**SDXL_UNET.__dict__, "in_channels": 9}), 1680, 2_567_478_084),
])
def test_full_size_layout_matches_diffusers_converter(config, keys, params):
    """Full SD2 / SDXL (and their 9-channel variants) on the meta device: key and parameter counts, config inference
    from the shapes, and diffusers' converter maps every key onto its own model's parameter of the same shape."""
    with torch.device("meta"):
        sd = UNetModel(config).state_dict()
    assert len(sd) == keys and sum(v.numel() for v in sd.values()) == params
    assert UNetConfig.from_state_dict(sd) == config
    dconfig, converted = diffusers_convert({PREFIX + k: v for k, v in sd.items()}, config)
    with torch.device("meta"):
        theirs = diffusers.UNet2DConditionModel(**dconfig).state_dict()
    assert converted.keys() == theirs.keys()
    assert all(converted[k].shape == theirs[k].shape for k in theirs)


def test_full_size_facts():
    with torch.device("meta"):
        xl = UNetModel(SDXL_UNET).state_dict()
        sd2 = UNetModel(SD2_UNET).state_dict()
    assert xl["label_emb.0.0.weight"].shape == (1280, 2816)
    assert xl["input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight"].shape == (1280, 2048)
    assert "middle_block.1.transformer_blocks.9.ff.net.2.weight" in xl
    assert not any(k.startswith(("input_blocks.1.1.", "output_blocks.8.1.")) for k in xl)  # no attention at level 0
    assert xl["output_blocks.2.2.conv.weight"].shape == (1280, 1280, 3, 3)
    assert sd2["input_blocks.1.1.proj_in.weight"].shape == (320, 320)  # Linear, not [320, 320, 1, 1]
    assert sd2["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape == (320, 1024)
    assert SD2_UNET.heads_at(1280) == (20, 64) and SDXL_UNET.heads_at(640) == (10, 64)
