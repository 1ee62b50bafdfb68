"""The refiner with hires fix (which pass it runs in, which VAE decodes) and between 4- and 9-channel models.

* `hires_fix_refiner_pass`: the refiner's UNet sees only the passes named; each pass starts on the main model;
  `Hires refiner` is written unless "second pass"; the final decode uses the model loaded last (the refiner after a
  switch in the second pass, the main model when the refiner ran in the first pass only); "both passes" is read
  back from the infotext and replayed bit for bit.
* 9-channel base -> 4-channel refiner: the refiner gets the 4-channel latent alone (A1111 drops the image
  conditioning); 4-channel base -> 9-channel refiner: the refiner gets its own conditioning (A1111 crashes here),
  for txt2img [ones, VAE(0)] as A1111's txt2img convention, checked against the VAE encoding of a zero image.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import spying
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.infotext import settings_from_infotext
from inpaintlab.tiny import make_tiny_checkpoint

PROMPT = "a red door"


@pytest.fixture(scope="module")
def base(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def refiner(tmp_path_factory):
    return inpaintlab.load(make_tiny_checkpoint(tmp_path_factory.mktemp("r") / "tiny-refiner.safetensors", seed=1),
                           kernels="torch")


@pytest.fixture(scope="module")
def inpainting_refiner(tmp_path_factory):
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("r9") / "tiny-refiner-9.safetensors", inpainting=True, seed=1)
    return inpaintlab.load(path, kernels="torch")


@pytest.mark.parametrize("which", ["second pass", "first pass", "both passes"])
def test_hires_fix_pass_rule_and_decoding_model(base, refiner, which):
    with spying(base, refiner) as (b, r):
        result = base.txt2img(PROMPT, width=32, height=32, steps=4, sampler="Euler", seed=7, enable_hr=True,
                              hr_scale=1.5, denoising_strength=0.6, refiner_checkpoint=refiner,
                              refiner_switch_at=0.5, hires_fix_refiner_pass=which)
    first, second = 4, 6  # latent heights of the 32 px first pass and the 48 px hires pass
    expected = {"second pass": {second}, "first pass": {first}, "both passes": {first, second}}[which]
    assert {h for _, _, h in r.calls} == expected
    # Each pass starts on the main model (the switch at 0.5 falls inside both).
    assert b.calls[0][2] == first and {h for _, _, h in b.calls} == {first, second}
    text = result.infotexts[0]
    assert ("Hires refiner: " + which in text) == (which != "second pass") and "Refiner: tiny-refiner" in text
    decoder = base if which == "first pass" else refiner
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(decoder.decode_latents(result.samples)[0]))
    if which == "both passes":  # `Hires refiner` read back and replayed
        settings = settings_from_infotext(text, strict=True)
        assert (settings["hires_fix_refiner_pass"], settings["refiner_checkpoint"]) == (which, "tiny-refiner")
        prompt, negative = settings.pop("prompt"), settings.pop("negative_prompt")
        settings = {k: v for k, v in settings.items() if k in registry.for_command("txt2img")}
        again = base.txt2img(prompt, negative, **{**settings, "refiner_checkpoint": refiner})
        assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))
        assert again.infotexts == result.infotexts


def test_nine_channel_base_hands_a_four_channel_refiner_the_latent_alone(tiny_inpainting_checkpoint, refiner):
    base9 = inpaintlab.load(tiny_inpainting_checkpoint, kernels="torch")
    image = Image.effect_noise((32, 32), 50).convert("RGB")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 24, 24), fill=255)
    with spying(base9, refiner) as (b, r):
        result = base9.inpaint(image, mask, PROMPT, steps=5, sampler="Euler", seed=8, refiner_checkpoint=refiner,
                               refiner_switch_at=0.6)
    assert b.calls and r.calls and {c for _, c, _ in b.calls} == {9} and {c for _, c, _ in r.calls} == {4}
    assert "Refiner: tiny-refiner" in result.infotexts[0]


def test_four_channel_base_builds_the_nine_channel_refiners_conditioning(base, inpainting_refiner):
    seed = 9
    with spying(inpainting_refiner) as (r,):
        result = base.txt2img(PROMPT, width=32, height=32, steps=5, sampler="Euler", seed=seed,
                              refiner_checkpoint=inpainting_refiner, refiner_switch_at=0.5)
    assert r.calls and {c for _, c, _ in r.calls} == {9}
    x = r.inputs[0]
    assert torch.equal(x[:, 4], torch.ones_like(x[:, 4]))  # txt2img: everything repainted
    zero = torch.zeros(1, 3, 32, 32)  # the 0.5-grey image times (1 - mask) = 0, through the refiner's own VAE
    expected = inpainting_refiner.encode_image(zero, torch.Generator().manual_seed(seed), batched=True)
    assert torch.equal(x[:, 5:], expected.expand(x.shape[0], -1, -1, -1))
    assert "Refiner: tiny-refiner-9" in result.infotexts[0]
    # An inpaint hands it the job's mask: both repainted (1) and kept (0) latent pixels appear.
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((0, 0, 15, 31), fill=255)
    with spying(inpainting_refiner) as (r,):
        base.inpaint(Image.effect_noise((32, 32), 50).convert("RGB"), mask, PROMPT, steps=5, sampler="Euler",
                     seed=seed, mask_blur=0, refiner_checkpoint=inpainting_refiner, refiner_switch_at=0.5)
    assert set(r.inputs[0][:, 4].unique().tolist()) == {0.0, 1.0}
