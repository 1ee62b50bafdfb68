"""Oracle parity: our ControlNet vs diffusers.ControlNetModel loaded through diffusers' own single-file converter,
and our UNet with the residuals vs diffusers' UNet with down/mid_block_additional_residual."""
from __future__ import annotations

import pytest
import torch
from cn_helpers import diffusers_controlnet, diffusers_unet, inputs, small_controlnet, small_unet

pytest.importorskip("diffusers")

# fp32, the same arithmetic in another order. Measured max|diff| / max|residual| over the 13 residuals: 2.0e-6;
# UNet eps with residuals: 1.0e-6 (4- and 9-channel).
REL_TOL = 1e-5


def _compare(ours, theirs):
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"residual {i}: {tuple(a.shape)} vs {tuple(b.shape)}"
        scale = b.abs().max().item()
        assert scale > 1e-2, f"residual {i} is degenerate"
        err = (a - b).abs().max().item()
        worst = max(worst, err / scale)
        assert err <= REL_TOL * scale, f"residual {i}: max|diff| {err:.3g} vs scale {scale:.3g}"
    return worst


def test_residuals_match_diffusers(tmp_path):
    model = small_controlnet()
    ref = diffusers_controlnet(model, tmp_path / "cn.safetensors")
    x, t, context, hint = inputs(model.config.unet)
    with torch.inference_mode():
        ours = model(x, hint, t, context)
        down, mid = ref(x, t, encoder_hidden_states=context, controlnet_cond=hint.expand(2, -1, -1, -1),
                        conditioning_scale=1.0, return_dict=False)
    assert len(ours) == 13
    print(f"max relative residual error {_compare(ours, list(down) + [mid]):.3g}")


def test_negative_control_hint_block(tmp_path):
    """A changed hint-encoder weight must move the residuals far beyond the tolerance (the check can fail)."""
    model = small_controlnet()
    ref = diffusers_controlnet(model, tmp_path / "cn.safetensors")
    with torch.no_grad():
        model.input_hint_block[4].weight.mul_(-1)
    x, t, context, hint = inputs(model.config.unet)
    with torch.inference_mode():
        ours = model(x, hint, t, context)[0]
        theirs = ref(x, t, encoder_hidden_states=context, controlnet_cond=hint.expand(2, -1, -1, -1),
                     return_dict=False)[0][0]
    assert (ours - theirs).abs().max().item() > 100 * REL_TOL * theirs.abs().max().item()


@pytest.mark.parametrize("in_channels", [4, 9])
def test_unet_with_residuals_matches_diffusers(tmp_path, in_channels):
    cn, unet = small_controlnet(), small_unet(in_channels=in_channels)
    ref = diffusers_unet(unet, tmp_path)
    x, t, context, hint = inputs(unet.config)
    with torch.inference_mode():
        control = cn(x[:, :4], hint, t, context)
        ours = unet(x, t, context, control=control)
        theirs = ref(x, t, encoder_hidden_states=context, down_block_additional_residuals=tuple(control[:-1]),
                     mid_block_additional_residual=control[-1]).sample
        plain = unet(x, t, context)
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    print(f"UNet+residuals max relative error {err / scale:.3g}")
    assert err <= REL_TOL * scale
    assert (ours - plain).abs().max().item() > 1e3 * REL_TOL * scale, "the residuals must change eps"
