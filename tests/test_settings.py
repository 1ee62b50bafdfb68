"""The settings registry: one row per setting drives Python, CLI flags, infotext read-back and sweep axes."""
import inspect
import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaintlab import settings as registry
from inpaintlab.cli import build_parser
from inpaintlab.infotext import parse_infotext, read_settings, settings_from_infotext, unapplied
from inpaintlab.inpaint import Pipeline
from inpaintlab.study.spec import load_spec

A1111_TEXT = (
    "a cat <hypernet:catstyle:0.8> on a sofa\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 0123456789, Model: v1-5-pruned-emaonly, Variation seed: 99, Variation seed strength: 0.3, "
    "Denoising strength: 0.75, ENSD: 31337, Mask mode: Inpaint not masked, Inpaint area: Only masked, "
    "Masked area padding: 16, Masked content: latent noise, Face restoration: CodeFormer, Eta: 0.5, "
    "Version: v1.10.1"
)


@pytest.mark.parametrize("method, command", [(Pipeline.inpaint, "inpaint"), (Pipeline.txt2img, "txt2img")])
def test_every_row_is_a_pipeline_keyword_with_the_same_default(method, command):
    parameters = inspect.signature(method).parameters
    for name in registry.for_command(command):
        if not registry.SETTINGS[name].keyword:
            continue  # a technique's own row, taken through **settings
        assert name in parameters, f"{name} has a row for {command} but is not a keyword of {method.__name__}"
        # None: the default depends on the input (width/height: the image's size, 512 for txt2img).
        if name not in ("prompt", "negative_prompt") and registry.SETTINGS[name].default is not None:
            assert parameters[name].default == registry.SETTINGS[name].default, name


def test_every_row_has_a_cli_flag_with_one_default_in_its_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for command in registry.COMMANDS:
        actions = {a.dest: a for a in subparsers[command]._actions}
        for name in registry.for_command(command):
            parts = registry.SETTINGS[name].parts
            for dest in [f"{name}_{part}" for part in parts] or [name]:
                assert dest in actions, f"--{dest} missing from {command}"
    for sub in subparsers.values():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{sub.prog} {action.option_strings or action.dest} has no help"
                assert action.help.count("(default:") <= 1, action.help


def test_a1111_labels_are_accepted_everywhere():
    assert registry.coerce("masked_content", "latent noise") == "latent_noise"
    assert registry.coerce("masked_content", "Latent Nothing") == "latent_nothing"
    assert registry.coerce("inpaint_area", "Only masked") == "only_masked"
    assert registry.coerce("inpaint_area", "Whole picture") == "whole"
    assert registry.coerce("mask_mode", "Inpaint not masked") == "not_masked"
    assert registry.coerce("resize_mode", "Crop and resize") == 1
    spec = load_spec({"model": "m.safetensors", "image": "i.png", "mask": "m.png",
                      "base": {"inpaint_area": "Only masked"},
                      "x": {"masked_content": ["latent noise", "fill"]}, "y": {"mask_mode": ["Inpaint not masked"]}})
    assert spec.x == ("masked_content", ["latent_noise", "fill"]) and spec.base["inpaint_area"] == "only_masked"
    assert spec.y == ("mask_mode", ["not_masked"])


@pytest.mark.parametrize("name, value, message", [
    ("inpainting_mask_weight", 2, "inpainting_mask_weight must be in [0, 1]"),
    ("steps", 0, "steps must be >= 1"),
    ("steps", "ten", "steps must be an integer"),
    ("masked_content", "latent", "unknown masked_content 'latent'"),
    ("sampler", "DDPM", "unknown sampler 'DDPM'"),
    ("eta", -0.5, "eta must be >= 0"),
    ("s_noise", "x", "s_noise must be a number"),
    ("width", 100, "width must be a positive multiple of 8"),
    ("cfg_scale", "nan", "cfg_scale must be a finite number"),
    ("denoising_strength", 1.5, "denoising_strength must be in [0, 1]"),
])
def test_bad_values_name_the_setting(name, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        registry.coerce(name, value)


def test_python_keywords_take_labels_and_are_checked_before_work(monkeypatch):
    seen = {}

    def fake(self, image, mask, prompt, negative_prompt="", **settings):
        seen.update(settings)

    monkeypatch.setattr(Pipeline, "inpaint", registry.validated(fake))
    Pipeline.inpaint(None, None, None, "x", masked_content="latent noise", inpaint_area="Only masked")
    assert seen == {"masked_content": "latent_noise", "inpaint_area": "only_masked"}
    with pytest.raises(ValueError, match="inpainting_mask_weight"):
        Pipeline.inpaint(None, None, None, "x", inpainting_mask_weight=2)


def test_sweep_spec_cells_are_checked_before_loading():
    raw = {"model": "missing.safetensors", "image": "i.png", "mask": "m.png",
           "x": {"masked_content": ["fill", "original"]}, "y": {"steps": [4, 0]}}
    with pytest.raises(ValueError, match="axis 'y': steps must be >= 1"):
        load_spec(raw)
    # A combination only fails per cell: a combined sampler name and a different explicit schedule.
    raw["y"] = {"sampler": ["Euler", "DPM++ 2M Karras"]}
    raw["x"] = {"scheduler": ["Karras", "Exponential"]}
    with pytest.raises(ValueError, match="cell 3 .*names scheduler 'Karras' but scheduler='Exponential'"):
        load_spec(raw)


def test_unapplied_infotext_keys_warn_once_and_strict_refuses(caplog):
    with caplog.at_level(logging.WARNING, logger="inpaintlab"):
        settings = settings_from_infotext(A1111_TEXT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "does not apply" in r.getMessage()]  # the GPU-noise note is its own line
    assert len(warnings) == 1
    for key in ("Face restoration", "<hypernet:catstyle:0.8>"):
        assert key in warnings[0]
    for applied in ("Steps", "Mask mode", "Model hash", "Version", "Masked area padding", "Variation seed", "ENSD",
                    "Eta"):
        assert applied + "," not in warnings[0] and not warnings[0].endswith(applied)
    assert (settings["masked_content"], settings["inpaint_area"], settings["mask_mode"], settings["padding"]) == (
        "latent_noise", "only_masked", "not_masked", 16)
    assert (settings["width"], settings["height"], settings["mask_blur"]) == (512, 512, 0)
    assert (settings["subseed"], settings["subseed_strength"], settings["ensd"], settings["rng_source"]) == (
        99, 0.3, 31337, "GPU" if torch.cuda.is_available() else "NV")  # A1111's CUDA noise, emulated without CUDA
    assert settings["eta"] == 0.5
    with pytest.raises(ValueError, match="Face restoration"):
        settings_from_infotext(A1111_TEXT, strict=True)


def test_registering_a_key_or_extra_network_silences_it(monkeypatch):
    monkeypatch.setattr(registry, "INFOTEXT_KEYS", dict(registry.INFOTEXT_KEYS))
    monkeypatch.setattr(registry, "EXTRA_NETWORKS", set(registry.EXTRA_NETWORKS))
    monkeypatch.setattr("inpaintlab.infotext.INFOTEXT_KEYS", registry.INFOTEXT_KEYS)
    fields = parse_infotext(A1111_TEXT)
    before = unapplied(fields)
    registry.register_infotext_key("Face restoration")
    registry.register_extra_network("hypernet")
    after = unapplied(fields)
    assert "Face restoration" in before and "Face restoration" not in after
    assert any("<hypernet:" in p for p in before) and not any("<hypernet:" in p for p in after)


def test_inpaintlab_infotext_replays_without_warnings_and_every_example_reads_back(tiny_checkpoint, caplog):
    """Write → read for every row with an `example`: the pipeline writes the key and the registry reads it back."""
    import inpaintlab

    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 48))
    ImageDraw.Draw(mask).ellipse((16, 8, 48, 40), fill=255)
    examples = {name: s.example for name, s in registry.SETTINGS.items()
                if s.example is not registry.MISSING and "inpaint" in s.commands}
    prompt, negative = examples.pop("prompt"), examples.pop("negative_prompt")
    result = pipe.inpaint(image, mask, prompt, negative, **examples)
    with caplog.at_level(logging.WARNING, logger="inpaintlab"):
        back = settings_from_infotext(result.infotext, strict=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for name, value in {"prompt": prompt, "negative_prompt": negative, **examples}.items():
        if registry.SETTINGS[name].infotext is not None:
            assert back[name] == value, (name, back.get(name), value, result.infotext)
    assert read_settings(parse_infotext(result.infotext))[1]["masked_content"] == "Masked content"
