"""SD upscale and Loopback on a tiny checkpoint, step by step against direct `Pipeline.img2img` calls with the seeds,
sizes and strengths the spec gives, and their infotext keys."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab.infotext import parse_infotext
from inpaintlab.scripts import ScriptError, insert_keys, loopback, loopback_strengths, sd_upscale
from inpaintlab.upscalers import upscale

FAST = dict(steps=2, cfg_scale=5.0, sampler="Euler")


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def picture(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_sd_upscale_tiles_seeds_and_keys(pipe):
    img = picture(40, 24)
    res = sd_upscale(pipe, img, "a house", tile_overlap=8, scale_factor=2.0, upscaler="Lanczos", width=32, height=32,
                     seed=100, denoising_strength=0.4, **FAST)
    big = upscale(img, 2.0, "Lanczos")
    assert big.size == (80, 48) and res.images[0].size == (80, 48)
    # split_grid: x = 0, 24, 48 (3 columns), y = 0, 16 (2 rows); tile k has seed 100 + k
    out = np.asarray(res.images[0])
    t0 = pipe.img2img(big.crop((0, 0, 32, 32)), "a house", width=32, height=32, seed=100, denoising_strength=0.4, **FAST)
    t5 = pipe.img2img(big.crop((48, 16, 80, 48)), "a house", width=32, height=32, seed=105, denoising_strength=0.4,
                      **FAST)
    assert np.array_equal(out[:16, :24], np.asarray(t0.images[0])[:16, :24])     # first tile, before any blend
    assert np.array_equal(out[24:, 56:], np.asarray(t5.images[0])[8:, 8:])       # last tile, after its blend band
    fields = parse_infotext(res.infotext)
    assert fields["SD upscale overlap"] == "8" and fields["SD upscale upscaler"] == "Lanczos"
    assert res.infotext == insert_keys(t0.infotext, {"SD upscale overlap": 8, "SD upscale upscaler": "Lanczos"})
    keys = list(fields)
    assert keys.index("SD upscale overlap") > keys.index("Denoising strength")
    with pytest.raises(ScriptError, match="tile_overlap"):
        sd_upscale(pipe, img, "x", tile_overlap=32, width=32, height=32)


@pytest.mark.parametrize("curve,fn", [("Linear", lambda t: t), ("Aggressive", lambda t: math.sin(t * math.pi / 2)),
                                      ("Lazy", lambda t: 1 - math.cos(t * math.pi / 2))])
def test_loopback_strengths(curve, fn):
    got = loopback_strengths(0.8, 0.3, 5, curve)
    assert got == pytest.approx([0.8 + (0.3 - 0.8) * fn(i / 4) for i in range(5)], abs=1e-15)
    assert got[0] == 0.8 and got[-1] == pytest.approx(0.3)
    assert loopback_strengths(0.8, 0.3, 1, curve) == [0.8]


def test_loopback_feeds_each_output_back(pipe):
    img = picture(32, 32, 1)
    res = loopback(pipe, img, "a tree", loops=3, final_denoising_strength=0.3, denoising_strength=0.6, seed=7, **FAST)
    assert res.seeds == [7, 8, 9] and len(res.images) == 3
    current = img
    for i, strength in enumerate([0.6, 0.45, 0.3]):
        step = pipe.img2img(current, "a tree", denoising_strength=strength, seed=7 + i, **FAST)
        assert np.array_equal(np.asarray(res.images[i]), np.asarray(step.images[0]))
        current = step.images[0]
    fields = parse_infotext(res.infotexts[1])
    assert fields["Final denoising strength"] == "0.3" and fields["Denoising curve"] == "Linear"
    assert float(fields["Denoising strength"]) == pytest.approx(0.45)


def test_cli_script_flags(pipe, tiny_checkpoint, tmp_path, capsys):
    from inpaintlab.cli import main

    picture(32, 32, 2).save(tmp_path / "in.png")
    base = ["img2img", "--model", str(tiny_checkpoint), "--image", str(tmp_path / "in.png"), "--prompt", "a tree",
            "--steps", "2", "--sampler", "Euler", "--seed", "3", "--device", "cpu", "--no-progress"]
    # one CLI run (a model load each): SD upscale; Loopback's flags reach the same function (checked in Python above)
    assert main([*base, "--script", "SD upscale", "--upscaler", "Lanczos", "--scale-factor", "1.5", "--width", "32",
                 "--height", "32", "--tile-overlap", "16", "--out", str(tmp_path / "up")]) == 0
    (png,) = (tmp_path / "up").glob("0*.png")
    assert Image.open(png).size == (48, 48)
    assert "SD upscale upscaler: Lanczos" in Image.open(png).text["parameters"]
    direct = sd_upscale(pipe, picture(32, 32, 2), "a tree", tile_overlap=16, scale_factor=1.5, upscaler="Lanczos",
                        width=32, height=32, seed=3, steps=2, sampler="Euler")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), np.asarray(direct.images[0]))
    capsys.readouterr()
