"""ControlNet units of other kinds: the pure-image preprocessors (numpy re-derivations of the extension's code),
Pixel Perfect, the legacy short model hash and the `ControlNet N` entry written and read back."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import inpaintlab
from inpaintlab.checkpoint import legacy_model_hash
from inpaintlab.controlnet import preprocess as pp
from inpaintlab.controlnet import preprocessors as pure
from inpaintlab.controlnet.unit import ControlNetUnit, parse_unit_infotext
from inpaintlab.infotext import parse_infotext

SIZE = 64
FAST = dict(steps=3, seed=7, sampler="Euler", cfg_scale=5.0)


def _image(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pixel_perfect_and_tile_resample_examples():
    assert pure.pixel_perfect_resolution((512, 768), (512, 512), "Crop and Resize") == 512
    assert pure.pixel_perfect_resolution((512, 768), (512, 512), "Resize and Fill") == 341
    img = _image(41, 57)
    assert pure.run_preprocessor("tile_resample", img, threshold_a=2.0).shape == (20, 28, 3)
    assert pure.run_preprocessor("tile_resample", img) is not None
    assert np.array_equal(pure.run_preprocessor("tile_resample", img, threshold_a=1.05), img)


def test_hwc3_composites_rgba_over_white_and_invert():
    rgba = np.dstack([_image(4, 5), np.array([[0, 128, 255, 64, 1]] * 4, dtype=np.uint8)])
    a = rgba[:, :, 3:4] / 255.0
    ref = np.clip(rgba[:, :, :3] * a + 255 * (1 - a), 0, 255).astype(np.uint8)
    assert np.array_equal(pure.hwc3(rgba), ref)
    assert np.array_equal(pure.run_preprocessor("invert (from white bg & black line)", rgba[:, :, :3]),
                          255 - rgba[:, :, :3])


def test_resize_with_pad_geometry():
    img = _image(40, 56)
    padded, remove = pure.resize_image_with_pad(img, 100)
    assert remove(padded).shape == (100, 140, 3) and padded.shape == (128, 192, 3)
    assert np.array_equal(padded[100:, :140], np.repeat(padded[99:100, :140], 28, axis=0))  # edge padding


def test_threshold_xdog_recolor_canny_against_numpy():
    img = _image(64, 64, seed=1)  # at res 64: no resize, so the maps are the raw operations
    assert np.array_equal(pure.run_preprocessor("threshold", img, 64, 100), np.where(
        (img.min(2) > 100)[:, :, None], 255, 0).astype(np.uint8).repeat(3, 2))
    g1 = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.5)
    g2 = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    ref = np.where((2 * (255 - dog.astype(np.int64)) > 32)[:, :, None], 255, 0).astype(np.uint8).repeat(3, 2)
    assert np.array_equal(pure.run_preprocessor("scribble_xdog", img, 64), ref)
    lum = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)[:, :, 0] / 255.0
    ref = np.clip(lum.astype(np.float32) ** 0.7 * 255.0, 0, 255).astype(np.uint8)
    got = pure.run_preprocessor("recolor_luminance", img, 64, 0.7)
    assert np.array_equal(got[:, :, 0], ref) and np.array_equal(got[:, :, 1], ref)
    edges = pure.run_preprocessor("canny", img, 64, 50, 150)
    assert np.array_equal(edges[:, :, 0], cv2.Canny(img, 50, 150)) and set(np.unique(edges)) <= {0, 255}


def test_lineart_standard_float64():
    img = _image(64, 64, seed=2)
    x = img.astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), 6.0)
    i = np.min(g - x, axis=2).clip(0, 255).astype(np.float64)
    i = i / max(16, np.median(i[i > 8])) * 127
    got = pure.run_preprocessor("lineart_standard", img, 64)[:, :, 0].astype(np.int64)
    assert np.abs(got - i.clip(0, 255).astype(np.uint8)).max() <= 1  # float32 vs float64 at the truncation


def test_network_preprocessors_are_named_clearly():
    with pytest.raises(ValueError, match="annotator network.*preprocessor 'none'"):
        ControlNetUnit("m.safetensors", preprocessor="openpose_full")
    with pytest.raises(ValueError, match="depth_midas.*annotator"):
        pure.resolve("depth_midas")
    assert pure.resolve("t2ia_color_grid") == "color" and pure.resolve("shuffle") == "shuffle"
    with pytest.raises(ValueError, match="unknown ControlNet preprocessor"):
        pure.resolve("wobble")


def test_legacy_model_hash(tmp_path):
    data = np.random.default_rng(4).integers(0, 256, 0x100000 + 0x20000, dtype=np.uint8).tobytes()
    (tmp_path / "big.bin").write_bytes(data)
    assert legacy_model_hash(tmp_path / "big.bin") == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    (tmp_path / "small.bin").write_bytes(b"x" * 100)
    assert legacy_model_hash(tmp_path / "small.bin") == hashlib.sha256(b"").hexdigest()[:8]  # 'e3b0c442'


def test_parse_both_formats_and_aliases():
    new = ('Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, Resize Mode: Just Resize, '
           'Processor Res: 768, Threshold A: 90.0, Threshold B: 210.0, Guidance Start: 0.0, Guidance End: 0.9, '
           'Pixel Perfect: True, Control Mode: ControlNet is more important')
    u = parse_unit_infotext(new)
    assert u["model"] == "control_v11p_sd15_canny" and u["model_hash"] == "d14c016b"
    assert (u["preprocessor"], u["processor_res"], u["threshold_a"], u["threshold_b"], u["pixel_perfect"]) == \
        ("canny", 768, 90.0, 210.0, True)
    old = ('Module: none, Model: control_v11p_sd15_lineart [43d4be0d], Weight: 1, Resize Mode: '
           'Inner Fit (Scale to Fit), Low Vram: False, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, '
           'Control Mode: Balanced')
    u = parse_unit_infotext(old)
    assert u["preprocessor"] == "none" and u["resize_mode"] == "Crop and Resize" and u["guidance_end"] == 1.0
    with pytest.raises(ValueError, match="annotator"):
        parse_unit_infotext(new.replace("canny", "lineart_realistic", 1))


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def test_module_none_unit_in_txt2img_written_and_read_back(pipe, tiny_controlnet):
    hint = Image.fromarray(_image(SIZE, SIZE, seed=5))
    unit = ControlNetUnit(tiny_controlnet, preprocessor="none", image=hint, weight=0.9)
    result = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnets=[unit], **FAST)
    plain = pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST)
    assert not torch.equal(result.samples, plain.samples)
    entry = parse_infotext(result.infotext)["ControlNet 0"]
    assert entry == (f"Module: none, Model: tiny-controlnet [{legacy_model_hash(tiny_controlnet)}], Weight: 0.9, "
                     "Resize Mode: Crop and Resize, Processor Res: 0.5, Threshold A: 0.5, Threshold B: 0.5, "
                     "Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced")
    back = parse_unit_infotext(entry)
    again = pipe.txt2img("a cat", width=SIZE, height=SIZE, **FAST, controlnets=[ControlNetUnit(
        tiny_controlnet, preprocessor=back["preprocessor"], image=hint, weight=back["weight"],
        resize_mode=back["resize_mode"], guidance_start=back["guidance_start"], guidance_end=back["guidance_end"],
        control_mode=back["control_mode"])])
    assert torch.equal(again.samples, result.samples)


def test_canny_unit_hint_is_the_map_over_255(pipe, tiny_controlnet):
    img = _image(SIZE, SIZE, seed=6)
    unit = ControlNetUnit(tiny_controlnet, preprocessor="canny", image=Image.fromarray(img), pixel_perfect=True,
                          threshold_a=60, threshold_b=120)
    result = pipe.txt2img("a cat", width=SIZE, height=SIZE, controlnets=[unit], **FAST)
    entry = parse_infotext(result.infotext)["ControlNet 0"]
    assert "Module: canny," in entry and "Processor Res: 512, Threshold A: 60.0, Threshold B: 120.0" in entry
    assert "Pixel Perfect: True" in entry
    # the hint the unit feeds: Pixel Perfect gives res 64 = the image, so the map is plain Canny
    from inpaintlab.controlnet.unit import _plain_unit_input
    ci = _plain_unit_input(unit, pipe.load_controlnet(tiny_controlnet) if hasattr(pipe, "load_controlnet") else
                           __import__("inpaintlab.controlnet.load", fromlist=["x"]).load_controlnet(tiny_controlnet),
                           "canny", None, SIZE, SIZE, 0, 0)
    ref = torch.from_numpy(cv2.Canny(img, 60, 120)).float() / 255
    assert torch.equal(ci.hint[0, 0], ref) and torch.equal(ci.hint[0, 2], ref)
    assert pp.detectmap(np.zeros((8, 8, 4), np.uint8), 16, 16, "Resize and Fill", inpaint=False)[:, :, 3].max() == 0
