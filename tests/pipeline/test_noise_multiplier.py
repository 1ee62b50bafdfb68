"""A1111's img2img noise multiplier: the start latent is `init + m · noise · σ0` with the seed's first noise draw, the
latent-noise fill is unscaled, `Noise multiplier` is written and read back (tolerance 1e-6 on the start latent)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab.infotext import settings_from_infotext
from inpaintlab.samplers import ImageRNG

FAST = dict(steps=3, sampler="Euler", cfg_scale=5.0, seed=42, denoising_strength=0.6)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def test_start_latent_and_infotext(pipe):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    base = pipe.img2img(img, "a bird", **FAST)
    res = pipe.img2img(img, "a bird", initial_noise_multiplier=0.7, **FAST)
    noise = ImageRNG(tuple(res.init_latent.shape[1:]), [42], res.init_latent.device).next()
    sigma0 = res.sigmas[0]
    expected = res.init_latent + 0.7 * noise * sigma0
    assert (res.start_latent - expected).abs().max().item() <= 1e-6
    assert (base.start_latent - (base.init_latent + noise * sigma0)).abs().max().item() <= 1e-6
    assert "Noise multiplier: 0.7" in res.infotext and "Noise multiplier" not in base.infotext
    assert settings_from_infotext(res.infotext)["initial_noise_multiplier"] == 0.7
    again = pipe.img2img(img, "a bird", **{**FAST, **{"initial_noise_multiplier": 0.7}})
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[0]))


def test_range_is_checked(pipe):
    with pytest.raises(ValueError, match="initial_noise_multiplier"):
        pipe.img2img(Image.new("RGB", (32, 32)), "x", initial_noise_multiplier=2.0, **FAST)


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_extra_noise_start_latent(pipe, sampler):
    """A1111: k-diffusion x + noise·σ0 + noise·v; timestep samplers √ᾱ·x + √(1−ᾱ)·noise + noise·v·√ᾱ (with the
    noise multiplier applied first: `noise` is the scaled draw)."""
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    kw = {**FAST, "sampler": sampler}
    res = pipe.img2img(img, "a bird", img2img_extra_noise=0.3, initial_noise_multiplier=0.9, **kw)
    noise = 0.9 * ImageRNG(tuple(res.init_latent.shape[1:]), [42], res.init_latent.device).next()
    if sampler == "Euler":
        expected = res.init_latent + noise * res.sigmas[0] + noise * 0.3
    else:
        from inpaintlab.samplers import get_timesteps, img2img_steps
        t = get_timesteps(FAST["steps"])[img2img_steps(FAST["steps"], FAST["denoising_strength"])]
        a = pipe.schedule.alphas_cumprod[t]
        expected = res.init_latent * a.sqrt() + noise * (1 - a).sqrt() + noise * 0.3 * a.sqrt()
    assert (res.start_latent - expected).abs().max().item() <= 1e-5
    fields = settings_from_infotext(res.infotext)
    assert fields["img2img_extra_noise"] == 0.3 and fields["initial_noise_multiplier"] == 0.9
    assert "Extra noise: 0.3" in res.infotext
