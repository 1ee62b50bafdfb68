"""ControlledUNet: per-call residuals, control modes with CFG's cond/uncond rows, guidance windows counted like
A1111, several units, the 9-channel interaction, and weight 0 leaving the UNet output bit for bit unchanged."""
from __future__ import annotations

import pytest
import torch
from cn_helpers import inputs, small_controlnet, small_unet

from inpaintlab.controlnet.inject import ControlInput, ControlledUNet, control_scales
from inpaintlab.samplers import CFGDenoiser, EpsDenoiser
from inpaintlab.samplers.sampling import sample_euler


class Recorder:
    """Stands in for the UNet: records the residuals it is given and returns a fixed function of x."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, context, control=None):
        self.calls.append({"x": x.clone(), "control": control})
        return 0.1 * x[:, :4]


@pytest.fixture(scope="module")
def cn():
    return small_controlnet()


def _raw(cn, x, t, context, hint):
    with torch.inference_mode():
        return cn(x[:, :4], hint, t, context)


@pytest.mark.parametrize("mode", ["Balanced", "My prompt is more important", "ControlNet is more important"])
def test_mode_scales_and_uncond_rows(cn, mode):
    x, t, context, hint = inputs(cn.config.unet, b=4)
    rec = Recorder()
    unet = ControlledUNet(rec, [ControlInput(cn, hint, weight=0.8, control_mode=mode)], sampling_steps=10)
    mark = torch.tensor([1.0, 1.0, 0.0, 0.0])
    with torch.inference_mode():
        unet(x, t, context, cond_mark=mark)
    raw = _raw(cn, x, t, context, hint)
    scales = control_scales(0.8, mode)
    for i, (got, r) in enumerate(zip(rec.calls[0]["control"], raw)):
        assert torch.equal(got[:2], r[:2] * scales[i])
        if mode == "ControlNet is more important":
            assert torch.all(got[2:] == 0)
        else:
            assert torch.equal(got[2:], r[2:] * scales[i])


def test_weight_zero_is_bit_identical(cn):
    unet = small_unet()
    x, t, context, hint = inputs(cn.config.unet)
    with torch.inference_mode():
        plain = unet(x, t, context)
        for mode in ("Balanced", "ControlNet is more important"):
            controlled = ControlledUNet(unet, [ControlInput(cn, hint, weight=0.0, control_mode=mode)], 10)
            assert torch.equal(controlled(x, t, context), plain)
        assert not torch.equal(ControlledUNet(unet, [ControlInput(cn, hint)], 10)(x, t, context), plain)


def test_two_units_sum(cn):
    other = small_controlnet(seed=5)
    x, t, context, hint = inputs(cn.config.unet)
    rec = Recorder()
    units = [ControlInput(cn, hint, weight=0.5), ControlInput(other, hint.flip(-1), weight=1.2,
                                                               control_mode="prompt")]
    with torch.inference_mode():
        ControlledUNet(rec, units, 10)(x, t, context)
    a, b = _raw(cn, x, t, context, hint), _raw(other, x, t, context, hint.flip(-1))
    sb = control_scales(1.2, "prompt")
    for i, got in enumerate(rec.calls[0]["control"]):
        assert torch.equal(got, a[i] * 0.5 + b[i] * sb[i])


def test_guidance_window_in_a_sampling_run(cn):
    """Euler over 10 steps, window [0.3, 0.6]: steps whose counter (the previous step's index) lies in it."""
    _, _, context, hint = inputs(cn.config.unet, b=1)
    rec = Recorder()
    controlled = ControlledUNet(rec, [ControlInput(cn, hint, guidance_start=0.3, guidance_end=0.6)], 10)
    model = CFGDenoiser(EpsDenoiser(controlled, torch.linspace(0.99, 0.01, 1000).cumprod(0).clamp_min(1e-4)),
                        context, context, 5.0)
    sigmas = torch.linspace(10, 0, 11)
    x = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(0)) * 10
    with torch.inference_mode():
        sample_euler(model, x, sigmas, callback=controlled.step_callback)
    acted = [c["control"] is not None for c in rec.calls]
    assert acted == [False, False, False, False, True, True, True, True, False, False]


def test_cfg_marks_rows(cn):
    """CFG tells the ControlledUNet which rows are cond: one batch, split calls (different token lengths), AND."""
    _, t, context, hint = inputs(cn.config.unet, b=1)
    seen = []

    class Marks(ControlledUNet):
        def __call__(self, x, timesteps, context, cond_mark=None):
            seen.append(cond_mark.tolist())
            return 0.1 * x

    controlled = Marks(None, [ControlInput(cn, hint)], 10)
    eps = EpsDenoiser(controlled, torch.linspace(0.99, 0.01, 1000).cumprod(0).clamp_min(1e-4))
    x, sigma = torch.randn(2, 4, 8, 16), torch.tensor([3.0, 3.0])
    c77, c154 = context.expand(2, -1, -1), torch.cat([context, context], 1).expand(2, -1, -1)
    CFGDenoiser(eps, c77, c77, 7.0)(x, sigma)
    CFGDenoiser(eps, c154, c77, 7.0)(x, sigma)
    CFGDenoiser(eps, torch.cat([context, context]), context, 7.0, cond_weights=[0.5, 0.5])(x, sigma)
    assert seen == [[1, 1, 0, 0], [1, 1], [0, 0], [1, 1, 1, 1, 0, 0]]


def test_nine_channel_unet(cn):
    """The ControlNet sees x[:, :4]; an inpaint hint's conditioning replaces the UNet's 5 extra channels."""
    x, t, context, hint = inputs(small_unet(in_channels=9).config)
    rec = Recorder()
    cond = torch.randn(1, 5, 8, 16)
    with torch.inference_mode():
        ControlledUNet(rec, [ControlInput(cn, hint, inpaint_cond=cond)], 10)(x, t, context)
    got = rec.calls[0]
    assert torch.equal(got["x"][:, :4], x[:, :4]) and torch.equal(got["x"][:, 4:], cond.expand(2, -1, -1, -1))
    raw = _raw(cn, x, t, context, hint)
    assert all(torch.equal(a, b) for a, b in zip(got["control"], raw))


def test_restore_applies_outside_the_window(cn):
    """inpaint_only's x0 restore acts at every call, even when the unit's residuals are off."""
    x, t, context, hint = inputs(cn.config.unet)
    rec = Recorder()
    x0 = torch.randn(1, 4, 8, 16)
    mask = torch.zeros(1, 1, 8, 16)
    controlled = ControlledUNet(rec, [ControlInput(cn, hint, guidance_start=0.5, x0_origin=x0,
                                                   restore_mask=mask)], 10)
    with torch.inference_mode():
        eps = controlled(x, t, context)
    assert rec.calls[0]["control"] is None
    assert not torch.allclose(eps, 0.1 * x)
