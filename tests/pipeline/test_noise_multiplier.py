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
