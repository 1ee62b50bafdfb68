"""Infotext against A1111 v1.10's infotext format (a UI and an API submission), and a PNG round trip."""
import pytest
from PIL import Image

from inpaintlab.infotext import (build_infotext, format_value, parse_infotext, read_png_infotext, save_png,
                                 settings_from_infotext)

UI_EXAMPLE = (
    "a wooden door in a stone wall\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, Version: v1.10.1"
)
API_EXAMPLE = (
    "a cat on a sofa\n"
    "Steps: 50, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: 42, Size: 512x512, "
    "Model hash: 3e16efc8f0, Model: sd-v1-5-inpainting, Denoising strength: 0.75, Conditional mask weight: 1.0, "
    "Mask mode: Inpaint not masked, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 0, "
    "Masked content: fill, Version: v1.10.1"
)


def test_ui_example_exact():
    params = {"Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 7, "Seed": 1234567,
              "Size": "512x512", "Model hash": "6ce0161689", "Model": "v1-5-pruned-emaonly", "Denoising strength": 0.75}
    text = build_infotext("a wooden door in a stone wall", "blurry, lowres", params, {"Mask blur": 4}, version="v1.10.1")
    assert text == UI_EXAMPLE


def test_api_example_exact_with_extra_key_order():
    params = {"Denoising strength": 0.75, "Conditional mask weight": 1.0, "Seed": 42, "Steps": 50, "Sampler": "Euler",
              "Schedule type": "Automatic", "CFG scale": 7.0, "Size": "512x512", "Model hash": "3e16efc8f0",
              "Model": "sd-v1-5-inpainting"}
    extra = {"Mask mode": "Inpaint not masked", "Mask blur": 4, "Inpaint area": "Only masked", "Masked area padding": 0,
             "Masked content": "fill"}
    assert build_infotext("a cat on a sofa", "", params, extra, version="v1.10.1") == API_EXAMPLE


def test_quoting_and_key_only_pairs():
    assert format_value("a, b") == '"a, b"'
    assert format_value("x: y") == '"x: y"'
    assert format_value("plain") == "plain"
    text = build_infotext("p", "", {"Steps": 1}, {"Tiling": "Tiling", "Lora hashes": "a: 1, b: 2"})
    assert text.endswith('Steps: 1, Tiling, Lora hashes: "a: 1, b: 2"')
    with pytest.raises(ValueError, match="not a fixed infotext key"):
        build_infotext("p", "", {"Mask blur": 4})


def test_parse_back_examples():
    fields = parse_infotext(API_EXAMPLE)
    assert fields["Prompt"] == "a cat on a sofa" and fields["Negative prompt"] == ""
    assert fields["Masked area padding"] == "0" and fields["Mask mode"] == "Inpaint not masked"
    settings = settings_from_infotext(UI_EXAMPLE)
    assert settings == {
        "prompt": "a wooden door in a stone wall", "negative_prompt": "blurry, lowres", "steps": 20,
        "sampler": "DPM++ 2M", "scheduler": "Karras", "cfg_scale": 7.0, "seed": 1234567, "denoising_strength": 0.75,
        "mask_blur": 4, "padding": 32, "clip_skip": 1, "width": 512, "height": 512, "mask_mode": "masked",
        "masked_content": "original", "inpaint_area": "whole", "fill_space": "pixel",
        # no RNG key: A1111's default "GPU", replayed with its emulation "NV" where CUDA is absent
        "rng_source": "GPU" if __import__("torch").cuda.is_available() else "NV",
    }
    api = settings_from_infotext(API_EXAMPLE)
    assert (api["mask_mode"], api["masked_content"], api["inpaint_area"], api["padding"]) == (
        "not_masked", "fill", "only_masked", 0)


def test_multiline_prompt_and_quoted_values_round_trip():
    text = build_infotext("line one\nline two", "neg\nmore", {"Steps": 3, "Sampler": "Euler", "Seed": 5,
                                                              "Model": "a, b"})
    fields = parse_infotext(text)
    assert fields["Prompt"] == "line one\nline two" and fields["Negative prompt"] == "neg\nmore"
    assert fields["Model"] == "a, b"


def test_png_round_trip_latin1_and_unicode(tmp_path):
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    for name, text in (("a.png", UI_EXAMPLE), ("b.png", "猫 on a sofa\nSteps: 1, Sampler: Euler, Seed: 2")):
        path = save_png(image, tmp_path / name, text)
        assert read_png_infotext(path) == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary files left


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    image = Image.new("RGB", (8, 8))

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_png(image, tmp_path / "x.png", "p\nSteps: 1, Sampler: Euler, Seed: 1")
    assert list(tmp_path.iterdir()) == []


def test_png_without_infotext(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no 'parameters'"):
        read_png_infotext(tmp_path / "plain.png")
