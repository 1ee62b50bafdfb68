"""ControlNet through the command line and the settings registry: flags, the `ControlNet 0` infotext entry written
and read back (--from-png replays the same image), sweep specs, and the checks on bad values."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inpaintlab import settings as registry
from inpaintlab.cli import main
from inpaintlab.infotext import read_png_infotext, settings_from_infotext
from inpaintlab.study.spec import load_spec


@pytest.fixture()
def files(tmp_path, tiny_checkpoint, tiny_controlnet):
    g = np.random.default_rng(4)
    Image.fromarray(g.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 23, 23), fill=255)
    mask.save(tmp_path / "mask.png")
    shutil.copy(tiny_controlnet, tmp_path / "tiny-controlnet.safetensors")
    return tmp_path


def test_txt2img_inpaint_only_and_from_png_replay(files, tiny_checkpoint, monkeypatch):
    common = ["--model", str(tiny_checkpoint), "--kernels", "torch", "--no-progress", "--steps", "3",
              "--width", "32", "--height", "32", "--seed", "5"]
    args = ["txt2img", *common, "--prompt", "a cat", "--controlnet", str(files / "tiny-controlnet.safetensors"),
            "--controlnet-image", str(files / "image.png"), "--controlnet-mask", str(files / "mask.png"),
            "--control-weight", "0.6", "--control-mode", "prompt", "--guidance-start", "0.2",
            "--guidance-end", "0.8", "--out", str(files / "a")]
    assert main(args) == 0
    text = read_png_infotext(files / "a" / "00000-5.png")
    assert ('ControlNet 0: "Module: inpaint_only, Model: tiny-controlnet [' in text and
            "Weight: 0.6, Resize Mode: Crop and Resize, Processor Res: 0.5, Threshold A: 0.5, Threshold B: 0.5, "
            "Guidance Start: 0.2, Guidance End: 0.8, Pixel Perfect: False, Control Mode: My prompt is more important"
            in text)
    back = settings_from_infotext(text, strict=True)
    assert (back["controlnet"], back["controlnet_preprocessor"], back["control_weight"], back["control_mode"],
            back["guidance_start"], back["guidance_end"]) == (
        "tiny-controlnet", "inpaint_only", 0.6, "My prompt is more important", 0.2, 0.8)
    # Replay: the model is found by its recorded name in the working directory; the unit's image is given again.
    monkeypatch.chdir(files)
    replay = ["txt2img", "--model", str(tiny_checkpoint), "--kernels", "torch", "--no-progress",
              "--from-png", str(files / "a" / "00000-5.png"), "--controlnet-image", str(files / "image.png"),
              "--controlnet-mask", str(files / "mask.png"), "--out", str(files / "b"), "--strict"]
    assert main(replay) == 0
    first = np.asarray(Image.open(files / "a" / "00000-5.png"))
    assert np.array_equal(first, np.asarray(Image.open(files / "b" / "00000-5.png")))


def test_inpaint_tab_flags(files, tiny_checkpoint):
    args = ["inpaint", "--model", str(tiny_checkpoint), "--image", str(files / "image.png"), "--mask",
            str(files / "mask.png"), "--prompt", "x", "--kernels", "torch", "--no-progress", "--steps", "2",
            "--controlnet", str(files / "tiny-controlnet.safetensors"), "--controlnet-preprocessor", "inpaint",
            "--out", str(files / "c")]
    assert main(args) == 0
    text = read_png_infotext(next((files / "c").glob("*.png")))
    assert 'ControlNet 0: "Module: inpaint, ' in text


@pytest.mark.parametrize("name, value, message", [
    ("control_weight", 2.5, "control_weight must be in [0, 2]"),
    ("control_mode", "louder", "unknown control_mode 'louder'"),
    ("controlnet_preprocessor", "openpose_full", "unknown controlnet_preprocessor 'openpose_full'"),
    ("guidance_end", 1.2, "guidance_end must be in [0, 1]"),
    ("controlnet", 3, "controlnet must be a ControlNet file path or a loaded ControlNet"),
])
def test_bad_values_name_the_setting(name, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        registry.coerce(name, value)
    with pytest.raises(ValueError, match="guidance_start 0.9 is after guidance_end 0.5"):
        registry.validate({"guidance_start": 0.9, "guidance_end": 0.5})


def test_example_sweep_resolves_the_controlnet_next_to_the_spec():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    spec = load_spec(examples / "controlnet_weight_vs_guidance_end.json")
    assert spec.x == ("control_weight", [0.0, 0.5, 1.0, 1.5]) and spec.y[0] == "guidance_end"
    assert spec.base["controlnet"] == str(examples / "control_v11p_sd15_inpaint.safetensors")
    assert len(spec.cells()) == 16
