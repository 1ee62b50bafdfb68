"""A `ControlNet 0` entry's Processor Res, Threshold A/B and Pixel Perfect read back by `--from-png`'s reader and
applied; shuffle's seeded flow field and tile_colorfix in a generation, written and replayed bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.controlnet import preprocess as pp
from inpaintlab.controlnet import preprocessors as pure
from inpaintlab.controlnet.unit import ControlNetUnit
from inpaintlab.infotext import parse_infotext, settings_from_infotext

SIZE = 64
FAST = dict(steps=3, seed=7, sampler="Euler", cfg_scale=5.0)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def _picture(h, w, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _replay(pipe, infotext, model, image):
    s = settings_from_infotext(infotext, strict=True)
    prompt, negative = s.pop("prompt"), s.pop("negative_prompt")
    s = {k: v for k, v in s.items() if k in registry.for_command("txt2img")}
    s["controlnet"] = model  # the entry names the model; the test gives its file
    return pipe.txt2img(prompt, negative, controlnet_image=image, **s), s


def test_crafted_entry_applies_processor_res_thresholds_and_pixel_perfect(pipe, tiny_controlnet):
    image = _picture(48, 80, 1)  # non-square: Pixel Perfect and the crop matter
    base = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnet=tiny_controlnet, controlnet_preprocessor="canny",
                        controlnet_image=image, **FAST)
    defaults = "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0"
    assert defaults in parse_infotext(base.infotext)["ControlNet 0"]
    crafted = base.infotext.replace(defaults, "Processor Res: 96, Threshold A: 40.0, Threshold B: 90.0")
    replay, s = _replay(pipe, crafted, tiny_controlnet, image)
    assert (s["controlnet_processor_res"], s["controlnet_threshold_a"], s["controlnet_threshold_b"],
            s["controlnet_pixel_perfect"]) == (96, 40.0, 90.0, False)
    direct = pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST, controlnets=[ControlNetUnit(
        tiny_controlnet, preprocessor="canny", image=image, processor_res=96, threshold_a=40, threshold_b=90)])
    assert not torch.equal(replay.samples, base.samples)
    assert torch.equal(replay.samples, direct.samples) and replay.infotext == crafted

    perfect = crafted.replace("Pixel Perfect: False", "Pixel Perfect: True")
    replay, s = _replay(pipe, perfect, tiny_controlnet, image)
    assert s["controlnet_pixel_perfect"] is True
    direct = pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST, controlnets=[ControlNetUnit(
        tiny_controlnet, preprocessor="canny", image=image, processor_res=96, threshold_a=40, threshold_b=90,
        pixel_perfect=True)])  # Pixel Perfect: round(max(64/48, 64/80)·48) = 64 instead of 96
    assert torch.equal(replay.samples, direct.samples) and replay.infotext == perfect
    assert not torch.equal(replay.samples, pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST, controlnets=[
        ControlNetUnit(tiny_controlnet, preprocessor="canny", image=image, processor_res=96, threshold_a=40,
                       threshold_b=90)]).samples)


def test_shuffle_unit_uses_the_seeded_flow_field_and_replays(pipe, tiny_controlnet):
    image = _picture(SIZE, SIZE, 2)
    result = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnet=tiny_controlnet,
                          controlnet_preprocessor="shuffle", controlnet_image=image, controlnet_processor_res=128,
                          **FAST)
    entry = parse_infotext(result.infotext)["ControlNet 0"]
    assert entry.startswith("Module: shuffle, ") and "Processor Res: 128, Threshold A: 0.5, Threshold B: 0.5" in entry
    # the hint the extension builds: numpy seeded with seed + seed (no variation seed), map at 128, shrunk to 64
    shuffled = pure.run_preprocessor("shuffle", np.asarray(image), 128, seed=pure.numpy_seed(7))
    rgba = np.concatenate([shuffled, np.zeros_like(shuffled[:, :, :1])], axis=2)
    hint = pp.detectmap(rgba, SIZE, SIZE, "Crop and Resize", inpaint=False)[:, :, :3].astype(np.uint8)
    ready = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnet=tiny_controlnet, controlnet_preprocessor="none",
                         controlnet_image=Image.fromarray(hint), **FAST)
    assert torch.equal(ready.samples, result.samples)
    replay, _ = _replay(pipe, result.infotext, tiny_controlnet, image)
    assert torch.equal(replay.samples, result.samples) and replay.infotext == result.infotext


def test_tile_colorfix_sharp_unit_changes_the_image_and_replays(pipe, tiny_controlnet):
    image = _picture(SIZE, SIZE, 3)
    kw = dict(width=SIZE, height=SIZE, controlnet=tiny_controlnet, controlnet_image=image, **FAST)
    result = pipe.txt2img("a cat", controlnet_preprocessor="tile_colorfix+sharp", controlnet_threshold_a=5,
                          controlnet_threshold_b=1.5, **kw)
    entry = parse_infotext(result.infotext)["ControlNet 0"]
    assert entry.startswith("Module: tile_colorfix+sharp, ")
    assert "Processor Res: 512, Threshold A: 5.0, Threshold B: 1.5" in entry
    plain_tile = pipe.txt2img("a cat", controlnet_preprocessor="tile_resample", **kw)  # the same hint, no colorfix
    colorfix = pipe.txt2img("a cat", controlnet_preprocessor="tile_colorfix", controlnet_threshold_a=5, **kw)
    assert not torch.equal(result.samples, plain_tile.samples)
    assert not torch.equal(result.samples, colorfix.samples)  # the sharpening acts on the uncond rows
    replay, s = _replay(pipe, result.infotext, tiny_controlnet, image)
    assert s["controlnet_threshold_a"] == 5.0 and s["controlnet_threshold_b"] == 1.5
    assert torch.equal(replay.samples, result.samples) and replay.infotext == result.infotext
