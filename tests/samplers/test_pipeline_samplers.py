"""New samplers through the inpaint pipeline on the tiny checkpoint: a k-diffusion SDE sampler (Brownian noise over
the full schedule, second order) and A1111's DDIM (VP start latent, mask blended into the model input, eta noise).

Oracle: the same run rebuilt from the public pieces (denoiser stack, schedule / timesteps, noise, sampler function).
"""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.infotext import parse_infotext
from inpaintlab.samplers import (CFGDenoiser, EpsDenoiser, ImageRNG, InpaintBlend, InpaintBlendInput,
                                 TimestepEpsModel, brownian_noise_sampler, build_sigmas, get_timesteps,
                                 img2img_start, img2img_steps, sample_ddim, sample_dpmpp_sde)
from inpaintlab.masking import blend_latents


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def _picture():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 64)[None, :, None] * np.ones((64, 1, 3))
    return Image.fromarray(np.clip(base + rng.integers(-40, 40, (64, 64, 3)), 0, 255).astype(np.uint8))


def _mask():
    m = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(m).rectangle((16, 16, 47, 47), fill=255)
    return m


@pytest.mark.parametrize("sampler,eta", [("DPM++ SDE", 0.7), ("DDIM", 0.5)])
def test_new_samplers_in_the_pipeline(pipe, sampler, eta):
    settings = dict(steps=3, cfg_scale=5.0, seed=77, batch_size=2, sampler=sampler, eta=eta, denoising_strength=0.8)
    image, mask = _picture(), _mask()
    result = pipe.inpaint(image, mask, "a door", "blur", **settings)
    again = pipe.inpaint(image, mask, "a door", "blur", **settings)
    assert result.images[0].tobytes() == again.images[0].tobytes()  # same seed, same bytes
    assert torch.isfinite(result.samples).all()
    out, src = np.asarray(result.images[1]), np.asarray(image)
    untouched = np.asarray(result.overlay_mask) == 0
    np.testing.assert_array_equal(out[untouched], src[untouched])  # overlay exact outside the mask

    # rebuild the run from the public pieces
    steps, seeds = 3, [77, 78]
    cond = pipe.encode_prompts(["a door"] * 2)
    uncond = pipe.encode_prompts(["blur"] * 2)
    init, nmask = result.init_latent, result.latent_mask
    rng = ImageRNG(tuple(init.shape[1:]), seeds)
    noise = rng.next()
    t_enc = img2img_steps(steps, 0.8)
    with torch.inference_mode():
        if sampler == "DDIM":
            model = InpaintBlendInput(CFGDenoiser(TimestepEpsModel(pipe.unet, pipe.schedule), cond, uncond, 5.0),
                                      init, nmask)
            ts = get_timesteps(steps)
            x = img2img_start(init, noise, ts, t_enc, pipe.schedule.alphas_cumprod)
            ref = sample_ddim(model, x, ts[:t_enc], pipe.schedule.alphas_cumprod, disable=True, eta=eta,
                              noise_sampler=rng.noise_sampler)
            assert torch.equal(result.sigmas, ts[:t_enc])
            assert rng.draws == 1 + t_enc - 1  # one draw per DDIM call
            key = "Eta DDIM"
        else:
            model = InpaintBlend(CFGDenoiser(EpsDenoiser(pipe.unet, pipe.schedule), cond, uncond, 5.0), init, nmask)
            full = build_sigmas(pipe.schedule, sampler, "Automatic", steps)
            sigmas = full[steps - t_enc - 1:]
            x = init + noise * sigmas[0]
            ref = sample_dpmpp_sde(model, x, sigmas, disable=True, eta=eta,
                                   noise_sampler=brownian_noise_sampler(x, full, seeds))
            key = "Eta"
    assert torch.equal(result.start_latent, x)
    assert torch.equal(result.samples, blend_latents(ref, init, nmask))
    fields = parse_infotext(result.infotexts[1])
    assert fields["Sampler"] == sampler and fields[key] == str(eta) and fields["Seed"] == "78"


def test_second_order_samplers_double_the_prompt_schedule(tiny_checkpoint):
    # "[a:b:2]" switches at denoiser call 2: for Heun (second order) the schedule spans 2 * steps calls
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")  # its own: the spy below must not leak
    seen = []
    original = pipe._conditioning

    def spy(prompt, negative_prompt, batch, clip_skip, steps, *rest):
        seen.append(steps)
        return original(prompt, negative_prompt, batch, clip_skip, steps, *rest)

    pipe._conditioning = spy
    common = dict(steps=2, seed=1, width=64, height=64)
    heun = pipe.txt2img("[a cat:a dog:2]", sampler="Heun", **common)
    pipe.txt2img("[a cat:a dog:2]", sampler="Euler", **common)
    pipe.txt2img("[a cat:a dog:2]", sampler="Restart", s_churn=1.0, **common)
    assert seen == [4, 2, 4]
    assert torch.isfinite(heun.samples).all()
    assert "Sigma churn" not in heun.infotext
    churned = pipe.txt2img("x", sampler="Euler", s_churn=1.0, s_noise=1.01, **common)
    fields = parse_infotext(churned.infotext)
    assert fields["Sigma churn"] == "1.0" and fields["Sigma noise"] == "1.01" and "Eta" not in fields


def test_cli_sampler_settings_and_from_png_round_trip(tiny_checkpoint, tmp_path):
    from inpaintlab.cli import main
    from inpaintlab.infotext import read_png_infotext, settings_from_infotext

    out = tmp_path / "a"
    assert main(["txt2img", "--model", str(tiny_checkpoint), "--prompt", "x", "--width", "32", "--height", "32",
                 "--steps", "2", "--seed", "5", "--sampler", "DPM2 a", "--scheduler", "KL Optimal", "--eta", "0.4",
                 "--s-noise", "1.02", "--s-churn", "3", "--ensd", "31337", "--kernels", "torch",
                 "--out", str(out)]) == 0
    png = next(out.glob("*.png"))
    text = read_png_infotext(png)
    fields = parse_infotext(text)
    assert fields["Sampler"] == "DPM2 a" and fields["Schedule type"] == "KL Optimal"
    assert fields["Eta"] == "0.4" and fields["Sigma noise"] == "1.02" and fields["ENSD"] == "31337"
    assert "Sigma churn" not in fields  # DPM2 a takes only s_noise
    settings = settings_from_infotext(text)
    assert (settings["sampler"], settings["scheduler"], settings["eta"], settings["s_noise"]) == (
        "DPM2 a", "KL Optimal", 0.4, 1.02)
    # eta 0: A1111 does not record ENSD for an ancestral sampler that adds no noise
    again = tmp_path / "b"
    assert main(["txt2img", "--model", str(tiny_checkpoint), "--prompt", "x", "--width", "32", "--height", "32",
                 "--steps", "2", "--seed", "5", "--sampler", "Euler a", "--eta", "0", "--ensd", "31337",
                 "--kernels", "torch", "--out", str(again)]) == 0
    fields = parse_infotext(read_png_infotext(next(again.glob("*.png"))))
    assert fields["Eta"] == "0.0" and "ENSD" not in fields
    assert settings_from_infotext("x\nSteps: 3, Sampler: DDIM, Eta DDIM: 0.3, Sigma churn: 1.5, Seed: 1")["eta"] == 0.3


@pytest.mark.parametrize("sampler", ["DDIM", "DPM++ SDE", "UniPC"])
def test_controlnet_with_new_samplers(pipe, tmp_path, sampler):
    # weight 0 is no ControlNet, bit for bit, on the timestep path and with Brownian noise too; weight 1 runs
    from inpaintlab.tiny import make_tiny_controlnet

    controlnet = make_tiny_controlnet(tmp_path / "cn.safetensors")
    image, mask = _picture(), _mask()
    settings = dict(steps=4, seed=5, sampler=sampler, denoising_strength=1.0)  # UniPC img2img needs t_enc >= 3
    plain = pipe.inpaint(image, mask, "a door", **settings)
    off = pipe.inpaint(image, mask, "a door", controlnet=controlnet, control_weight=0.0,
                       controlnet_preprocessor="inpaint_global_harmonious", **settings)
    assert off.images[0].tobytes() == plain.images[0].tobytes()
    on = pipe.inpaint(image, mask, "a door", controlnet=controlnet, controlnet_preprocessor="inpaint_global_harmonious",
                      **settings)
    assert torch.isfinite(on.samples).all() and not torch.equal(on.samples, plain.samples)
