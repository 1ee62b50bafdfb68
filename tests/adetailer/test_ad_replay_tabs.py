"""Tabs 2, 3 … replay: the ``ad_more_tabs`` setting is read back from the " 2nd", " 3rd" … keys the pipeline wrote
(no key named as not applied), and the replay, from Python and through ``--from-png``, equals the picture bit for bit."""
import json

import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.adetailer import ADetailerUnit
from inpaintlab.adetailer.rows import read_more_tabs
from inpaintlab.cli import main
from inpaintlab.detect.tiny import make_tiny_detector
from inpaintlab.infotext import parse_infotext, read_png_infotext, settings_from_infotext
from inpaintlab.replay import read_replay

BASE = {"steps": 2, "sampler": "Euler", "cfg_scale": 5.0, "seed": 5, "width": 64, "height": 64}
TAB1 = {"ad_confidence": 0.05, "ad_mask_k": 1, "ad_denoising_strength": 0.3, "ad_inpaint_only_masked_padding": 8}
TAB2 = {"ad_confidence": 0.05, "ad_prompt": "a hand, [PROMPT]", "ad_dilate_erode": -4, "ad_mask_k": 2,
        "ad_mask_filter_method": "Confidence", "ad_denoising_strength": 0.6, "ad_use_steps": True, "ad_steps": 1}
TAB3 = {"ad_confidence": 0.05, "ad_mask_k": 3, "ad_mask_merge_invert": "Merge", "ad_inpaint_only_masked": False}


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture()
def detectors(tmp_path, monkeypatch):
    # the infotext names detectors by file name: the replay finds them in the working directory
    monkeypatch.chdir(tmp_path)
    return [make_tiny_detector(tmp_path / f"tiny-{k}.safetensors", seed=k).name for k in range(3)]


def test_three_tabs_read_back_and_replay_bit_for_bit(pipe, detectors):
    more = [{"ad_model": detectors[1], **TAB2}, ADetailerUnit(detectors[2], **TAB3)]
    result = pipe.txt2img("a man", **BASE, ad_model=detectors[0], **TAB1, ad_more_tabs=more)
    fields = parse_infotext(result.infotext)
    assert fields["ADetailer model 2nd"] == detectors[1] and fields["ADetailer model 3rd"] == detectors[2]
    replay = read_replay(result.infotext)
    assert replay.problems == []  # no " 2nd" / " 3rd" key named as not applied
    assert replay.origin["ad_more_tabs"] == "ADetailer model 2nd"
    read = settings_from_infotext(result.infotext, strict=True)
    assert read["ad_more_tabs"] == (ADetailerUnit(detectors[1], **TAB2), ADetailerUnit(detectors[2], **TAB3))
    assert {k: read[k] for k in TAB1} == TAB1 and read["ad_model"] == detectors[0]
    plain = pipe.txt2img("a man", **BASE)
    one_tab = pipe.txt2img("a man", **BASE, ad_model=detectors[0], **TAB1)
    again = pipe.txt2img(**{k: v for k, v in read.items() if k in registry.for_command("txt2img")})
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))
    assert again.infotext == result.infotext
    # the later tabs changed the picture beyond tab 1's pass
    assert not np.array_equal(np.asarray(one_tab.images[0]), np.asarray(result.images[0]))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(one_tab.images[0]))


def test_from_png_applies_the_later_tabs(pipe, detectors, tiny_checkpoint, tmp_path, capsys):
    common = ["--model", str(tiny_checkpoint), "--kernels", "torch", "--no-progress"]
    tabs = json.dumps([{"ad_model": detectors[1], **TAB2}])
    assert main(["txt2img", *common, "--prompt", "a man", "--steps", "2", "--sampler", "Euler", "--cfg-scale", "5",
                 "--width", "64", "--height", "64", "--seed", "5", "--ad-model", detectors[0], "--ad-confidence",
                 "0.05", "--ad-mask-k", "1", "--ad-more-tabs", tabs, "--out", "first"]) == 0
    text = read_png_infotext(tmp_path / "first" / "00000-5.png")
    assert "ADetailer model 2nd: tiny-1.safetensors" in text and "ADetailer prompt 2nd: \"a hand, [PROMPT]\"" in text
    capsys.readouterr()
    assert main(["txt2img", *common, "--from-png", str(tmp_path / "first" / "00000-5.png"), "--strict",
                 "--out", "again"]) == 0
    assert "not apply" not in capsys.readouterr().err
    a = np.asarray(Image.open(tmp_path / "first" / "00000-5.png").convert("RGB"))
    b = np.asarray(Image.open(tmp_path / "again" / "00000-5.png").convert("RGB"))
    assert np.array_equal(a, b)
    assert read_png_infotext(tmp_path / "again" / "00000-5.png") == text


def test_a_bad_later_tab_is_named_and_left_out():
    fields = {"ADetailer model": "a.pt", "ADetailer model 2nd": "b.pt", "ADetailer confidence 2nd": "7",
              "ADetailer model 3rd": "c.pt", "ADetailer prompt 3rd": "x", "ADetailer model 5th": "e.pt"}
    keys, values, problems = read_more_tabs(fields)
    assert keys[0] == "ADetailer model 2nd" and set(keys) == set(fields) - {"ADetailer model", "ADetailer model 5th"}
    assert values == {"ad_more_tabs": (ADetailerUnit("c.pt", ad_prompt="x"),)}
    assert problems == ["ADetailer model 2nd: ADetailer tab 2: ADetailer unit: ad_confidence 7.0 must lie in [0, 1]"]
    replay = read_replay("p\nSteps: 2, Seed: 1, Size: 64x64, " + ", ".join(f"{k}: {v}" for k, v in fields.items()))
    named = {p.key for p in replay.problems}
    assert named == {"ADetailer model 2nd", "ADetailer model 5th"}  # the bad tab, and a 5th with no 4th before it


def test_bad_more_tabs_values_are_one_line_errors(pipe):
    for value, match in (("[{", "JSON list"), ({"ad_model": "a"}, "a list of ADetailer tabs"),
                         ([{"ad_modle": "a"}], "tab 2"), ([3], "tab 2: expected an ADetailerUnit"),
                         ([{"ad_model": "a", "ad_confidence": 2}], "ad_confidence")):
        with pytest.raises(ValueError, match=match):
            pipe.txt2img("a", **BASE, ad_more_tabs=value)
