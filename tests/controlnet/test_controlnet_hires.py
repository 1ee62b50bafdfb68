"""ControlNet units with hires fix, as sd-webui-controlnet runs them in A1111's two-pass txt2img.

The extension preprocesses each unit once (Pixel Perfect's resolution from the first pass's size), then
`detectmap_proc`s that map to the first pass's and to the second pass's size; every UNet call picks a hint by size;
in the second pass canny / mlsd units take the soft `0.825^(12-i)` scales, tile_colorfix doubles its radius, the
guidance window counts the second pass's own steps from 0 (A1111's `launch_sampling` resets the counter), and
inpaint_only restores and pastes back at the final size.

The end-to-end run is compared with a reference built from the spec with k-diffusion's own eps denoiser and Euler
sampler (measured: equal to 0 on CPU; tolerance 1e-5 on latents); the `ControlNet 0` and `Hires …` keys are written,
read back by `--from-png` and replayed bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.clip import encode_prompts
from inpaintlab.controlnet import ControlNetUnit
from inpaintlab.controlnet import preprocess as pp
from inpaintlab.controlnet import preprocessors as pure
from inpaintlab.controlnet.inject import ControlInput, ControlledUNet, in_hires_pass
from inpaintlab.controlnet.load import load_controlnet
from inpaintlab.infotext import parse_infotext

from cn_helpers import SMALL_UNET, small_controlnet, small_unet

FIRST = dict(steps=3, sampler="Euler", cfg_scale=6.0, seed=21, width=32, height=32)
HIRES = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=5, denoising_strength=0.6)


def sd1_alphas_cumprod() -> torch.Tensor:
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas)).float()


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def picture():
    """A non-square unit image (40x56) with edges for canny."""
    g = np.random.default_rng(8)
    img = Image.fromarray(g.integers(0, 80, (40, 56, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 8, 40, 30), fill=(220, 200, 60))
    draw.ellipse((30, 4, 52, 36), fill=(30, 160, 230))
    return img


def _map_hint(detected: np.ndarray, width: int, height: int) -> torch.Tensor:
    rgba = np.concatenate([detected, np.zeros_like(detected[:, :, :1])], axis=2)
    hint = pp.detectmap(rgba, width, height, "Crop and Resize", inpaint=False)[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(hint)).permute(2, 0, 1)[None] / 255.0


def reference_hires_canny(pipe, kdiff, model, image, prompt, *, weight, end, thresholds):
    """Both passes from the spec: hints, scales, guidance window and CFG written out; k-diffusion samples."""
    a, b = thresholds
    rgb = np.asarray(image)
    res = round(max(32 / 40, 32 / 56) * min(40, 56))  # Pixel Perfect, Crop and Resize, from the FIRST pass's size
    detected = pure.run_preprocessor("canny", rgb, res, a, b)
    hints = {1: _map_hint(detected, 32, 32), 2: _map_hint(detected, 48, 48)}
    # canny: soft in pass 2. SD1 has 13 residuals (0.825^(12-i)); the tiny ControlNet has fewer, the exponent counts
    # down to 0 at the middle block all the same (`inject.control_scales`).
    scales = {1: lambda n: [weight] * n, 2: lambda n: [weight * 0.825 ** (n - 1 - i) for i in range(n)]}
    cond = encode_prompts(pipe.text_encoder, pipe.tokenizer, [prompt])
    uncond = encode_prompts(pipe.text_encoder, pipe.tokenizer, [""])
    state = {"pass": 1, "step": 0, "steps": 1}

    def eps_model(x_in, t, context):
        active = 0.0 <= state["step"] / state["steps"] <= end
        if not active:
            return pipe.unet(x_in, t, context)
        control = model(x_in, hints[state["pass"]], t, context)
        control = [c * s for c, s in zip(control, scales[state["pass"]](len(control)))]
        return pipe.unet(x_in, t, context, control=control)

    denoiser = kdiff.external.DiscreteEpsDDPMDenoiser(eps_model, sd1_alphas_cumprod(), quantize=False)

    def cfg_model(x, sigma):
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), context=torch.cat([cond, uncond]))
        return out[1:] + (out[:1] - out[1:]) * FIRST["cfg_scale"]

    def callback(d):
        state["step"] = d["i"]  # A1111's counter: set after step i, so step i's calls see max(i - 1, 0)

    def noise(h, w):
        return torch.randn((4, h, w), generator=torch.Generator().manual_seed(FIRST["seed"]))[None]

    with torch.no_grad():
        sigmas = denoiser.get_sigmas(3)
        state.update(steps=3)
        first = kdiff.sampling.sample_euler(cfg_model, noise(4, 4) * sigmas[0], sigmas, callback=callback,
                                            disable=True)
        latent = F.interpolate(first, size=(6, 6), mode="bilinear", antialias=False)
        total = int(5 / 0.6)                            # 8: the second pass runs the last 5 steps of 8
        sigmas = denoiser.get_sigmas(total)[total - 4 - 1:]
        state.update({"pass": 2, "step": 0, "steps": 5})  # launch_sampling resets the counter
        second = kdiff.sampling.sample_euler(cfg_model, latent + noise(6, 6) * sigmas[0], sigmas, callback=callback,
                                             disable=True)
    return first, second, hints, res


def test_hires_canny_unit_equals_the_reference(pipe, kdiff, tiny_controlnet, picture):
    model = load_controlnet(tiny_controlnet)
    unit = ControlNetUnit(tiny_controlnet, preprocessor="canny", image=picture, weight=0.8, guidance_end=0.3,
                          pixel_perfect=True, threshold_a=50, threshold_b=120)
    passes = []
    result = pipe.txt2img("a red house", controlnets=[unit], **FIRST, **HIRES,
                          callback=lambda d: passes.append(d["x"].shape[-1]))
    assert passes == [4] * 3 + [6] * 5
    first, second, hints, res = reference_hires_canny(pipe, kdiff, model, picture, "a red house", weight=0.8,
                                                      end=0.3, thresholds=(50, 120))
    assert result.images[0].size == (48, 48)
    err = (result.samples - second).abs().max().item()
    assert err <= 1e-5, err
    # The reference discriminates: the second pass's hint is not the first's resized, nor a map preprocessed afresh
    # with Pixel Perfect from the hires size (which would be another resolution).
    rerun = _map_hint(pure.run_preprocessor("canny", np.asarray(picture), res * 3 // 2, 50, 120), 48, 48)
    assert not torch.equal(rerun, hints[2]) and hints[1].shape[-1] == 32 and hints[2].shape[-1] == 48
    plain = pipe.txt2img("a red house", controlnets=[ControlNetUnit(tiny_controlnet, preprocessor="canny",
                                                                    image=picture, weight=0.8, guidance_end=0.3,
                                                                    pixel_perfect=True, threshold_a=50,
                                                                    threshold_b=120)], **FIRST)
    assert (plain.samples - first).abs().max().item() <= 1e-5  # the first pass alone is the reference's
    fields = parse_infotext(result.infotext)
    assert fields["Size"] == "32x32" and fields["Hires upscale"] == "1.5" and fields["Hires steps"] == "5"
    assert fields["ControlNet 0"].startswith("Module: canny, Model: tiny-controlnet [")
    assert "Threshold A: 50.0, Threshold B: 120.0, Guidance Start: 0.0, Guidance End: 0.3, Pixel Perfect: True, " \
           "Control Mode: Balanced" in fields["ControlNet 0"]


def _units(hint, hr_hint, **kw):
    model = small_controlnet(3)
    return (ControlInput(model, hint, **kw), ControlInput(model, hr_hint, **kw))


def test_second_pass_selection_soft_scales_and_colorfix_radius():
    """ControlledUNet with both hint sets equals the single-set wrapper the extension's second pass amounts to:
    canny's soft scales (as "My prompt is more important") and tile_colorfix's doubled radius."""
    torch.manual_seed(0)
    unet = small_unet(4)
    context = torch.randn(2, 77, SMALL_UNET.context_dim)
    t = torch.tensor([620.5, 620.5])
    hint, hr_hint = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 48, 48)
    low, high = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 6, 6)
    lr_unit, hr_unit = _units(hint, hr_hint, weight=0.7, hires_soft=True)
    both = ControlledUNet(unet, [lr_unit], 4, hr_units=[hr_unit])
    with torch.no_grad():
        assert torch.equal(both(low, t, context), ControlledUNet(unet, [lr_unit], 4)(low, t, context))
        soft = ControlInput(hr_unit.model, hr_hint, weight=0.7, control_mode="My prompt is more important")
        assert torch.equal(both(high, t, context), ControlledUNet(unet, [soft], 4)(high, t, context))
        assert both.hires
        # a unit of another kind keeps Balanced scales in the second pass
        lr_plain, hr_plain = _units(hint, hr_hint, weight=0.7)
        other = ControlledUNet(unet, [lr_plain], 4, hr_units=[hr_plain])
        assert torch.equal(other(high, t, context), ControlledUNet(unet, [hr_plain], 4)(high, t, context))
        # tile_colorfix: radius 3 in the first pass, 6 in the second
        lat, hr_lat = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 6, 6)
        lr_cf = ControlInput(lr_plain.model, hint, weight=0.9, colorfix=(3, None), colorfix_latent=lat)
        hr_cf = ControlInput(lr_plain.model, hr_hint, weight=0.9, colorfix=(3, None), colorfix_latent=hr_lat)
        cf = ControlledUNet(unet, [lr_cf], 4, hr_units=[hr_cf])
        doubled = ControlInput(lr_plain.model, hr_hint, weight=0.9, colorfix=(6, None), colorfix_latent=hr_lat)
        assert torch.equal(cf(high, t, context), ControlledUNet(unet, [doubled], 4)(high, t, context))
        assert torch.equal(cf(low, t, context), ControlledUNet(unet, [lr_cf], 4)(low, t, context))
        assert not torch.equal(cf(high, t, context), ControlledUNet(unet, [hr_cf], 4)(high, t, context))


def test_the_extensions_pass_test():
    assert not in_hires_pass(4, 32, 48) and in_hires_pass(6, 32, 48)
    assert in_hires_pass(5, 32, 48)          # 40 px: as close to either, so the second pass
    assert in_hires_pass(4, 32, 32)          # hr_scale 1: every call counts as the second pass
    with pytest.raises(ValueError, match="hr_units must pair"):
        ControlledUNet(lambda *a: a, [], 3, hr_units=[object()])


def test_inpaint_only_restores_and_pastes_back_at_the_hires_size(pipe, tiny_controlnet, picture):
    mask = Image.new("L", picture.size)
    ImageDraw.Draw(mask).rectangle((14, 10, 37, 29), fill=255)
    denoised = []
    result = pipe.txt2img("a cat", controlnet=tiny_controlnet, controlnet_image=picture, controlnet_mask=mask,
                          callback=lambda d: denoised.append(d["denoised"].clone()), **FIRST, **HIRES)
    hint4 = pp.make_hint(pp.combine_image_and_mask(picture, mask), 48, 48)
    keep = 1 - pp.restore_mask(hint4)
    x0 = pipe.encode_image(hint4[:, :3] * 2 - 1, torch.Generator().manual_seed(FIRST["seed"]))
    second = [d for d in denoised if d.shape[-1] == 6]
    assert len(second) == 5 and 0 < keep.mean() < 1
    for d in second:
        # Outside the dilated latent mask every x0 estimate is the hires hint's latent, up to the extension's own
        # mismatch: it restores with the schedule buffers at round(t), the sampler converts with the exact sigma
        # (the second pass's truncated schedule has fractional t), and CFG 6 amplifies the rows' difference 11 times.
        outside_err = ((d - x0) * keep).abs().max().item()
        inside = ((d - x0) * (1 - keep)).abs().max().item()
        assert outside_err < 2e-2 * x0.abs().max().item()
        assert outside_err < 0.1 * inside
    out = np.asarray(result.images[0])
    outside = pp.paste_back_mask(hint4)[0, 0].numpy() == 0
    # where the paste-back weight is 0 the image is the hires hint's RGB (float32 from a cubic resize, which can
    # overshoot: clipped to [0, 1] as the extension does), truncated to uint8 as A1111 does
    raw = (255.0 * np.clip(hint4[0, :3].permute(1, 2, 0).numpy(), 0, 1)).astype(np.uint8)
    assert outside.mean() > 0.3 and np.array_equal(out[outside], raw[outside])
    assert np.abs(out[~outside].astype(int) - raw[~outside]).mean() > 10


def test_cli_hires_controlnet_from_png_replay(tmp_path, tiny_checkpoint, tiny_controlnet, picture, monkeypatch):
    import shutil

    from inpaintlab.cli import main
    from inpaintlab.infotext import read_png_infotext, settings_from_infotext

    picture.save(tmp_path / "edges.png")
    shutil.copy(tiny_controlnet, tmp_path / "tiny-controlnet.safetensors")
    base = ["txt2img", "--model", str(tiny_checkpoint), "--kernels", "torch", "--no-progress"]
    assert main([*base, "--prompt", "a red house", "--steps", "2", "--sampler", "Euler", "--seed", "5", "--width",
                 "32", "--height", "32", "--enable-hr", "--hr-scale", "1.5", "--denoising-strength", "0.55",
                 "--hr-upscaler", "Latent (nearest-exact)", "--controlnet", str(tmp_path / "tiny-controlnet.safetensors"),
                 "--controlnet-preprocessor", "canny", "--controlnet-image", str(tmp_path / "edges.png"),
                 "--controlnet-pixel-perfect", "--controlnet-threshold-a", "60", "--control-weight", "0.7",
                 "--guidance-end", "0.5", "--out", str(tmp_path / "a")]) == 0
    (png,) = (tmp_path / "a").glob("*.png")
    text = read_png_infotext(png)
    assert 'ControlNet 0: "Module: canny, Model: tiny-controlnet [' in text and "Hires upscale: 1.5" in text
    back = settings_from_infotext(text, strict=True)
    assert (back["enable_hr"], back["controlnet_preprocessor"], back["controlnet_pixel_perfect"],
            back["controlnet_threshold_a"], back["control_weight"]) == (True, "canny", True, 60.0, 0.7)
    monkeypatch.chdir(tmp_path)  # the model is found by its recorded name; the unit's image is given again
    assert main([*base, "--from-png", str(png), "--controlnet-image", str(tmp_path / "edges.png"), "--strict",
                 "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").glob("*.png")
    a, b = Image.open(png), Image.open(again)
    assert a.size == (48, 48) and np.array_equal(np.asarray(a), np.asarray(b))
    assert a.text["parameters"] == b.text["parameters"]


def test_one_sided_hires_resize_takes_the_second_pass_size(pipe, tiny_controlnet, picture):
    """`Hires resize: 48x0`: the extension's target would have a 0 side (it reads hr_resize_y as given); the hint is
    made at the second pass's real size instead."""
    unit = ControlNetUnit(tiny_controlnet, preprocessor="none", image=picture, weight=0.5)
    kw = dict(FIRST, steps=2, enable_hr=True, hr_resize_x=48, hr_resize_y=0, hr_second_pass_steps=1)
    result = pipe.txt2img("a red house", controlnets=[unit], **kw)
    plain = pipe.txt2img("a red house", **kw)
    assert result.images[0].size == (48, 48) and not torch.equal(result.samples, plain.samples)
    assert "Hires resize: 48x0" in result.infotext


def test_nine_channel_hires_takes_the_hires_hint_conditioning(tiny_inpainting_checkpoint, tiny_controlnet, picture):
    """A 9-channel UNet's conditioning is the unit's (latent mask, masked-hint latent) in both passes, each at its
    pass's size: every second-pass UNet call sees the hires hint's conditioning."""
    pipe9 = inpaintlab.load(tiny_inpainting_checkpoint, kernels="torch")
    mask = Image.new("L", picture.size)
    ImageDraw.Draw(mask).rectangle((14, 10, 37, 29), fill=255)
    seen = []
    unet_forward = pipe9.unet.forward

    def spy(x, *args, **kwargs):
        seen.append(x[:1, 4:].clone())
        return unet_forward(x, *args, **kwargs)

    pipe9.unet.forward = spy
    kw = dict(FIRST, steps=2, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2)
    result = pipe9.txt2img("a cat", controlnets=[ControlNetUnit(tiny_controlnet, image=picture, mask=mask)], **kw)
    hint4 = pp.make_hint(pp.combine_image_and_mask(picture, mask), 48, 48)
    masked = pipe9.encode_image((hint4[:, :3] * 2 - 1) * (1 - (hint4[:, 3:4] > 0.5).float()),
                                torch.Generator().manual_seed(FIRST["seed"]))
    expected = torch.cat([pp.inpaint_model_mask(hint4), masked], dim=1)
    second = [c for c in seen if c.shape[-1] == 6]
    assert result.images[0].size == (48, 48) and len(second) == 2
    assert all(torch.equal(c, expected) for c in second)
