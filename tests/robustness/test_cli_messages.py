"""Command-line wording: errors name flags, long settings are abbreviated, --from-png warns instead of refusing."""
import pytest
from PIL import Image

from inpaintlab import frontend
from inpaintlab.cli import flag_names, main
from inpaintlab.infotext import save_png
from test_replay import FORGE


@pytest.fixture
def stop_at_load(monkeypatch, tmp_path):
    """A model path that passes the file checks; loading it stops the run (so nothing heavy runs)."""
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(frontend, "_load", stop)
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"not loaded")
    return ["--model", str(model), "--out", str(tmp_path / "out")]


def test_flag_names():
    assert flag_names("cfg_scale must be a number, got 'x'") == "--cfg-scale must be a number, got 'x'"
    assert flag_names("denoising_strength must be in [0, 1]") == "--denoising-strength must be in [0, 1]"
    assert flag_names("a.pt: pass allow_pickle=True to read it") == "a.pt: pass --allow-pickle to read it"
    assert flag_names("<lora:x>: pass lora_dir= (a folder)") == "<lora:x>: pass --lora-dir (a folder)"
    assert flag_names("text_encoder: cannot infer") == "text_encoder: cannot infer"  # not a flag: unchanged


def test_cli_errors_name_the_flag(stop_at_load, capsys):
    assert main(["txt2img", *stop_at_load, "--prompt", "p", "--cfg-scale", "loud"]) == 2
    assert capsys.readouterr().err == "inpaintlab: error: --cfg-scale must be a number, got 'loud'\n"


def test_long_prompts_are_abbreviated_in_the_settings_line(stop_at_load, capsys):
    assert main(["txt2img", *stop_at_load, "--prompt", "word " * 10000]) == 130
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("settings:"))
    assert len(line) < 200 and "(50000 characters)" in line


def test_from_png_warns_about_what_it_does_not_know(stop_at_load, tmp_path, capsys):
    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "forge.png", FORGE)
    # (--rng-source NV: the PNG's GPU noise needs CUDA, another matter)
    assert main(["txt2img", *stop_at_load, "--from-png", str(png), "--rng-source", "NV"]) == 130  # up to the load
    captured = capsys.readouterr()
    assert "Euler A Turbo: not an A1111 sampler" in captured.err and "Distilled CFG Scale" in captured.err
    assert "sampler='DPM++ 2M'" in captured.out
    assert main(["txt2img", *stop_at_load, "--from-png", str(png), "--strict"]) == 2
    assert "refused by --strict" in capsys.readouterr().err
    only_prompt = save_png(Image.new("RGB", (8, 8)), tmp_path / "p.png", "a prompt alone")
    assert main(["txt2img", *stop_at_load, "--from-png", str(only_prompt)]) == 2
    assert "cannot be replayed: no generation parameters" in capsys.readouterr().err

