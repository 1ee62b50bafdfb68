"""Colour correction (A1111's img2img_color_correction) against a per-pixel float64 transcription of the spec's
formulas (§5.1): histogram matching written with sorted lists and a hand-written linear interpolation (not np.interp
or bincount), the blendmodes luminosity blend one pixel at a time. OpenCV does the 8-bit Lab conversions on both sides
(the spec's source of truth for them). Tolerance: exact (uint8 results, equal everywhere)."""
from __future__ import annotations

import bisect

import cv2
import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab import masking
from inpaintlab.pipeline import Technique
from inpaintlab.techniques.color_correction import (ColorCorrection, apply_color_correction, lab_target,
                                                    luminosity_blend, match_histograms_uint8)

FAST = dict(steps=2, cfg_scale=5.0, sampler="Euler")


def _ref_match_channel(src: list[int], tmpl: list[int]) -> list[int]:
    n, m = len(src), len(tmpl)
    s_sorted, t_values = sorted(src), sorted(set(tmpl))
    t_sorted = sorted(tmpl)
    t_q = [bisect.bisect_right(t_sorted, v) / m for v in t_values]        # cumulative share of values <= v
    out = []
    for v in src:
        q = bisect.bisect_right(s_sorted, v) / n
        if q <= t_q[0]:
            y = float(t_values[0])
        elif q >= t_q[-1]:
            y = float(t_values[-1])
        else:
            j = bisect.bisect_right(t_q, q)
            q0, q1, y0, y1 = t_q[j - 1], t_q[j], t_values[j - 1], t_values[j]
            y = y0 + (q - q0) * (y1 - y0) / (q1 - q0)
        out.append(int(y))                                                 # truncation toward 0
    return out


def ref_match(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    out = np.empty_like(image)
    for c in range(image.shape[2]):
        vals = _ref_match_channel(image[..., c].ravel().tolist(), reference[..., c].ravel().tolist())
        out[..., c] = np.array(vals, dtype=np.uint8).reshape(image.shape[:2])
    return out


def ref_blend(background: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    def lum(p):
        return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]

    out = np.empty_like(background)
    for i in range(background.shape[0]):
        for j in range(background.shape[1]):
            b = [float(v) / 255.0 for v in background[i, j]]
            f = [float(v) / 255.0 for v in foreground[i, j]]
            d = lum(f) - lum(b)
            c = [v + d for v in b]
            ll, n, x = lum(c), min(c), max(c)
            if n < 0:
                c = [ll + (v - ll) * ll / (ll - n) for v in c]
            if x > 1:
                c = [ll + (v - ll) * (1 - ll) / (x - ll) for v in c]
            out[i, j] = [int(min(max(v, 0.0), 1.0) * 255.0) for v in c]
    return out


def ref_correct(target_rgb: np.ndarray, generated: np.ndarray) -> np.ndarray:
    target = cv2.cvtColor(target_rgb, cv2.COLOR_RGB2LAB)
    matched = ref_match(cv2.cvtColor(generated, cv2.COLOR_RGB2LAB), target)
    return ref_blend(cv2.cvtColor(matched, cv2.COLOR_LAB2RGB), generated)


def picture(w, h, seed, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (h, w, 3), dtype=np.uint8)


def test_match_and_blend_against_reference():
    rng = np.random.default_rng(1)
    a = picture(23, 17, 2)
    b = (rng.normal(120, 30, (19, 29, 3)).clip(0, 255)).astype(np.uint8)   # another size, fewer distinct values
    assert np.array_equal(match_histograms_uint8(a, b), ref_match(a, b))
    assert np.array_equal(match_histograms_uint8(b, a), ref_match(b, a))
    # saturated colours make both clip branches (min < 0, max > 1) happen
    bg, fg = picture(31, 13, 3), picture(31, 13, 4)
    bg[:4] = [250, 10, 240]
    fg[4:8] = [250, 250, 250]
    blended = luminosity_blend(bg, fg)
    assert np.array_equal(blended, ref_blend(bg, fg))
    c = bg / 255.0 + ((fg / 255.0) @ [0.299, 0.587, 0.114] - (bg / 255.0) @ [0.299, 0.587, 0.114])[..., None]
    assert (c.min(-1) < 0).any() and (c.max(-1) > 1).any()


def test_apply_color_correction_matches_reference():
    target = picture(24, 20, 5, 40, 200)
    generated = (picture(24, 20, 6) // 2 + np.array([100, 0, 20], np.uint8)).astype(np.uint8)  # a colour cast
    got = np.asarray(apply_color_correction(lab_target(Image.fromarray(target)), Image.fromarray(generated)))
    expected = ref_correct(target, generated)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, generated)
    # the correction pulls the channel means towards the target's
    assert np.abs(got.mean((0, 1)) - target.mean((0, 1))).sum() < np.abs(generated.mean((0, 1)) - target.mean((0, 1))).sum()


class _Before(Technique):
    """Keeps the decoded images before any composite (the blend's overlay runs at order 50)."""
    order = 1

    def composite(self, job, result):
        self.images = [im.copy() for im in result.images]
        self.init = job.prep.init.copy()
        return result


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def test_pipeline_color_correction_before_the_overlay(pipe):
    image = Image.fromarray(picture(32, 24, 7))
    mask = Image.new("L", (32, 24), 0)
    mask.paste(255, (8, 4, 24, 20))
    grab = _Before()
    plain = pipe.inpaint(image, mask, "a cat", seed=3, masked_content="fill", techniques=[grab], **FAST)
    corrected = pipe.inpaint(image, mask, "a cat", seed=3, masked_content="fill", color_correction=True, **FAST)
    cc = Image.fromarray(ref_correct(np.asarray(grab.init), np.asarray(grab.images[0])))
    prep = inpaintlab.prepare.prepare_inpaint(image, mask, 32, 24, masked_content="fill")
    expected = masking.apply_overlay(cc, prep.overlay, prep.paste_to)
    assert np.array_equal(np.asarray(corrected.images[0]), np.asarray(expected))
    assert corrected.infotext == plain.infotext                     # A1111 writes no key for it
    # img2img: the target is the init image; txt2img ignores the setting (A1111 has none there)
    i2i = pipe.img2img(image, "a cat", seed=4, color_correction=True, **FAST)
    raw = pipe.img2img(image, "a cat", seed=4, **FAST)
    assert np.array_equal(np.asarray(i2i.images[0]), ref_correct(np.asarray(image), np.asarray(raw.images[0])))
    # an explicit target (Loopback's original picture) replaces the init image
    other = Image.fromarray(picture(16, 16, 8, 0, 90))
    own = pipe.img2img(image, "a cat", seed=4, techniques=[ColorCorrection(other)], **FAST)
    assert np.array_equal(np.asarray(own.images[0]), ref_correct(np.asarray(other), np.asarray(raw.images[0])))


def test_loopback_corrects_towards_the_original(pipe):
    from inpaintlab.scripts import loopback

    image = Image.fromarray(picture(32, 32, 9))
    res = loopback(pipe, image, "a tree", loops=2, final_denoising_strength=0.4, denoising_strength=0.6, seed=7,
                   color_correction=True, **FAST)
    raw0 = pipe.img2img(image, "a tree", denoising_strength=0.6, seed=7, **FAST)
    loop0 = ref_correct(np.asarray(image), np.asarray(raw0.images[0]))
    raw1 = pipe.img2img(Image.fromarray(loop0), "a tree", denoising_strength=0.4, seed=8, **FAST)
    loop1 = ref_correct(np.asarray(image), np.asarray(raw1.images[0]))     # the original's colours, not loop 0's
    assert np.array_equal(np.asarray(res.images[0]), loop0)
    assert np.array_equal(np.asarray(res.images[1]), loop1)
    assert not np.array_equal(loop1, ref_correct(loop0, np.asarray(raw1.images[0])))
