"""Any infotext replays or says why: A1111 v1.10's paste conversions, old spellings, Forge, values it cannot use.

The expected values follow A1111's `infotext_utils.parse_generation_parameters`, `sd_samplers.get_sampler_and_scheduler`
and `infotext_versions.backcompat` as the spec (a1111-two-pass-and-options.md §6) describes them.
"""
import logging

import pytest

from inpaintlab import InfotextError
from inpaintlab.infotext import settings_from_infotext
from inpaintlab.replay import paste_sampler, read_replay

BASE = "Steps: 20, CFG scale: 7, Seed: 5, Size: 512x512"

# The examples, each with what the replay must do with it.
CONTROLNET_CANNY = (
    'a house\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, ControlNet 0: "Module: canny, '
    'Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, '
    'Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, '
    'Control Mode: Balanced", Version: v1.10.1')
# A module that needs an annotator network: named, the unit dropped, the rest replayed.
CONTROLNET_OPENPOSE = (
    'a house\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, ControlNet 0: "Module: '
    'openpose_full, Model: control_v11p_sd15_openpose [cab727d4], Weight: 1.0, Resize Mode: Crop and Resize, '
    'Processor Res: 512, Threshold A: 0.5, Threshold B: 0.5, Guidance Start: 0.0, Guidance End: 1.0, '
    'Pixel Perfect: False, Control Mode: Balanced", Version: v1.10.1')
FORGE = ("a cat\nSteps: 8, Sampler: Euler A Turbo, CFG scale: 2, Seed: 5, Size: 1024x1024, Model hash: 4f2e1c3d5b, "
         "Distilled CFG Scale: 3.5, Version: f2.0.1v1.10.1-previous-313-g8a042934")
ODD_SIZE = "x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 500x300, Version: v1.10.1"
OLD_DENOISE = "y\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, Denoising Strength: 0.6, Mask blur: 4"
HASHES = ('z\nSteps: 20, Sampler: DPM++ SDE Karras, CFG scale: 7, Seed: 5, Size: 512x512, '
          'Hashes: {"vae": "c6a580b13a", "model": "6ce0161689"}, Version: v1.10.1')


def problems(text):
    return [str(p) for p in read_replay(text).problems]


def test_unknown_controlnet_module_is_named_not_refused(caplog):
    with caplog.at_level(logging.WARNING, logger="inpaintlab"):
        settings = settings_from_infotext(CONTROLNET_OPENPOSE)
    assert "controlnet" not in settings and "control_weight" not in settings
    assert (settings["sampler"], settings["scheduler"]) == ("DPM++ 2M", "Karras")
    [warning] = [r.getMessage() for r in caplog.records if "does not apply" in r.getMessage()]
    assert "ControlNet 0" in warning and "openpose_full" in warning and "annotator network" in warning
    with pytest.raises(InfotextError, match="ControlNet 0"):
        settings_from_infotext(CONTROLNET_OPENPOSE, strict=True)
    # A pure-image module (canny) is a unit inpaintlab runs: no warning.
    assert not read_replay(CONTROLNET_CANNY).problems


def test_forge_sampler_and_extension_keys_replay_as_a1111_paste_does():
    replay = read_replay(FORGE)
    # A1111's get_sampler_and_scheduler: "Turbo" is no schedule, "Euler A Turbo" no sampler -> its first, DPM++ 2M.
    assert (replay.settings["sampler"], replay.settings["scheduler"]) == ("DPM++ 2M", "Automatic")
    keys = [p.key for p in replay.problems]
    assert keys == ["Sampler", "Distilled CFG Scale"]
    assert replay.refused is None and replay.settings["steps"] == 8
    # Forge's version string is not parsed by A1111 either: no backcompat option is switched on.
    assert "Version" not in keys


@pytest.mark.parametrize("sampler, schedule, expected", [
    ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
    ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "Exponential")),
    ("DPM++ SDE Karras", "Automatic", ("DPM++ SDE", "Karras")),     # the folded name wins, as in A1111
    ("Euler A SGMUniform", None, ("Euler a", "SGM Uniform")),      # Forge's spelling (SGMUniform: an A1111 alias)
    ("Euler a", "karras", ("Euler a", "Karras")),                   # schedule by its name
    ("LMS Karras", None, ("LMS", "Karras")),
    ("DDIM", None, ("DDIM", "Automatic")),
    ("Euler A Turbo", None, ("DPM++ 2M", "Automatic")),
    ("Euler", "Turbo", ("Euler", "Automatic")),
    (None, None, ("DPM++ 2M", "Automatic")),
])
def test_paste_sampler(sampler, schedule, expected):
    assert paste_sampler(sampler, schedule)[:2] == expected


def test_size_not_a_multiple_of_8_replays_at_the_size_a1111_generates():
    replay = read_replay(ODD_SIZE)
    assert (replay.settings["width"], replay.settings["height"]) == (496, 296)
    assert [p.key for p in replay.problems] == ["Size"] and "496x296" in str(replay.problems[0])


def test_old_spellings_and_hashes():
    replay = read_replay(OLD_DENOISE)
    assert replay.settings["denoising_strength"] == 0.6 and replay.problems == []
    assert replay.command == "inpaint"
    replay = read_replay(HASHES)
    assert replay.problems == [] and (replay.settings["sampler"], replay.settings["scheduler"]) == ("DPM++ SDE", "Karras")


def test_near_miss_keys_say_did_you_mean():
    [problem] = problems(f"p\n{BASE}, Denoise strength: 0.5")
    assert "did you mean 'Denoising strength'" in problem


@pytest.mark.parametrize("version, prompt, sampler, expected", [
    ("v1.5.1", "a [b:c:5]", "DDIM", ["old prompt editing timelines", "pad conds v0", "alphas_cumprod downcast"]),
    ("v1.6.0", "a", "Euler", ["alphas_cumprod downcast"]),
    ("v1.7.0-224-g1234abc", "a", "Euler", ["alphas_cumprod downcast"]),
    ("v1.7.0-225-g1234abc", "a", "Euler", []),
    ("v1.10.1", "a [b:c:5]", "DDIM", []),
    ("f2.0.1v1.10.1-previous-313-g8a042934", "a [b:c:5]", "DDIM", []),
])
def test_version_backcompat(version, prompt, sampler, expected):
    found = problems(f"{prompt}\n{BASE}, Sampler: {sampler}, Version: {version}")
    assert len(found) == (1 if expected else 0)
    for option in expected:
        assert option in found[0]


def test_hires_txt2img_is_a_txt2img_with_its_second_pass_strength():
    text = f"h\n{BASE}, Sampler: Euler, Denoising strength: 0.7, Hires upscale: 2, Hires upscaler: Latent"
    replay = read_replay(text)
    assert replay.command == "txt2img"
    assert replay.settings["denoising_strength"] == 0.7 and replay.settings["enable_hr"] is True
    assert replay.settings["hr_scale"] == 2 and replay.settings["hr_upscaler"] == "Latent"
    assert replay.problems == []


@pytest.mark.parametrize("text, command", [
    (f"p\n{BASE}", "txt2img"),
    (f"p\n{BASE}, Denoising strength: 0.5", "img2img"),
    (f"p\n{BASE}, Denoising strength: 0.5, Mask blur: 4", "inpaint"),
    (f"p\n{BASE}, Denoising strength: 0.5, Masked content: fill", "inpaint"),
])
def test_command_suggested(text, command):
    assert read_replay(text).command == command


def test_unusable_values_keep_the_default_and_are_named():
    text = "b\nSteps: many, Sampler: Euler, CFG scale: 7, Seed: 1.0, Size: 512x512, Denoising strength: 3"
    replay = read_replay(text)
    assert "steps" not in replay.settings and "denoising_strength" not in replay.settings
    assert replay.settings["seed"] == 1  # A1111 pastes float(text) into integer sliders
    assert [p.key for p in replay.problems] == ["Steps", "Denoising strength"]
    with pytest.raises(InfotextError, match="Steps: many"):
        settings_from_infotext(text, strict=True)


def test_hypernet_becomes_a_prompt_tag_and_is_named():
    replay = read_replay(f"p\n{BASE}, Hypernet: cats, Hypernet strength: 0.5")
    assert replay.settings["prompt"] == "p <hypernet:cats:0.5>"
    assert [p.key for p in replay.problems] == ["<hypernet:...> prompt tag"]


def test_only_a_prompt_is_refused_with_the_reason():
    assert read_replay("just a prompt").refused == "no generation parameters (only a prompt)"
    with pytest.raises(InfotextError, match="only a prompt"):
        settings_from_infotext("just a prompt")


def test_bad_json_quoting_is_kept_as_text():
    replay = read_replay(f'p\n{BASE}, Frob: "a\\x", Sampler: Euler')
    assert [p.key for p in replay.problems] == ["Frob"]
