"""The `inpaintlab` command end to end on a tiny checkpoint: PNGs with infotext, --from-png, info (demo: test_cli_output)."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, read_png_infotext


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "image.png")
    mask = Image.new("L", (64, 48))
    ImageDraw.Draw(mask).ellipse((16, 8, 48, 40), fill=255)
    mask.save(folder / "mask.png")
    return folder


def test_inpaint_writes_png_with_infotext_and_from_png_reproduces_it(tiny_checkpoint, inputs, tmp_path, capsys):
    common = ["--model", str(tiny_checkpoint), "--image", str(inputs / "image.png"), "--mask", str(inputs / "mask.png"),
              "--kernels", "torch", "--no-progress"]
    code = main(["inpaint", *common, "--prompt", "a (red:1.2) ball", "--negative-prompt", "blurry", "--steps", "3",
                 "--seed", "42", "--masked-content", "fill", "--mask-blur", "2", "--sampler", "Euler",
                 "--out", str(tmp_path / "a")])
    assert code == 0
    first = tmp_path / "a" / "00000-42.png"
    text = read_png_infotext(first)
    fields = parse_infotext(text)
    assert fields["Prompt"] == "a (red:1.2) ball" and fields["Negative prompt"] == "blurry"
    assert (fields["Steps"], fields["Sampler"], fields["Schedule type"], fields["Seed"]) == ("3", "Euler", "Automatic",
                                                                                             "42")
    assert fields["Masked content"] == "fill" and fields["Size"] == "64x48"
    assert "settings:" in capsys.readouterr().out

    code = main(["inpaint", *common, "--from-png", str(first), "--out", str(tmp_path / "b")])
    assert code == 0
    again = tmp_path / "b" / "00000-42.png"
    assert read_png_infotext(again) == text
    assert Image.open(again).tobytes() == Image.open(first).tobytes()

    # Explicit flags win over the PNG's settings; a second run in the same folder takes the next counter.
    assert main(["inpaint", *common, "--from-png", str(first), "--seed", "7", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "00001-7.png").exists()

    assert main(["info", str(first)]) == 0
    assert "masked_content: 'fill'" in capsys.readouterr().out


def test_txt2img_and_bad_input_exit_codes(tiny_checkpoint, inputs, tmp_path, capsys):
    assert main(["txt2img", "--model", str(tiny_checkpoint), "--prompt", "x", "--width", "32", "--height", "32",
                 "--steps", "2", "--seed", "1", "--kernels", "torch", "--no-progress", "--out", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "00000-1.png").size == (32, 32)
    code = main(["inpaint", "--model", str(tiny_checkpoint), "--image", str(inputs / "image.png"), "--mask",
                 str(inputs / "mask.png"), "--prompt", "x", "--sampler", "Nope", "--out", str(tmp_path / "bad")])
    assert code == 2 and "unknown sampler" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    code = main(["inpaint", "--model", str(tmp_path / "missing.safetensors"), "--image", str(inputs / "image.png"),
                 "--mask", str(inputs / "mask.png"), "--prompt", "x", "--out", str(tmp_path / "bad")])
    assert code == 2 and "missing.safetensors" in capsys.readouterr().err


def test_sketch_and_unreadable_image(tiny_checkpoint, inputs, tmp_path, capsys):
    sketch = Image.open(inputs / "image.png").copy()
    ImageDraw.Draw(sketch).rectangle((10, 10, 30, 30), fill=(0, 0, 255))
    sketch.save(tmp_path / "sketch.png")
    common = ["--model", str(tiny_checkpoint), "--image", str(inputs / "image.png"), "--kernels", "torch",
              "--no-progress", "--prompt", "x", "--steps", "2", "--seed", "5"]
    assert main(["inpaint", *common, "--sketch", str(tmp_path / "sketch.png"), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "00000-5.png").exists()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    code = main(["inpaint", *common, "--mask", str(tmp_path / "broken.png"), "--out", str(tmp_path / "b")])
    assert code == 2 and "broken.png" in capsys.readouterr().err
