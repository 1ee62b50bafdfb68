"""Hires fix with a 9-channel (inpainting) checkpoint, step by step against the spec (§1.4.5): the second pass's image
conditioning is cat[mask of ones, VAE(conditioning image)], its posterior drawn from the generator the first pass's
own conditioning left (A1111's global one), with the conditioning image

* latent modes, Conditional mask weight 1: mid-grey (0 in [-1, 1]), as txt2img's (built at the upscaled size);
* latent modes, weight w < 1: `(1 - w) · decode(upscaled latent)`;
* image modes: `(1 - w) · upscaled image in [0, 1]` (A1111 passes [0, 1] where [-1, 1] is meant);

cropped with the latent for `Hires resize`. End to end on the tiny 9-channel checkpoint: infotext written, read back
and replayed bit for bit, by Python and by `inpaintlab txt2img --from-png`. Tolerance: 1e-5 on latents."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import inpaintlab
from inpaintlab import hires as hf
from inpaintlab import settings as registry
from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, read_png_infotext, settings_from_infotext
from inpaintlab.pipeline import Technique

FIRST = dict(steps=3, sampler="Euler", cfg_scale=6.0, seed=5, width=32, height=24)


class Record(Technique):
    """Keeps the image conditioning the second pass samples with (the first pass is txt2img)."""

    def on_step(self, job, d):
        if job.kind == "img2img":
            self.image_cond = job.image_cond.clone()


@pytest.fixture(scope="module")
def pipe(tiny_inpainting_checkpoint):
    return inpaintlab.load(tiny_inpainting_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def first(pipe):
    return pipe.txt2img("a red house", batch_size=2, **FIRST)


def _generator_after_first_pass(pipe, batch=2):
    """torch's global generator after the first pass: reseeded with the last seed by the noise, then the first pass's
    txt2img conditioning (a mid-grey batch at the first-pass size) drew from it."""
    g = torch.Generator().manual_seed(FIRST["seed"] + batch - 1)
    pipe.encode_image(torch.zeros(batch, 3, FIRST["height"], FIRST["width"], dtype=torch.float64).float(), g,
                      batched=True)
    return g


def _cond(pipe, image, g):
    latent = pipe.encode_image(image.float(), g, batched=True)
    return torch.cat([torch.ones(latent.shape[0], 1, *latent.shape[-2:]), latent], dim=1)


def _run(pipe, batch_size=2, **kw):
    record = Record()
    res = pipe.txt2img("a red house", batch_size=batch_size, enable_hr=True, techniques=[record], **FIRST, **kw)
    return res, record.image_cond


def test_latent_mode_weight_one_is_txt2img_conditioning_at_the_hires_size(pipe, first):
    res, got = _run(pipe, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.6)
    target = hf.target_size(32, 24, 1.5)
    g = _generator_after_first_pass(pipe)
    want = _cond(pipe, torch.zeros(2, 3, target.to_y // 8 * 8, target.to_x // 8 * 8, dtype=torch.float64), g)
    assert got.shape == (2, 5, 4, 6) and (got - want).abs().max().item() <= 1e-5
    assert res.images[0].size == (48, 32)
    latent = hf.upscale_latent(first.samples, "Latent", target)
    assert res.start_latent.shape == latent.shape
    fields = parse_infotext(res.infotext)
    assert fields["Conditional mask weight"] == "1.0" and fields["Hires upscaler"] == "Latent"


def test_latent_mode_weight_below_one_decodes_the_upscaled_latent(pipe, first):
    w = 0.3
    _, got = _run(pipe, hr_scale=2.0, hr_upscaler="Latent (nearest)", denoising_strength=0.5,
                  inpainting_mask_weight=w)
    upscaled = hf.upscale_latent(first.samples, "Latent (nearest)", hf.target_size(32, 24, 2.0))
    with torch.inference_mode():
        decoded = torch.cat([pipe._decode_one(z) for z in upscaled]).double()
    g = _generator_after_first_pass(pipe)
    want = _cond(pipe, (1 - w) * decoded, g)   # lerp(img, img·(1 − 1), w)
    assert (got - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("w", [1.0, 0.4])
def test_image_mode_uses_the_upscaled_image_in_0_1_and_crops(pipe, first, w):
    _, got = _run(pipe, hr_resize_x=48, hr_resize_y=32, hr_upscaler="Lanczos", denoising_strength=0.5,
                  inpainting_mask_weight=w)
    target = hf.target_size(32, 24, 2.0, 48, 32)
    with torch.inference_mode():
        decoded = torch.cat([pipe._decode_one(z).float() for z in first.samples])
    pixels = hf.upscale_decoded(decoded, target, "Lanczos").double()   # [0, 1]
    g = _generator_after_first_pass(pipe)
    pipe.encode_image(pipe.to_vae_input(pixels.float()), g)          # the second pass's latents draw first
    want = hf.crop_latent(_cond(pipe, (1 - w) * pixels, g), target)
    assert got.shape[-2:] == (4, 6) and (got - want).abs().max().item() <= 1e-5


def test_cropped_target_and_replay_bit_for_bit(pipe):
    # One image: a batch's posterior draws follow its last seed, so only a batch of one replays from its infotext.
    res, got = _run(pipe, batch_size=1, hr_resize_x=40, hr_resize_y=40, hr_upscaler="Latent (bicubic antialiased)",
                    denoising_strength=0.55, hr_second_pass_steps=2, inpainting_mask_weight=0.8)
    target = hf.target_size(32, 24, 2.0, 40, 40)
    assert target.truncate_x > 0 and got.shape[-2:] == res.start_latent.shape[-2:] == (5, 5)
    assert res.images[0].size == (40, 40)
    fields = parse_infotext(res.infotext)
    assert fields["Conditional mask weight"] == "0.8" and fields["Hires resize"] == "40x40"
    settings = settings_from_infotext(res.infotext, strict=True)
    assert settings["inpainting_mask_weight"] == 0.8 and settings["enable_hr"] is True
    prompt, negative = settings.pop("prompt"), settings.pop("negative_prompt")
    settings = {k: v for k, v in settings.items() if k in registry.for_command("txt2img")}
    again = pipe.txt2img(prompt, negative, **settings)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[0]))
    assert again.infotext == res.infotext


def test_cli_writes_and_replays_from_png(tiny_inpainting_checkpoint, tmp_path):
    common = ["--model", str(tiny_inpainting_checkpoint), "--kernels", "torch", "--no-progress"]
    assert main(["txt2img", *common, "--prompt", "a boat, at sea", "--steps", "3", "--seed", "9", "--width", "32",
                 "--height", "32", "--sampler", "Euler a", "--enable-hr", "--hr-scale", "1.25", "--hr-upscaler",
                 "Nearest", "--denoising-strength", "0.7", "--inpainting-mask-weight", "0.5",
                 "--token-merging-ratio-hr", "0.5", "--out", str(tmp_path / "a")]) == 0
    png = next((tmp_path / "a").glob("*.png"))
    text = read_png_infotext(png)
    fields = parse_infotext(text)
    for key, value in {"Hires upscale": "1.25", "Hires upscaler": "Nearest", "Denoising strength": "0.7",
                       "Conditional mask weight": "0.5", "Token merging ratio hr": "0.5", "Size": "32x32"}.items():
        assert fields[key] == value, key
    assert "Token merging ratio" not in fields
    assert main(["txt2img", *common, "--from-png", str(png), "--out", str(tmp_path / "b")]) == 0
    again = next((tmp_path / "b").glob("*.png"))
    assert read_png_infotext(again) == text
    from PIL import Image
    assert Image.open(again).size == (40, 40)
    assert Image.open(again).tobytes() == Image.open(png).tobytes()
