"""Latents that are not multiples of the UNet's downscale (A1111 generates at every multiple of 8 pixels: 600x400 ->
a 75x50 latent, a 128x96 hires first pass -> 16x12).

Oracle: diffusers' UNet2DConditionModel (loaded through diffusers' own ldm converter) made to resize the way A1111's
UNet hijack does (`a1111_sizes`). Plain diffusers resizes elsewhere (before the upsampler's conv, from the smaller
map) and disagrees at such sizes: measured relative max|diff| 0.17-0.32 here, checked below as a negative control; at
multiples of the downscale all three agree (test_unet_parity, test_unet_sd2_sdxl).
"""
from __future__ import annotations

import pytest
import torch
from a1111_sizes import a1111_sizes
from sd2_sdxl_helpers import diffusers_convert as convert_sd2_sdxl
from unet_helpers import PREFIX, diffusers_convert, reinit_, tiny_config

from inpaintlab.unet import SDXL_UNET, UNetConfig, UNetModel, sdxl_adm_vector

diffusers = pytest.importorskip("diffusers")

# fp32; measured max|diff| 0 (bit-identical) on this CPU; the bound allows another summation order.
REL_TOL = 1e-5
# Odd sizes for three-level tiny UNets (downscale 4): 15 -> 8 -> 4 and 13 -> 7 -> 4 resize at two skips; 10 -> 5 -> 3
# at one; 6 -> 3 -> 2 at both.
SIZES = [(15, 10), (13, 6)]


def tiny_sd2(in_channels: int = 4) -> UNetConfig:
    return UNetConfig(in_channels=in_channels, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1,
                      attention_resolutions=(2, 1), num_head_channels=64, use_linear_in_transformer=True,
                      context_dim=1024)


def tiny_sdxl(in_channels: int = 4) -> UNetConfig:
    return UNetConfig(in_channels=in_channels, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                      attention_resolutions=(4, 2), num_head_channels=64, use_linear_in_transformer=True,
                      transformer_depth=(0, 1, 2), context_dim=1280, adm_in_channels=64 + 1536)


def _oracle(model: UNetModel):
    convert = diffusers_convert if model.config.context_dim not in (1024, 1280) else convert_sd2_sdxl
    dconfig, converted = convert({PREFIX + k: v for k, v in model.state_dict().items()}, model.config)
    ref = diffusers.UNet2DConditionModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def _inputs(cfg: UNetConfig, hw, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, *hw, generator=g)
    context = torch.randn(2, 77, cfg.context_dim, generator=g)
    return x, torch.tensor([999.0, 17.25]), context


def _compare(model: UNetModel, hw, extra_ours=None, extra_theirs=None):
    ref = _oracle(model)
    x, t, context = _inputs(model.config, hw)
    with torch.inference_mode():
        ours = model(x, t, context, *(extra_ours or ()))
        with a1111_sizes(ref):
            theirs = ref(x, t, encoder_hidden_states=context, **(extra_theirs or {})).sample
        plain = ref(x, t, encoder_hidden_states=context, **(extra_theirs or {})).sample
    assert ours.shape == (2, 4, *hw)
    scale = theirs.abs().max().item()
    assert scale > 0.1, "degenerate outputs would make the comparison meaningless"
    err = (ours - theirs).abs().max().item()
    assert err <= REL_TOL * scale, f"max|diff| {err:.3g} vs tolerance {REL_TOL * scale:.3g} (eps scale {scale:.3g})"
    # Where diffusers' own resizing differs from A1111's: far outside the tolerance (the oracle is not vacuous).
    assert (plain - theirs).abs().max().item() > 1e3 * REL_TOL * scale


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("in_channels", [4, 9])
def test_sd1_any_size_matches_a1111_rule(hw, in_channels):
    _compare(reinit_(UNetModel(tiny_config(in_channels))).eval(), hw)


@pytest.mark.parametrize("in_channels", [4, 9])
def test_sd2_any_size_matches_a1111_rule(in_channels):
    _compare(reinit_(UNetModel(tiny_sd2(in_channels))).eval(), SIZES[0])


@pytest.mark.parametrize("in_channels", [4, 9])
def test_sdxl_any_size_matches_a1111_rule(in_channels):
    model = reinit_(UNetModel(tiny_sdxl(in_channels))).eval()
    pooled = torch.randn(2, 64, generator=torch.Generator().manual_seed(5))
    sizes = ((104, 120), (0, 0), (104, 120))
    time_ids = torch.tensor([[*sizes[0], *sizes[1], *sizes[2]]] * 2, dtype=torch.float32)
    _compare(model, SIZES[1], (sdxl_adm_vector(pooled, *sizes),),
             {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}})


def test_resize_rule_by_hand():
    """The decoder's upsampled map is resized to its skip by nearest (src = floor(dst * in / out)): a 16-row map
    resized to 15 rows drops source row 15, keeping rows 0..14 as they are (16 / 15 > 1, floor(i * 16/15) = i)."""
    from inpaintlab.unet.model import skip_cat

    h = torch.arange(16 * 4, dtype=torch.float64).reshape(1, 1, 16, 4)
    skip = torch.randn(1, 2, 15, 3, dtype=torch.float64)
    out = skip_cat(h, skip)
    assert out.shape == (1, 3, 15, 3)
    rows = [int(i * 16 / 15) for i in range(15)]
    cols = [int(j * 4 / 3) for j in range(3)]
    assert torch.equal(out[0, 0], h[0, 0][rows][:, cols])
    assert torch.equal(out[:, 1:], skip)
    same = torch.randn(1, 1, 15, 3, dtype=torch.float64)
    assert torch.equal(skip_cat(same, skip), torch.cat([same, skip], 1))


@pytest.mark.parametrize("config,hw", [(UNetConfig(), (50, 75)), (UNetConfig(), (12, 16)),
                                        (UNetConfig(in_channels=9), (50, 75)), (SDXL_UNET, (12, 16))])
def test_full_size_shapes(config, hw):
    """Full SD1 (4 and 9 channels) and SDXL on the meta device: 600x400 and 128x96 pixel sizes run."""
    with torch.device("meta"):
        model = UNetModel(config)
        x = torch.empty(1, config.in_channels, *hw)
        y = None if config.adm_in_channels is None else torch.empty(1, config.adm_in_channels)
        out = model(x, torch.zeros(1), torch.empty(1, 77, config.context_dim), y)
    assert out.shape == (1, 4, *hw)


def test_empty_spatial_size_refused():
    model = UNetModel(tiny_config())
    with pytest.raises(ValueError, match="at least 1, got 0x8"):
        model(torch.randn(2, 4, 0, 8), torch.zeros(2), torch.randn(2, 77, 64))
