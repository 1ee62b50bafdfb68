"""Newcomer frictions of the command line, each checked where it bit: what is refused before a model loads (LoRA tags,
ControlNet files named by a PNG, inpaint_only+lama without LaMa, --fill-space latent without fill, a diffusers folder),
the Model hash warning of a replay, and the demo on a tiny checkpoint of another family."""
from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

import inpaintlab.cli as cli
import inpaintlab.frontend as frontend
from inpaintlab.cli import main
from inpaintlab.infotext import read_png_infotext, save_png

TEXT = ("a cat\nSteps: 1, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 5, Size: 32x32, "
        "Denoising strength: 0.75, Mask blur: 2, RNG: CPU, Version: v1.10.1")


@pytest.fixture
def no_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(frontend, "_load", refuse)


@pytest.fixture
def inputs(tmp_path):
    Image.new("RGB", (32, 32), (90, 120, 200)).save(tmp_path / "image.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 24, 24), fill=255)
    mask.save(tmp_path / "mask.png")
    return tmp_path


def _inpaint(model, inputs, *extra):
    return ["inpaint", "--model", str(model), "--image", str(inputs / "image.png"), "--mask", str(inputs / "mask.png"),
            "--kernels", "torch", "--no-progress", "--out", str(inputs / "out"), *extra]


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_unknown_lora_tag_is_refused_before_loading(tiny_checkpoint, inputs, no_load, capsys):
    (inputs / "loras").mkdir()
    assert main(_inpaint(tiny_checkpoint, inputs, "--prompt", "a <lora:nope:0.5> cat")) == 2
    _one_line_error(capsys, "<lora:nope:…>", "--lora-dir")
    assert main(_inpaint(tiny_checkpoint, inputs, "--prompt", "a <lora:nope:0.5> cat",
                         "--lora-dir", str(inputs / "loras"))) == 2
    _one_line_error(capsys, "'nope' not found in")
    assert not (inputs / "out").exists()


def test_controlnet_named_by_png_missing_is_reported_as_such(tiny_checkpoint, inputs, no_load, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    text = TEXT.replace(", Version", ', ControlNet 0: "Module: inpaint_only, Model: control_v11p_sd15_inpaint '
                                     '[c4bb465c], Weight: 1.0, Resize Mode: Crop and Resize, Guidance Start: 0.0, '
                                     'Guidance End: 1.0", Version')
    save_png(Image.new("RGB", (32, 32)), inputs / "cn.png", text)
    assert main(_inpaint(tiny_checkpoint, inputs, "--from-png", str(inputs / "cn.png"))) == 2
    _one_line_error(capsys, "ControlNet model 'control_v11p_sd15_inpaint'", "ControlNet 0 entry of", "cn.png",
                    "file not found", "--controlnet FILE")


def test_lama_preprocessor_needs_a_lama_image(tiny_checkpoint, inputs, no_load, capsys, tmp_path_factory):
    from inpaintlab.tiny import make_tiny_controlnet

    cn = make_tiny_controlnet(tmp_path_factory.mktemp("cn") / "tiny-cn.safetensors")
    args = _inpaint(tiny_checkpoint, inputs, "--prompt", "x", "--controlnet", str(cn),
                    "--controlnet-preprocessor", "inpaint_only+lama")
    assert main(args) == 2
    _one_line_error(capsys, "inpaint_only+lama needs --controlnet-lama")
    assert main(_inpaint(tiny_checkpoint, inputs, "--prompt", "x", "--controlnet-lama",
                         str(inputs / "image.png"))) == 2
    _one_line_error(capsys, "--controlnet-lama is for a ControlNet unit")


def test_lama_generator_reaches_the_unit(tiny_checkpoint, inputs, capsys, tmp_path_factory):
    from inpaintlab.lama import make_tiny_lama_file
    from inpaintlab.tiny import make_tiny_controlnet

    folder = tmp_path_factory.mktemp("cn")
    cn = make_tiny_controlnet(folder / "tiny-cn.safetensors")
    lama = make_tiny_lama_file(folder / "tiny-lama.safetensors")
    args = _inpaint(tiny_checkpoint, inputs, "--prompt", "x", "--steps", "1", "--controlnet", str(cn),
                    "--controlnet-preprocessor", "inpaint_only+lama", "--controlnet-lama", str(lama))
    assert main(args) == 0, capsys.readouterr().err
    written = sorted((inputs / "out").glob("*.png"))
    assert len(written) == 1 and "Module: inpaint_only+lama" in read_png_infotext(written[0])


def test_fill_space_latent_without_fill_is_refused(tiny_checkpoint, inputs, no_load, capsys):
    assert main(_inpaint(tiny_checkpoint, inputs, "--prompt", "x", "--fill-space", "latent",
                         "--masked-content", "latent noise")) == 2
    _one_line_error(capsys, "--fill-space latent", "'latent_noise' ignores it")


def test_fill_space_latent_without_fill_warns_in_python(caplog):
    from inpaintlab.prepare import prepare_inpaint

    image, mask = Image.new("RGB", (16, 16)), Image.new("L", (16, 16), 255)
    prepare_inpaint(image, mask, 16, 16, masked_content="original", fill_space="latent")
    assert any("ignores it" in r.getMessage() for r in caplog.records)


def test_diffusers_folder_as_model_says_so(inputs, no_load, capsys):
    folder = inputs / "sd15-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    assert main(_inpaint(folder, inputs, "--prompt", "x")) == 2
    _one_line_error(capsys, "--model", "diffusers-format folders are not supported")


def test_model_hash_mismatch_warns_with_both_hashes(tiny_checkpoint, inputs, capsys):
    from inpaintlab.checkpoint import short_hash

    ours = short_hash(tiny_checkpoint)
    save_png(Image.new("RGB", (32, 32)), inputs / "other.png", TEXT.replace("Size: 32x32", "Size: 32x32, Model hash: "
                                                                            "0123456789"))
    assert main(_inpaint(tiny_checkpoint, inputs, "--from-png", str(inputs / "other.png"))) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "Model hash" in line]
    assert len(lines) == 1 and "0123456789" in lines[0] and ours in lines[0]
    # The same hash: silent. An 8-digit hash (A1111 before v1.0) is compared with the old hash of the file.
    for stored, warned in ((ours, False), (cli.legacy_model_hash(tiny_checkpoint), False), ("deadbeef", True)):
        save_png(Image.new("RGB", (8, 8)), inputs / "h.png", TEXT.replace("Size: 32x32", f"Model hash: {stored}"))
        cli.warn_model_hash(str(inputs / "h.png"), str(tiny_checkpoint), ours)
        err = capsys.readouterr().err
        assert ("Model hash deadbeef" in err and cli.legacy_model_hash(tiny_checkpoint) in err) if warned else not err


def test_demo_with_a_tiny_checkpoint_runs_the_tiny_job(tiny_family_checkpoints, tmp_path, capsys):
    from inpaintlab.demo import TINY_SIZE

    model = tiny_family_checkpoints["sd2"]
    assert main(["demo", "--model", str(model), "--steps", "1", "--out", str(tmp_path), "--kernels", "torch",
                 "--no-progress"]) == 0
    assert not (tmp_path / "base.png").exists()  # no 768x768 living-room base picture
    assert Image.open(tmp_path / "inpaint-fill.png").size == (TINY_SIZE, TINY_SIZE)
