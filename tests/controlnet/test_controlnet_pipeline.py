"""ControlNet inpaint end to end on the tiny checkpoints: inpaint_only's restore and paste-back, weight 0 and a
closed window equal to no ControlNet bit for bit, A1111's inpaint-tab fallback, several units, LaMa noise, infotext."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.controlnet import ControlNetUnit
from inpaintlab.controlnet import preprocess as pp
from inpaintlab.controlnet.unit import parse_unit_infotext
from inpaintlab.infotext import parse_infotext

SIZE = 64
FAST = dict(steps=4, seed=7, sampler="Euler", cfg_scale=5.0)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def picture():
    g = np.random.default_rng(3)
    image = Image.fromarray(g.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    mask = Image.new("L", (SIZE, SIZE))
    ImageDraw.Draw(mask).rectangle((20, 16, 43, 39), fill=255)
    return image, mask


def test_inpaint_only_restore_and_paste_back(pipe, tiny_controlnet, picture):
    """txt2img with the unit's own image and mask: outside the dilated latent mask every x0 estimate is the hint's
    latent; after decoding, pixels the paste-back mask leaves at 0 are the input's, bit for bit."""
    image, mask = picture
    denoised = []
    result = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnet=tiny_controlnet, controlnet_image=image,
                          controlnet_mask=mask, callback=lambda d: denoised.append(d["denoised"].clone()), **FAST)
    hint4 = pp.make_hint(pp.combine_image_and_mask(image, mask), SIZE, SIZE)
    keep = 1 - pp.restore_mask(hint4)
    assert 0 < keep.mean() < 1
    x0 = pipe.encode_image(hint4[:, :3] * 2 - 1, torch.Generator().manual_seed(7))
    assert len(denoised) == 4
    for d in denoised:
        # CFG (scale 5) combines two restored rows: float32 rounding of the eps round trip, amplified.
        assert ((d - x0) * keep).abs().max().item() < 1e-4 * x0.abs().max().item()
    out = np.asarray(result.images[0])
    outside = pp.paste_back_mask(hint4)[0, 0].numpy() == 0
    assert outside.mean() > 0.3
    assert np.array_equal(out[outside], np.asarray(image)[outside])
    inside = pp.paste_back_mask(hint4)[0, 0].numpy() == 1
    assert not np.array_equal(out[inside], np.asarray(image)[inside])
    fields = parse_infotext(result.infotext)
    unit = parse_unit_infotext(fields["ControlNet 0"])
    assert unit["preprocessor"] == "inpaint_only" and unit["model"] == "tiny-controlnet"
    assert fields["ControlNet 0"].startswith("Module: inpaint_only, Model: tiny-controlnet [")
    assert '"Module: inpaint_only, Model: tiny-controlnet [' in result.infotext


@pytest.mark.parametrize("setting", [dict(control_weight=0.0), dict(guidance_start=1.0)])
def test_weight_zero_or_closed_window_is_no_controlnet(pipe, tiny_controlnet, picture, setting):
    image, mask = picture
    plain = pipe.inpaint(image, mask, "a cat", **FAST)
    controlled = pipe.inpaint(image, mask, "a cat", controlnet=tiny_controlnet,
                              controlnet_preprocessor="inpaint_global_harmonious", **setting, **FAST)
    assert torch.equal(plain.samples, controlled.samples)
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(controlled.images[0]))
    active = pipe.inpaint(image, mask, "a cat", controlnet=tiny_controlnet,
                          controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    assert not torch.equal(plain.samples, active.samples)


def test_inpaint_tab_fallback_and_two_units(pipe, tiny_controlnet, picture):
    """With an A1111 mask inpaint_only becomes inpaint_global_harmonious (no restore, no paste-back); two units
    are summed, each with its own infotext entry."""
    image, mask = picture
    only = pipe.inpaint(image, mask, "a cat", controlnet=tiny_controlnet, controlnet_preprocessor="inpaint_only",
                        **FAST)
    harmonious = pipe.inpaint(image, mask, "a cat", controlnet=tiny_controlnet,
                              controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    assert torch.equal(only.samples, harmonious.samples)
    assert parse_infotext(only.infotext)["ControlNet 0"].startswith("Module: inpaint, ")
    units = [ControlNetUnit(tiny_controlnet, "inpaint_global_harmonious", weight=0.5),
             ControlNetUnit(tiny_controlnet, "inpaint_global_harmonious", weight=0.5, control_mode="prompt")]
    two = pipe.inpaint(image, mask, "a cat", controlnets=units, **FAST)
    fields = parse_infotext(two.infotext)
    assert parse_unit_infotext(fields["ControlNet 1"])["control_mode"] == "My prompt is more important"
    assert not torch.equal(two.samples, harmonious.samples)
    with pytest.raises(ValueError, match="either"):
        pipe.inpaint(image, mask, "a cat", controlnet=tiny_controlnet, controlnets=units, **FAST)


def test_lama_noise_hack(pipe, tiny_controlnet, picture):
    image, mask = picture
    filled = Image.new("RGB", image.size, (128, 64, 200))
    result = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnet=tiny_controlnet, controlnet_image=image,
                          controlnet_mask=mask, controlnet_preprocessor="inpaint_only+lama", controlnet_lama=filled,
                          **FAST)
    rgba = pp.lama_fill(pp.combine_image_and_mask(image, mask), filled=filled)
    x0 = pipe.encode_image(pp.make_hint(rgba, SIZE, SIZE)[:, :3] * 2 - 1, torch.Generator().manual_seed(7))
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    from inpaintlab.controlnet.inject import SD1_SCHEDULE

    expected = SD1_SCHEDULE.q_sample(x0, 999, noise) * result.sigmas[0]
    assert torch.allclose(result.start_latent, expected, rtol=1e-6, atol=1e-6)


def test_nine_channel_model_takes_the_hint_conditioning(tiny_inpainting_checkpoint, tiny_controlnet, picture,
                                                        monkeypatch):
    """With a 9-channel UNet the unit's mask and masked hint replace A1111's conditioning channels at every call."""
    from inpaintlab.controlnet import ControlledUNet

    pipe9 = inpaintlab.load(tiny_inpainting_checkpoint, kernels="torch")
    image, mask = picture
    seen = []
    real = ControlledUNet.__call__

    def spy(self, x, timesteps, context, cond_mark=None):
        seen.append([u.inpaint_cond for u in self.units])
        return real(self, x, timesteps, context, cond_mark)

    monkeypatch.setattr(ControlledUNet, "__call__", spy)
    result = pipe9.inpaint(image, mask, "a cat", controlnet=tiny_controlnet,
                           controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    monkeypatch.undo()
    hint4 = pp.make_hint(pp.combine_image_and_mask(image, pp.extension_mask(mask, 4)), SIZE, SIZE)
    cond = seen[0][0]
    assert len(seen) == 4 and cond.shape == (1, 5, 8, 8)
    assert torch.equal(cond[:, :1], pp.inpaint_model_mask(hint4))
    m = (hint4[:, 3:4] > 0.5).float()
    masked = pipe9.encode_image((hint4[:, :3] * 2 - 1) * (1 - m), torch.Generator().manual_seed(7))
    assert torch.equal(cond[:, 1:], masked)
    plain = pipe9.inpaint(image, mask, "a cat", **FAST)
    assert not torch.equal(plain.samples, result.samples) and torch.isfinite(result.samples).all()


def test_prompt_schedules_and_and_compose(pipe, tiny_controlnet, picture):
    """Prompt editing and AND run through ScheduledCFGDenoiser; the ControlNet sits below it unchanged."""
    image, mask = picture
    prompt = "[a cat:a dog:2] AND a sofa :0.5"
    plain = pipe.inpaint(image, mask, prompt, **FAST)
    off = pipe.inpaint(image, mask, prompt, controlnet=tiny_controlnet, control_weight=0.0,
                       control_mode="ControlNet is more important",
                       controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    on = pipe.inpaint(image, mask, prompt, controlnet=tiny_controlnet, control_mode="ControlNet is more important",
                      controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    assert torch.equal(plain.samples, off.samples)
    assert not torch.equal(plain.samples, on.samples)


def test_soft_inpainting_composes(pipe, tiny_controlnet, picture):
    """Soft inpainting's blend wraps CFG, the ControlNet sits below it: weight 0 leaves the soft result unchanged."""
    image, mask = picture
    plain = pipe.inpaint(image, mask, "a cat", soft_inpainting=True, **FAST)
    off = pipe.inpaint(image, mask, "a cat", soft_inpainting=True, controlnet=tiny_controlnet, control_weight=0.0,
                       controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    on = pipe.inpaint(image, mask, "a cat", soft_inpainting=True, controlnet=tiny_controlnet,
                      controlnet_preprocessor="inpaint_global_harmonious", **FAST)
    assert torch.equal(plain.samples, off.samples)
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(off.images[0]))
    assert not torch.equal(plain.samples, on.samples)
    assert "Soft inpainting enabled" in on.infotext and "ControlNet 0" in on.infotext
