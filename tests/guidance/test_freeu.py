"""FreeU (sd-webui-freeu semantics) against float64 re-derivations and diffusers' FreeU where they agree."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from guidance_helpers import randn, tiny_unet, unet_inputs

from inpaintlab.guidance.freeu import (FreeUSettings, FreeUStage, backbone_scale, channel_mask, filter_skip,
                                       freeu_concat, ratio_to_region, schedule_ratio, stage_widths)
from inpaintlab.unet import UNetConfig, UNetModel


def test_ratio_to_region_examples():
    assert ratio_to_region(0.5, 0, 1280) == (0, 640, False)
    assert ratio_to_region(0.5, 0.75, 1280) == (320, 960, True)
    assert int(channel_mask(0.5, 0, 1280).sum()) == 641  # inclusive end, as the extension
    assert int(channel_mask(0.5, 0, 640).sum()) == 321
    assert ratio_to_region(-0.25, 0.5, 100) == (25, 50, False)
    assert ratio_to_region(0.5, -0.25, 100) == (25, 75, True)  # offset -> 0.75: complement of 25..75


def _filter_f64(x: np.ndarray, cutoff: float, scale: float, high: float) -> np.ndarray:
    f = np.fft.fftshift(np.fft.fft2(x.astype(np.float64)), axes=(-2, -1))
    h, w = x.shape[-2:]
    m = np.full(x.shape, high)
    tr, tc = max(1, int(np.floor(h // 2 * cutoff))), max(1, int(np.floor(w // 2 * cutoff)))
    m[..., h // 2 - tr:h // 2 + tr, w // 2 - tc:w // 2 + tc] = scale
    return np.fft.ifft2(np.fft.ifftshift(f * m, axes=(-2, -1))).real


@pytest.mark.parametrize("hw,cutoff,scale,high", [((8, 6), 0.0, 0.2, 1.0), ((7, 9), 0.5, 0.6, 1.3), ((8, 8), 1, 0, 2)])
def test_filter_skip_matches_float64_fft(hw, cutoff, scale, high):
    x = randn(2, 3, *hw, seed=2)
    ref = _filter_f64(x.numpy(), cutoff, scale, high)
    assert np.abs(filter_skip(x, cutoff, scale, high).numpy() - ref).max() < 1e-5
    assert filter_skip(x, cutoff, 1, 1) is x


def test_filter_with_cutoff_zero_changes_only_the_2x2_box_and_its_mirror():
    # The box holds DC and the -1 frequencies; taking the real part of the inverse FFT mirrors the change to +1.
    x = randn(1, 2, 8, 8, seed=3)
    diff = np.fft.fftshift(np.fft.fft2((filter_skip(x, 0, 0.3, 1) - x).double().numpy()), axes=(-2, -1))
    outside = np.abs(diff).copy()
    outside[..., 3:6, 3:6] = 0
    assert outside.max() < 1e-5 and np.abs(diff[..., 3:5, 3:5]).max() > 0.1


def test_backbone_scale_v2_matches_float64():
    h = randn(2, 8, 5, 6, seed=4)
    m = h.double().mean(1, keepdim=True).numpy()
    lo, hi = m.min(axis=(1, 2, 3), keepdims=True), m.max(axis=(1, 2, 3), keepdims=True)
    ref = 1 + (1.4 - 1) * (m - lo) / (hi - lo)
    assert np.abs(backbone_scale(h, 1.4, "2").numpy() - ref).max() < 1e-6
    assert backbone_scale(h, 1.4, "1") == 1.4
    assert torch.isnan(backbone_scale(torch.ones(1, 4, 1, 1), 1.0, "2")).all()  # 0/0, as the extension


@pytest.mark.parametrize("version", ["1", "2"])
def test_freeu_concat_matches_float64(version):
    h, skip = randn(2, 16, 6, 8, seed=5), randn(2, 8, 6, 8, seed=6)
    stage = FreeUStage(1.3, 0.4, backbone_offset=0.25, backbone_width=0.5, skip_cutoff=0.5, skip_high_end_factor=1.1)
    ratio = 0.75
    h2, s2 = freeu_concat(h, skip, stage, ratio, version)
    b = 1 + (1.3 - 1) * ratio
    hd = h.double().numpy()
    scale = b if version == "1" else backbone_scale(h.double(), b, "2").numpy()
    ref_h = hd.copy()
    ref_h[:, 4:13] = (hd * scale)[:, 4:13]  # round(0.25*16)=4 .. round(0.75*16)=12 inclusive
    assert np.abs(h2.numpy() - ref_h).max() < 1e-5
    ref_s = _filter_f64(skip.numpy(), 0.5, 1 + (0.4 - 1) * ratio, 1 + (1.1 - 1) * ratio)
    assert np.abs(s2.numpy() - ref_s).max() < 1e-5
    h3, s3 = freeu_concat(h, skip, stage, 0.0, version)
    assert h3 is h and s3 is skip


def test_agrees_with_diffusers_fourier_filter_and_apply_freeu_except_the_boundary_channel():
    torch_utils = pytest.importorskip("diffusers.utils.torch_utils")
    h, skip = randn(2, 1280 // 80, 8, 8, seed=7), randn(2, 8, 8, 8, seed=8)
    assert torch.allclose(filter_skip(skip, 0, 0.6, 1), torch_utils.fourier_filter(skip, 1, 0.6), atol=1e-6)
    ref_h, ref_s = torch_utils.apply_freeu(0, h.clone(), skip.clone(), s1=0.6, s2=0.4, b1=1.1, b2=1.2)
    ours_h, ours_s = freeu_concat(h, skip, FreeUStage(1.1, 0.6), 1.0, "1")
    assert torch.allclose(ours_s, ref_s, atol=1e-6)
    c = h.shape[1] // 2
    assert torch.equal(ours_h[:, :c], ref_h[:, :c]) and torch.equal(ours_h[:, c + 1:], ref_h[:, c + 1:])
    # The extension scales one more channel (inclusive end), diffusers exactly C/2.
    assert torch.equal(ours_h[:, c], h[:, c] * 1.1) and torch.equal(ref_h[:, c], h[:, c])


def test_schedule_counts_calls_and_quantises_to_steps():
    assert [schedule_ratio(i, 0.0, 1.0, 0.0, 4) for i in range(6)] == [1, 1, 1, 1, 0, 0]
    assert [schedule_ratio(i, 0.25, 0.75, 0.0, 8) for i in range(8)] == [0, 0, 1, 1, 1, 1, 0, 0]
    assert schedule_ratio(1, 2, 6, 1.0, 8) == 0.5  # int = absolute steps; smooth ramp up
    assert schedule_ratio(4, 2, 6, 1.0, 8) == 0.5  # and down: 1 + (4-2)/(2-6)
    assert schedule_ratio(3, 2, 2, 0.5, 8) == 0.0


def test_stage_membership_by_h_channels_sd1_and_sdxl_on_meta():
    with torch.device("meta"):
        sd1 = UNetModel(UNetConfig())
        sdxl = UNetModel(UNetConfig(channel_mult=(1, 2, 4), attention_resolutions=(4, 2), num_head_channels=64,
                                    transformer_depth=(0, 2, 10), context_dim=2048, use_linear_in_transformer=True,
                                    adm_in_channels=2816))
    for unet, stages in ((sd1, [0] * 7 + [1] * 3 + [2] * 2), (sdxl, [0] * 4 + [1] * 3 + [2] * 2)):
        assert stage_widths(unet) == (1280, 640, 320)
        hook = FreeUSettings().hook(unet, steps=10)
        assert len(hook._handles) == len(stages)
        hook.remove()
        h_ch, got = unet.middle_block[-1].out_channels, []
        for block in unet.output_blocks:
            got.append({1280: 0, 640: 1, 320: 2}[h_ch])
            h_ch = block[0].out_channels
        assert got == stages


@torch.no_grad()
def test_hook_on_unet_neutral_is_bit_exact_and_active_matches_manual_decoder():
    unet = tiny_unet()
    x, t, ctx = unet_inputs()
    plain = unet(x, t, ctx)
    neutral = FreeUSettings(stages=(FreeUStage(),) * 3, version="1").hook(unet, steps=4)
    assert torch.equal(unet(x, t, ctx), plain)
    neutral.remove()
    settings = FreeUSettings(stages=(FreeUStage(1.2, 0.9), FreeUStage(1.4, 0.2), FreeUStage(0.9, 1.1)), version="2")
    hook = settings.hook(unet, steps=4)
    out = unet(x, t, ctx)
    hook.remove()
    # Manual decoder: the UNet's own forward with freeu_concat before each cat.
    emb = unet.time_embed(__import__("inpaintlab.unet.blocks", fromlist=["x"]).timestep_embedding(t, 32))
    h, skips = x, []
    for block in unet.input_blocks:
        h = block(h, emb, ctx)
        skips.append(h)
    h = unet.middle_block(h, emb, ctx)
    stage = {128: 0, 64: 1, 32: 2}
    for block in unet.output_blocks:
        hh, ss = freeu_concat(h, skips.pop(), settings.stage(stage[h.shape[1]]), 1.0, "2")
        h = block(torch.cat([hh, ss], 1), emb, ctx)
    assert torch.equal(out, unet.out(h))
    assert (out - plain).abs().max() > 1e-2


def test_infotext_round_trip_and_legacy_field():
    s = FreeUSettings(stages=(FreeUStage(1.1, 0.6), FreeUStage(1.2, 0.4), FreeUStage()), version="2")
    info = s.infotext()
    assert info == {"FreeU Stages": '[{"backbone_factor": 1.1, "skip_factor": 0.6}, '
                                    '{"backbone_factor": 1.2, "skip_factor": 0.4}]',
                    "FreeU Schedule": "0.0, 1.0, 0.0", "FreeU Version": "2"}
    assert FreeUSettings.from_infotext(info["FreeU Stages"], info["FreeU Schedule"], info["FreeU Version"]) == s
    mid_default = FreeUSettings(stages=(FreeUStage(), FreeUStage(skip_cutoff=0.5)), version="1")
    assert json.loads(mid_default.infotext()["FreeU Stages"]) == [{}, {"skip_cutoff": 0.5}]
    legacy = FreeUSettings.from_infotext('[{"skip_threshold": 0.3}]')
    assert legacy.stages[0].skip_cutoff == 0.3
    with pytest.raises(ValueError, match="FreeU Stages"):
        FreeUSettings.from_infotext("[1, 2]")
    with pytest.raises(ValueError, match="version"):
        FreeUSettings(version="3")
