"""Hires fix end to end on a tiny SD1 checkpoint, step by step against the spec: the second pass starts from the
first pass's latents upscaled (latent mode) or decoded / upscaled / re-encoded (image mode), plus the ImageRNG's first
draw for the new shape times the first sigma of the tail of an int(steps / denoise)-step schedule; every `Hires …`
key is written, read back by settings_from_infotext and replayed bit for bit. Tolerance: 1e-5 on latents."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab import hires as hf
from inpaintlab.infotext import parse_infotext, settings_from_infotext
from inpaintlab.samplers import ImageRNG, build_sigmas

FIRST = dict(steps=3, sampler="Euler", cfg_scale=6.0, seed=11, width=32, height=32)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def first(pipe):
    return pipe.txt2img("a red house", **FIRST)


def _expected_start(pipe, latent, steps, denoise, label="Automatic", sampler="Euler"):
    run, total = hf.second_pass_steps(FIRST["steps"], steps, denoise)
    sigmas = build_sigmas(pipe.schedule, sampler, label, total)[total - (run - 1) - 1:]
    noise = ImageRNG(tuple(latent.shape[1:]), [FIRST["seed"]], latent.device).next()
    return latent + noise * sigmas[0], sigmas


def test_latent_mode_second_pass(pipe, first):
    res = pipe.txt2img("a red house", enable_hr=True, hr_scale=1.5, hr_upscaler="Latent (bicubic)",
                       denoising_strength=0.6, **FIRST)
    target = hf.target_size(32, 32, 1.5)
    latent = hf.upscale_latent(first.samples, "Latent (bicubic)", target)
    start, sigmas = _expected_start(pipe, latent, 0, 0.6)
    assert res.images[0].size == (48, 48) and len(res.sigmas) == 4      # 3 steps over the tail of 5
    assert torch.allclose(res.sigmas, sigmas)
    assert (res.start_latent - start).abs().max().item() <= 1e-5
    fields = parse_infotext(res.infotext)
    assert fields["Size"] == "32x32" and fields["Denoising strength"] == "0.6"
    assert fields["Hires upscale"] == "1.5" and fields["Hires upscaler"] == "Latent (bicubic)"
    keys = list(fields)
    assert keys.index("Denoising strength") < keys.index("Hires upscale") < keys.index("Hires upscaler")


def test_image_mode_resize_and_replay(pipe, first):
    kw = dict(enable_hr=True, hr_resize_x=48, hr_resize_y=32, hr_upscaler="Lanczos", hr_second_pass_steps=2,
              hr_prompt="a blue house", hr_sampler="DPM++ 2M", hr_cfg=4.0, denoising_strength=0.5)
    res = pipe.txt2img("a red house", **kw, **FIRST)
    target = hf.target_size(32, 32, 2.0, 48, 32)
    assert target == hf.HiresTarget(48, 48, 0, 2) and res.images[0].size == (48, 32)   # cover, crop 2 latent rows
    with torch.inference_mode():
        decoded = torch.cat([pipe._decode_one(z).float() for z in first.samples])
    pixels = hf.upscale_decoded(decoded, target, "Lanczos")
    latent = hf.crop_latent(pipe.encode_image(pipe.to_vae_input(pixels), torch.Generator().manual_seed(11)), target)
    start, _ = _expected_start(pipe, latent, 2, 0.5, "Automatic", "DPM++ 2M")
    assert (res.start_latent - start).abs().max().item() <= 1e-5
    fields = parse_infotext(res.infotext)
    for key, value in {"Hires resize": "48x32", "Hires upscaler": "Lanczos", "Hires steps": "2",
                       "Hires prompt": "a blue house", "Hires sampler": "DPM++ 2M", "Hires CFG Scale": "4.0",
                       "Hires schedule type": "Karras"}.items():
        assert fields[key] == value, key
    settings = settings_from_infotext(res.infotext, strict=True)
    assert settings["enable_hr"] is True and settings["hr_resize_x"] == 48 and settings["hr_cfg"] == 4.0
    prompt, negative = settings.pop("prompt"), settings.pop("negative_prompt")
    settings = {k: v for k, v in settings.items() if k in registry.for_command("txt2img")}   # as the CLI does
    again = pipe.txt2img(prompt, negative, **settings)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[0]))
    assert again.infotext == res.infotext


def test_hires_errors(pipe):
    with pytest.raises(ValueError, match="hr_scale"):
        pipe.txt2img("x", enable_hr=True, hr_scale=0.0, **FIRST)
    with pytest.raises(ValueError, match="upscaler"):
        pipe.txt2img("x", enable_hr=True, hr_upscaler="R-ESRGAN 4x+", **FIRST)


def test_cli_hires_and_from_png_replay(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    from inpaintlab.cli import main

    base = ["txt2img", "--model", str(tiny_checkpoint), "--device", "cpu", "--no-progress"]
    assert main([*base, "--prompt", "a red house", "--steps", "2", "--sampler", "Euler", "--seed", "5", "--width", "32",
                 "--height", "32", "--enable-hr", "--hr-scale", "1.5", "--hr-upscaler", "Latent (nearest-exact)",
                 "--denoising-strength", "0.55", "--out", str(tmp_path / "a")]) == 0
    (png,) = (tmp_path / "a").glob("*.png")
    assert main([*base, "--from-png", str(png), "--strict", "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").glob("*.png")
    a, b = Image.open(png), Image.open(again)
    assert a.size == (48, 48) and np.array_equal(np.asarray(a), np.asarray(b))
    assert a.text["parameters"] == b.text["parameters"]
    assert "Hires upscaler: Latent (nearest-exact)" in a.text["parameters"]
    capsys.readouterr()


def test_extra_noise_in_the_hires_pass(pipe, first):
    res = pipe.txt2img("a red house", enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.6,
                       img2img_extra_noise=0.25, **FIRST)
    latent = hf.upscale_latent(first.samples, "Latent", hf.target_size(32, 32, 1.5))
    start, sigmas = _expected_start(pipe, latent, 0, 0.6)
    noise = (start - latent) / sigmas[0]
    assert (res.start_latent - (start + noise * 0.25)).abs().max().item() <= 1e-5
    assert "Extra noise: 0.25" in res.infotext
    plain = pipe.txt2img("a red house", img2img_extra_noise=0.25, **FIRST)     # plain txt2img: not applied
    assert "Extra noise" not in plain.infotext and torch.equal(plain.samples, first.samples)
