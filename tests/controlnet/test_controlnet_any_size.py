"""ControlNet at a latent size that is not a multiple of 8 (SD1's four levels: 9 -> 5 -> 3 -> 2, 6 -> 3 -> 2 -> 1).

The ControlNet itself only runs the encoder, so its residuals have the skips' sizes and need no resize: checked
against diffusers.ControlNetModel directly. The UNet's decoder resizes at each skip as A1111's hijacked `cat` does in
sd-webui-controlnet's hooked forward: checked against diffusers' UNet with the residuals made to resize that way
(`a1111_sizes`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unet"))
from a1111_sizes import a1111_sizes  # noqa: E402
from cn_helpers import diffusers_controlnet, diffusers_unet, inputs, small_controlnet, small_unet  # noqa: E402

pytest.importorskip("diffusers")

# fp32; measured max|diff| / max|value| 0 .. 2e-6 on this CPU (see test_controlnet_parity).
REL_TOL = 1e-5
HW = (9, 6)  # a 72x48-pixel image


@pytest.mark.parametrize("in_channels", [4, 9])
def test_controlnet_and_unet_at_odd_latent_size(tmp_path, in_channels):
    cn, unet = small_controlnet(), small_unet(in_channels=in_channels)
    ref_cn = diffusers_controlnet(cn, tmp_path / "cn.safetensors")
    ref = diffusers_unet(unet, tmp_path)
    x, t, context, hint = inputs(unet.config, hw=HW)
    with torch.inference_mode():
        control = cn(x[:, :4], hint, t, context)
        down, mid = ref_cn(x[:, :4], t, encoder_hidden_states=context, controlnet_cond=hint.expand(2, -1, -1, -1),
                           conditioning_scale=1.0, return_dict=False)
        for i, (a, b) in enumerate(zip(control, [*down, mid])):
            assert a.shape == b.shape, f"residual {i}"
            assert (a - b).abs().max().item() <= REL_TOL * b.abs().max().item(), f"residual {i}"
        ours = unet(x, t, context, control=control)
        with a1111_sizes(ref):
            theirs = ref(x, t, encoder_hidden_states=context, down_block_additional_residuals=tuple(control[:-1]),
                         mid_block_additional_residual=control[-1]).sample
        plain = unet(x, t, context)
    assert ours.shape == (2, 4, *HW)
    scale = theirs.abs().max().item()
    assert scale > 0.1
    assert (ours - theirs).abs().max().item() <= REL_TOL * scale
    assert (ours - plain).abs().max().item() > 1e3 * REL_TOL * scale, "the residuals must change eps"
