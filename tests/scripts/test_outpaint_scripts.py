"""Poor man's outpainting and Outpainting mk2 step by step against the spec (§4.1, §4.2): canvases, masks and latent
masks rebuilt with NumPy slices from the spec's rectangles (both corners inclusive), the crops, seeds and blurs of
each `Pipeline.inpaint` call, the paste-back and the infotext the scripts return. The matched noise itself is
checked against a float64 re-derivation in test_outpainting.py. Images compare exactly (uint8)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab import masking
from inpaintlab.infotext import parse_infotext
from inpaintlab.prepare import prepare_inpaint
from inpaintlab.scripts import (ScriptError, ScriptMasks, matched_noise, outpainting_mk2, poor_mans_canvas,
                                poor_mans_outpainting)
from inpaintlab.upscalers.tiling import combine_grid

FAST = dict(steps=1, cfg_scale=5.0, sampler="Euler")


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def picture(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def rect(w, h, x0, y0, x1, y1):
    """White (w, h) with black [x0, x1] × [y0, y1], both ends included, clipped to the canvas."""
    m = np.full((h, w), 255, np.uint8)
    m[max(y0, 0):max(y1 + 1, 0), max(x0, 0):max(x1 + 1, 0)] = 0
    return m


def test_poor_mans_canvas_geometry():
    img = picture(100, 60, 1)
    canvas, mask, latent, e = poor_mans_canvas(img, pixels=24, mask_blur=4, direction=["down", "left"])
    # target 124 → 128 wide: left = 24·28 // 24 = 28; 84 → 128 high: down = 128 − 60 − 0 = 68
    assert (e.left, e.right, e.up, e.down, e.width, e.height) == (28, 0, 0, 68, 128, 128)
    expected = np.zeros((128, 128, 3), np.uint8)
    expected[0:60, 28:128] = np.asarray(img)
    assert np.array_equal(np.asarray(canvas), expected)
    assert np.array_equal(np.asarray(mask), rect(128, 128, 28 + 8, 0, 128, 128 - 68 - 8))     # inset 2b
    assert np.array_equal(np.asarray(latent), rect(128, 128, 28 + 2, 0, 128, 128 - 68 - 2))   # inset b // 2
    with pytest.raises(ScriptError, match="direction"):
        poor_mans_canvas(img, 24, 4, "sideways")


def test_script_masks_reach_the_pipeline():
    """p.latent_mask drives the fill (and the latent mask); mask_blur_y ≠ mask_blur blurs per axis and drops the
    "Mask blur" key (A1111's mask_blur reads None then)."""
    img, mask = picture(48, 32, 2), Image.fromarray(rect(48, 32, 10, 8, 30, 20))
    own = Image.fromarray(rect(48, 32, 14, 10, 26, 16)).convert("L")
    prep = prepare_inpaint(img, mask, 48, 32, mask_blur=6, mask_blur_y=0, masked_content="fill", latent_mask=own)
    binary = masking.binary_mask(mask)
    assert np.array_equal(np.asarray(prep.image_mask), np.asarray(masking.blur_mask(binary, 6, 0)))
    assert np.array_equal(np.asarray(prep.init), np.asarray(masking.fill(img, own)))
    assert "Mask blur" not in prep.extra and np.array_equal(np.asarray(prep.latent_mask), np.asarray(own))
    assert prepare_inpaint(img, mask, 48, 32, mask_blur=6, mask_blur_y=6).extra["Mask blur"] == 6
    with pytest.raises(ValueError, match="latent mask size"):
        prepare_inpaint(img, mask, 48, 32, latent_mask=own.resize((40, 32)))


def test_poor_mans_outpainting_tiles(pipe):
    img = picture(48, 40, 3)
    res = poor_mans_outpainting(pipe, img, "a hill", pixels=16, mask_blur=4, direction="left, right", width=64,
                                height=64, seed=5, denoising_strength=0.8, **FAST)
    # canvas 80 → 128 wide (left = 16·80 // 32 = 40, right = 40), 40 → 64 high (no vertical side: black below);
    # split_grid(128 × 64, 64, overlap 16): x = 0, 32, 64 (all touch the new area), one row; seeds 5, 6, 7
    canvas = np.zeros((64, 128, 3), np.uint8)
    canvas[:40, 40:88] = np.asarray(img)
    mask, latent = rect(128, 64, 48, 0, 80, 64), rect(128, 64, 42, 0, 86, 64)
    tiles = []
    for k, x in enumerate((0, 32, 64)):
        step = pipe.inpaint(Image.fromarray(canvas[:, x:x + 64]), Image.fromarray(mask[:, x:x + 64]), "a hill",
                            width=64, height=64, seed=5 + k, mask_blur=8, masked_content="fill",
                            denoising_strength=0.8, techniques=[ScriptMasks(Image.fromarray(latent[:, x:x + 64]))],
                            **FAST)
        if k == 0:
            first = step
            assert step.latent_mask[0, 0].equal(masking.latent_mask(Image.fromarray(latent[:, :64]), 64, 64)[0, 0])
        tiles.append((x, np.asarray(step.images[0])))
    expected = combine_grid([(0, tiles)], 64, 128, 64, 16)
    assert np.array_equal(np.asarray(res.images[0]), expected)
    assert res.seeds == [5] and res.infotexts == [first.infotext]
    fields = parse_infotext(res.infotext)
    assert (fields["Size"], fields["Mask blur"], fields["Masked content"], fields["Seed"]) == ("64x64", "8", "fill",
                                                                                               "5")


def test_poor_mans_outpainting_keeps_inner_tiles(pipe):
    img = picture(96, 64, 4)
    res = poor_mans_outpainting(pipe, img, "sky", pixels=16, mask_blur=2, inpainting_fill=1, direction=["left"],
                                width=64, height=64, seed=11, **FAST)
    canvas = np.zeros((64, 128, 3), np.uint8)
    canvas[:, 32:] = np.asarray(img)                       # 112 → 128: left = 32; tiles x = 32 and 64 lie inside
    step = pipe.inpaint(Image.fromarray(canvas[:, :64]), Image.fromarray(rect(64, 64, 36, 0, 128, 64)), "sky",
                        width=64, height=64, seed=11, mask_blur=4, masked_content="original",
                        techniques=[ScriptMasks(Image.fromarray(rect(64, 64, 33, 0, 128, 64)))], **FAST)
    expected = combine_grid([(0, [(0, np.asarray(step.images[0])), (32, canvas[:, 32:96]), (64, canvas[:, 64:])])],
                            64, 128, 64, 16)
    assert np.array_equal(np.asarray(res.images[0]), expected)
    assert "Masked content" not in parse_infotext(res.infotext)        # "original" is not written
    with pytest.raises(ScriptError, match="pixels"):
        poor_mans_outpainting(pipe, img, "sky", pixels=64, width=64, height=64)
    with pytest.raises(ScriptError, match="masked_content"):
        poor_mans_outpainting(pipe, img, "sky", pixels=16, width=64, height=64, masked_content="fill")


def mk2_pass(pipe, image, px, side, bx, by, width, height, seed, **kw):
    """One Outpainting mk2 pass written from the spec's pseudocode with NumPy."""
    left, right, top, bottom = (side == d for d in ("left", "right", "up", "down"))
    w, h = image.size
    res_w, res_h = w + (px if left or right else 0), h + (px if top or bottom else 0)
    cw, ch = math.ceil(res_w / 64) * 64, math.ceil(res_h / 64) * 64
    canvas = np.zeros((ch, cw, 3), np.uint8)
    ox, oy = (px if left else 0), (px if top else 0)
    canvas[oy:oy + h, ox:ox + w] = np.asarray(image)
    mask = rect(cw, ch, px + bx if left else 0, px + by if top else 0, cw - px - bx if right else res_w,
                ch - px - by if bottom else res_h)
    mask3 = np.repeat(mask[..., None], 3, axis=2)
    filled = (np.clip(matched_noise(canvas / 255.0, mask3 / 255.0, kw.pop("noise_q"), kw.pop("cv")) * 255, 0, 255)
              .astype(np.uint8))
    tw = min(width, res_w) if left or right else cw
    th = min(height, res_h) if top or bottom else ch
    x0, y0 = (0 if left else cw - tw), (0 if top else ch - th)
    latent = rect(tw, th, px + 2 * bx if left else 0, px + 2 * by if top else 0,
                  tw - px - 2 * bx if right else res_w, th - px - 2 * by if bottom else res_h)
    out = pipe.inpaint(Image.fromarray(filled[y0:y0 + th, x0:x0 + tw]), Image.fromarray(mask3[y0:y0 + th, x0:x0 + tw]),
                       "a lake", width=tw, height=th, seed=seed, mask_blur=4 * bx, masked_content="original",
                       techniques=[ScriptMasks(Image.fromarray(latent), 4 * by)], **kw)
    filled[y0:y0 + th, x0:x0 + tw] = np.asarray(out.images[0])
    return Image.fromarray(filled[:res_h, :res_w]), out


def test_outpainting_mk2_passes(pipe):
    img = picture(48, 40, 5)
    res = outpainting_mk2(pipe, img, "a lake", pixels=16, mask_blur=4, direction="down,right", noise_q=0.8,
                          color_variation=0.2, width=32, height=64, seed=9, **FAST)
    # 64 wide: right = 16, processed 32 of the 64-wide canvas (its right end); 56 → 64 high: down = 24, at the full
    # 64-pixel width; blur 4·4 on both axes; the same seed for both passes
    after_right, first = mk2_pass(pipe, img, 16, "right", 4, 4, 32, 64, 9, noise_q=0.8, cv=0.2, **FAST)
    done, _ = mk2_pass(pipe, after_right, 24, "down", 4, 4, 32, 64, 9, noise_q=0.8, cv=0.2, **FAST)
    assert res.images[0].size == (64, 64)
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(done))
    assert res.infotexts == [first.infotext] and res.seeds == [9]
    fields = parse_infotext(res.infotext)
    assert (fields["Size"], fields["Mask blur"], fields["Seed"]) == ("32x64", "16", "9")
    assert "Masked content" not in fields


def test_outpainting_mk2_batch_and_one_axis(pipe):
    img = picture(48, 40, 6)
    res = outpainting_mk2(pipe, img, "a lake", pixels=16, mask_blur=2, direction=["left"], width=64, height=64,
                          seed=20, batch_size=2, **FAST)
    # one horizontal axis: blur x = 8, y = 0, so A1111 writes no "Mask blur"; image k has seed 20 + k, every
    # image carries the first one's infotext
    second, _ = mk2_pass(pipe, img, 16, "left", 2, 0, 64, 64, 21, noise_q=1.0, cv=0.05, **FAST)
    assert len(res.images) == 2 and res.seeds == [20, 20]
    assert np.array_equal(np.asarray(res.images[1]), np.asarray(second))
    assert res.infotexts[0] == res.infotexts[1] and "Mask blur" not in parse_infotext(res.infotext)
    with pytest.raises(ScriptError, match="no room"):
        outpainting_mk2(pipe, img, "x", pixels=16, mask_blur=8, direction="right", width=24, height=64)


def test_cli_outpainting(pipe, tiny_checkpoint, tmp_path, capsys):
    from inpaintlab.cli import main

    picture(96, 64, 7).save(tmp_path / "in.png")
    assert main(["img2img", "--model", str(tiny_checkpoint), "--image", str(tmp_path / "in.png"), "--prompt", "sky",
                 "--steps", "1", "--sampler", "Euler", "--seed", "3", "--device", "cpu", "--no-progress",
                 "--script", "Poor man's outpainting", "--pixels", "16", "--mask-blur", "2", "--direction", "left",
                 "--masked-content", "latent nothing", "--width", "64", "--height", "64",
                 "--out", str(tmp_path / "out")]) == 0
    (png,) = (tmp_path / "out").glob("0*.png")
    direct = poor_mans_outpainting(pipe, picture(96, 64, 7), "sky", pixels=16, mask_blur=2, direction="left",
                                   inpainting_fill="latent nothing", width=64, height=64, seed=3, steps=1,
                                   sampler="Euler")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), np.asarray(direct.images[0]))
    assert Image.open(png).text["parameters"] == direct.infotext
    capsys.readouterr()
