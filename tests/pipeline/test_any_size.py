"""Whole jobs at pixel sizes whose latents are not multiples of 8 (72x40 -> 9x5), as A1111 generates them:
every family runs, keeps the unmasked pixels, and the UNet sees the odd latent (no crop or pad on the way)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

import inpaintlab

FAST = dict(steps=2, cfg_scale=5.0, seed=7, sampler="Euler", mask_blur=0)


def _job(path, size=(72, 40)):
    pipe = inpaintlab.load(path, kernels="torch")
    seen = []
    forward = pipe.unet.forward

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape[-2:]))
        return forward(x, *args, **kwargs)

    pipe.unet.forward = spy
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((20, 8, 51, 31), fill=255)
    result = pipe.inpaint(image, mask, "a door", **FAST)
    return image, result.images[0], set(seen)


@pytest.mark.parametrize("name", ["sd1", "sd1-inpainting", "sd2", "sdxl-inpainting"])
def test_odd_latent_job_runs_for_every_family(name, tiny_checkpoint, tiny_inpainting_checkpoint,
                                              tiny_family_checkpoints):
    path = {"sd1": tiny_checkpoint, "sd1-inpainting": tiny_inpainting_checkpoint}.get(name)
    image, out, seen = _job(path or tiny_family_checkpoints[name])
    assert out.size == (72, 40)
    assert seen == {(5, 9)}
    src, got = np.asarray(image), np.asarray(out)
    assert np.array_equal(src[:2], got[:2])  # far from the mask: untouched
