"""CFG Rescale's infotext spellings: `CFG Rescale` (CFG_Rescale_webui, written), `CFG Rescale φ` (A1111's cfg-rescale
branch, neutral-prompt 2023) and `CFG Rescale phi` (neutral-prompt) read as the extension's paste reads them, and
replayed bit for bit with `CFG Rescale` written back."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.guidance.rows import read_cfg_rescale_spellings
from inpaintlab.infotext import parse_infotext, settings_from_infotext

FAST = dict(steps=3, seed=5, cfg_scale=6.0, sampler="Euler")


@pytest.mark.parametrize("fields,value", [
    ({"CFG Rescale φ": "0.7"}, 0.7),
    ({"CFG Rescale phi": "0.35"}, 0.35),
    ({"CFG Rescale φ": "0.7", "CFG Rescale phi": "0.2"}, 0.2),  # phi is pasted after φ
    ({"CFG Rescale φ": "0"}, 0.0),  # neutral-prompt 2023 wrote it even when off
    ({"CFG Rescale": "0.5", "CFG Rescale φ": "0.7"}, None),  # the row reads `CFG Rescale`; the others are ignored
    ({}, None),
])
def test_reader_follows_the_extensions_paste(fields, value):
    keys, values, problems = read_cfg_rescale_spellings(fields)
    assert problems == [] and set(keys) == set(fields) - {"CFG Rescale"}
    assert values == ({} if value is None else {"cfg_rescale": value})


def test_bad_values_are_named():
    assert read_cfg_rescale_spellings({"CFG Rescale φ": "lots"})[2] == ["CFG Rescale φ: lots: not a number"]
    assert "must be in [0, 1]" in read_cfg_rescale_spellings({"CFG Rescale phi": "1.5"})[2][0]


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.mark.parametrize("spelling", ["CFG Rescale φ", "CFG Rescale phi"])
def test_old_spellings_replay_bit_for_bit_and_write_cfg_rescale(pipe, spelling):
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64))
    ImageDraw.Draw(mask).ellipse((10, 12, 50, 54), fill=255)
    result = pipe.inpaint(image, mask, "a red cat", "blurry", cfg_rescale=0.6, **FAST)
    plain = pipe.inpaint(image, mask, "a red cat", "blurry", **FAST)
    assert parse_infotext(result.infotext)["CFG Rescale"] == "0.6"
    assert not torch.equal(result.samples, plain.samples)
    old = result.infotext.replace("CFG Rescale: 0.6", f"{spelling}: 0.6")
    back = settings_from_infotext(old, strict=True)
    assert back["cfg_rescale"] == 0.6
    prompt, negative = back.pop("prompt"), back.pop("negative_prompt")
    replay = pipe.inpaint(image, mask, prompt, negative, **back)
    assert torch.equal(replay.samples, result.samples) and replay.infotext == result.infotext
    off = settings_from_infotext(result.infotext.replace("CFG Rescale: 0.6", f"{spelling}: 0"), strict=True)
    assert off["cfg_rescale"] == 0.0
