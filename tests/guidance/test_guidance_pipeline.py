"""The guidance techniques in the pipeline on the tiny checkpoint: each key written, read back from the infotext
(`--from-png`'s reader) and replayed bit for bit; neutral values are the plain job."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.infotext import parse_infotext, settings_from_infotext

FAST = dict(steps=4, seed=11, cfg_scale=6.0)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64))
    ImageDraw.Draw(mask).ellipse((12, 10, 50, 52), fill=255)
    return image, mask


GROUPS = {
    "freeu+tome+rescale+ngms": dict(
        freeu_stages='[{"backbone_factor": 1.2, "skip_factor": 0.5}, {"backbone_factor": 1.3, "skip_factor": 0.8}]',
        freeu_schedule="0.0, 0.75, 0.0", freeu_version="2", token_merging_ratio=0.5, cfg_rescale=0.6,
        s_min_uncond=10.0, s_min_uncond_all=True, sampler="Euler a"),
    "dynamic thresholding": dict(dynamic_thresholding=True, mimic_scale=4.0, mimic_mode="Cosine Down",
                                 mimic_scale_min=1.0, cfg_mode="Sawtooth", cfg_scale_min=1.5, scheduler_value=3.0,
                                 separate_feature_channels=False, variability_measure="STD", interpolate_phi=0.9,
                                 threshold_percentile=97.5, sampler="Heun"),
    "pag+seg+skip early": dict(pag_scale=2.5, pag_sanf=True, pag_start=1, pag_end=2, seg_blur_sigma=3.0,
                               skip_early_cond=0.3, sampler="DPM++ 2M"),
}


@pytest.mark.parametrize("group", list(GROUPS))
def test_keys_round_trip_and_replay_bit_for_bit(pipe, picture, group):
    image, mask = picture
    settings = GROUPS[group]
    result = pipe.inpaint(image, mask, "a red cat", "blurry", **FAST, **settings)
    plain = pipe.inpaint(image, mask, "a red cat", "blurry", **FAST, sampler=settings["sampler"])
    assert not torch.equal(result.samples, plain.samples)
    back = settings_from_infotext(result.infotext, strict=True)
    for name, value in settings.items():
        assert back[name] == value, (name, back.get(name), result.infotext)
    prompt, negative = back.pop("prompt"), back.pop("negative_prompt")
    replay = pipe.inpaint(image, mask, prompt, negative, **back)
    assert torch.equal(replay.samples, result.samples)
    assert replay.infotext == result.infotext


def test_written_keys_are_the_extensions(pipe, picture):
    image, mask = picture
    result = pipe.inpaint(image, mask, "a red cat", **FAST, **GROUPS["pag+seg+skip early"])
    fields = parse_infotext(result.infotext)
    assert {k: fields[k] for k in ("PAG Active", "PAG SANF", "PAG Scale", "PAG Start Step", "PAG End Step",
                                   "SEG Active", "SEG Blur Sigma", "SEG Start Step", "SEG End Step",
                                   "Skip Early CFG")} == {
        "PAG Active": "True", "PAG SANF": "True", "PAG Scale": "2.5", "PAG Start Step": "1", "PAG End Step": "2",
        "SEG Active": "True", "SEG Blur Sigma": "3", "SEG Start Step": "0", "SEG End Step": "150",
        "Skip Early CFG": "0.3"}


def test_neutral_values_are_the_plain_job(pipe, picture):
    image, mask = picture
    plain = pipe.inpaint(image, mask, "a red cat", **FAST)
    neutral = pipe.inpaint(image, mask, "a red cat", **FAST, freeu_stages="[{}]", dynamic_thresholding=True,
                           mimic_scale=6.0, interpolate_phi=0.0)
    assert torch.equal(neutral.samples, plain.samples)


def test_emphasis_mode_written_when_the_prompt_can_use_it_and_replayed(pipe, picture):
    image, mask = picture
    original = pipe.inpaint(image, mask, "a (red:1.4) cat", **FAST)
    no_norm = pipe.inpaint(image, mask, "a (red:1.4) cat", **FAST, emphasis="No norm")
    ignore = pipe.inpaint(image, mask, "a (red:1.4) cat", **FAST, emphasis="Ignore")
    assert parse_infotext(no_norm.infotext)["Emphasis"] == "No norm" and "Emphasis" not in original.infotext
    assert len({original.samples.sum().item(), no_norm.samples.sum().item(), ignore.samples.sum().item()}) == 3
    assert torch.equal(ignore.samples, pipe.inpaint(image, mask, "a red cat", **FAST).samples)
    assert "Emphasis" not in pipe.inpaint(image, mask, "a red cat", **FAST, emphasis="No norm").infotext
    back = settings_from_infotext(no_norm.infotext, strict=True)
    prompt, negative = back.pop("prompt"), back.pop("negative_prompt")
    assert torch.equal(pipe.inpaint(image, mask, prompt, negative, **back).samples, no_norm.samples)


@pytest.mark.parametrize("key, name", [("Pad conds", "pad_cond_uncond"), ("Pad conds v0", "pad_cond_uncond_v0")])
def test_pad_conds_with_different_lengths(pipe, picture, key, name):
    image, mask = picture
    long_negative = ", ".join(["blurry"] * 60)  # two 75-token chunks against the prompt's one
    plain = pipe.inpaint(image, mask, "a red cat", long_negative, **FAST)
    padded = pipe.inpaint(image, mask, "a red cat", long_negative, **FAST, **{name: True})
    assert parse_infotext(padded.infotext)[key] == "True" and key not in plain.infotext
    assert not torch.equal(plain.samples, padded.samples)  # the shorter side attends over extra tokens
    same = pipe.inpaint(image, mask, "a red cat", "blurry", **FAST, **{name: True})
    assert key not in same.infotext
    back = settings_from_infotext(padded.infotext, strict=True)
    prompt, negative = back.pop("prompt"), back.pop("negative_prompt")
    assert torch.equal(pipe.inpaint(image, mask, prompt, negative, **back).samples, padded.samples)
