"""End to end on tiny checkpoints: an SDXL base refined by the tiny SDXL refiner from the command line, every refiner
key written, read back by `--from-png` (the refiner found by its A1111 name next to --model) and replayed bit for
bit; a missing refiner file is one line naming it; A1111's reading rules (name [hash], "None", the v1.8.0
backcompat default of the step rule, `Hires refiner`)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, settings_from_infotext
from inpaintlab.refiner.tiny import make_tiny_refiner
from inpaintlab.tiny import make_tiny_family_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdxl-refiner")
    return (make_tiny_family_checkpoint(folder / "tiny-sdxl.safetensors", "sdxl"),
            make_tiny_refiner(folder / "tiny-sdxl-refiner.safetensors"))


def test_cli_refiner_keys_written_read_back_and_replayed(files, tmp_path, capsys):
    base, refiner = files
    common = ["txt2img", "--model", str(base), "--device", "cpu", "--no-progress"]
    assert main([*common, "--prompt", "a red house", "--negative-prompt", "blurry", "--steps", "4", "--sampler",
                 "Euler", "--seed", "5", "--width", "64", "--height", "64", "--refiner-checkpoint", str(refiner),
                 "--refiner-switch-at", "0.4", "--refiner-switch-by-sample-steps", "--out", str(tmp_path / "a")]) == 0
    (png,) = (tmp_path / "a").glob("*.png")
    text = Image.open(png).text["parameters"]
    fields = parse_infotext(text)
    assert fields["Refiner"] == f"tiny-sdxl-refiner [{refiner_hash(refiner)}]"
    assert (fields["Refiner switch at"], fields["Refiner switch by sampling steps"]) == ("0.4", "True")
    settings = settings_from_infotext(text, strict=True)
    assert (settings["refiner_checkpoint"], settings["refiner_switch_at"], settings["refiner_switch_by_sample_steps"]
            ) == ("tiny-sdxl-refiner", 0.4, True)
    # --from-png names the refiner "tiny-sdxl-refiner": found next to --model, from another working directory.
    assert main([*common, "--from-png", str(png), "--strict", "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").glob("*.png")
    a, b = Image.open(png), Image.open(again)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.text["parameters"] == b.text["parameters"]
    capsys.readouterr()
    assert main([*common, "--prompt", "x", "--refiner-checkpoint", "no-such-refiner", "--out",
                 str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-refiner" in err and "not found" in err
    assert not (tmp_path / "c").exists()


def refiner_hash(path) -> str:
    from inpaintlab.checkpoint import short_hash

    return short_hash(path)


def test_reading_refiner_keys_as_a1111():
    text = "a cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512, Refiner: sd_xl_refiner_1.0 [7440042bbd], " \
           "Refiner switch at: 0.8, Version: v1.7.0-300-g1234abc"
    settings = settings_from_infotext(text, strict=True)
    assert settings["refiner_checkpoint"] == "sd_xl_refiner_1.0" and settings["refiner_switch_at"] == 0.8
    assert settings["refiner_switch_by_sample_steps"] is True  # backcompat: before v1.8.0, the step rule
    later = settings_from_infotext(text.replace("v1.7.0-300-g1234abc", "v1.10.1"), strict=True)
    assert later["refiner_switch_by_sample_steps"] is False and "hires_fix_refiner_pass" not in later
    assert settings_from_infotext(text.replace("sd_xl_refiner_1.0 [7440042bbd]", "None"))["refiner_checkpoint"] is None
    plain = settings_from_infotext("a cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512, Version: v1.7.0-300")
    assert "refiner_switch_by_sample_steps" not in plain  # no refiner: the setting is not read at all


def test_refiner_switch_at_is_an_x_y_z_axis():
    from inpaintlab.study.xyz import XYZError, axis_from_fields

    axis = axis_from_fields({"X Type": "Refiner switch at", "X Values": "0.5, 0.7-0.9 [2]"}, "X")
    assert (axis.type.setting, axis.values) == ("refiner_switch_at", (0.5, 0.7, 0.9))
    with pytest.raises(XYZError, match="Refiner checkpoint.*refiner per cell"):
        axis_from_fields({"Y Type": "Refiner checkpoint", "Y Values": "a, b"}, "Y")
