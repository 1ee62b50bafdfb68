"""`inpaintlab info --check DIR` on a folder built from many infotext shapes (every example of the issue among them),
and what `info` says about one picture: the command that replays it, what is absent, what is not applied."""
import subprocess
import sys

from PIL import Image
from test_image_metadata import exif_bytes

from inpaintlab.check import check
from inpaintlab.cli import main
from inpaintlab.infotext import save_png
from test_replay import CONTROLNET_CANNY, CONTROLNET_OPENPOSE, FORGE, HASHES, ODD_SIZE, OLD_DENOISE

A1111_UI = (
    "a wooden door in a stone wall\nNegative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, Version: v1.10.1")
A1111_API = (
    "a cat on a sofa\nSteps: 50, Sampler: Euler, Schedule type: Automatic, CFG scale: 7.0, Seed: 42, Size: 512x512, "
    "Model hash: 3e16efc8f0, Model: sd-v1-5-inpainting, Denoising strength: 0.75, Conditional mask weight: 1.0, "
    "Mask mode: Inpaint not masked, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 0, "
    "Masked content: fill, Version: v1.10.1")
BASE = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"
SHAPES = {
    # replay with every key applied
    "a1111_ui.png": A1111_UI,
    "a1111_api.png": A1111_API,
    "old_denoise.png": OLD_DENOISE,
    "hashes.png": HASHES,
    "folded_sampler.png": "p\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, Version: v1.9.4",
    "xyz_grid.png": f"p\n{BASE}, X Type: CFG scale, X Values: \"5, 7\", Version: v1.10.1",
    "lora.png": f"p <lora:detail:0.5>\n{BASE}, Lora hashes: \"detail: 1a2b3c4d5e6f\", Version: v1.10.1",
    "jpeg.jpg": f"in a jpeg\n{BASE}, Version: v1.10.1",
    "soft.png": f"p\n{BASE}, Denoising strength: 0.8, Mask blur: 16, Soft inpainting enabled: True, "
                "Soft inpainting schedule bias: 1.5",
    "controlnet_canny.png": CONTROLNET_CANNY,
    "hires.png": f"p\n{BASE}, Denoising strength: 0.7, Hires upscale: 2, Hires upscaler: Latent, Version: v1.10.1",
    "adetailer.webp": f"p\n{BASE}, ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, Version: v1.10.1",
    # replay with warnings
    "controlnet_openpose.png": CONTROLNET_OPENPOSE,
    "forge.png": FORGE,
    "odd_size.png": ODD_SIZE,
    "old_version.png": f"p\n{BASE}, Version: v1.5.1",
    "hypernet.png": f"p\n{BASE}, Hypernet: cats, Hypernet strength: 0.5",
    "extension.webp": f"p\n{BASE}, FooExtension strength: 0.3, Version: v1.10.1",
    "unknown_schedule.png": f"p\n{BASE}, Schedule type: Turbo",
    "bad_value.png": f"p\n{BASE}, Denoising strength: 1.5, Mask blur: 4",
    "second_controlnet.png": f"p\n{BASE}, ControlNet 1: \"Module: depth, Model: depth [12345678]\"",
    # refused
    "prompt_only.png": "only a prompt, nothing else",
    "no_infotext.png": None,
    "truncated.png": "cut",
}


def build_folder(folder):
    folder.mkdir()
    for name, text in SHAPES.items():
        image = Image.new("RGB", (16, 16), (40, 80, 120))
        if name.endswith((".jpg", ".webp")):
            image.save(folder / name, exif=exif_bytes(b"UNICODE\0" + text.encode("utf-16-be")))
        elif text is None:
            image.save(folder / name)
        else:
            save_png(image, folder / name, text)
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[:20])
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_check_table(tmp_path, capsys):
    folder = build_folder(tmp_path / "pictures")
    result = check(folder)
    status = {name: kind for name, (kind, _) in result.images.items()}
    assert set(status) == set(SHAPES)
    expected = ["complete"] * 12 + ["warnings"] * 9 + ["refused"] * 3
    assert [status[name] for name in SHAPES] == expected, status
    assert result.reasons("warnings") == {
        "ControlNet 0": 1, "Sampler": 1, "Distilled CFG Scale": 1, "Size": 1, "Denoising strength": 1,
        "Version": 1, "<hypernet:...> prompt tag": 1, "FooExtension strength": 1, "Schedule type": 1,
        "ControlNet 1": 1}
    assert result.reasons("refused") == {"no generation parameters (only a prompt)": 1,
                                         "no 'parameters' infotext in this image": 1,
                                         "truncated PNG with no infotext before the damage": 1}

    assert main(["info", "--check", str(folder)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "24 images:\n     12  replay with every key applied\n      9  replay with warnings\n      3  refused" in out
    assert "      1  Denoising strength" in out
    assert "forge.png" in out and "with warnings: Sampler, Distilled CFG Scale" in out
    assert main(["info", "--check", str(folder / "forge.png")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_info_says_the_right_command_and_keeps_it_short(tmp_path, capsys):
    img2img = save_png(Image.new("RGB", (8, 8)), tmp_path / "i.png", f"p\n{BASE}, Denoising strength: 0.4")
    assert main(["info", str(img2img)]) == 0
    out = capsys.readouterr().out
    assert "replayed by `inpaintlab img2img --from-png`" in out and "denoising_strength: 0.4" in out
    hires = save_png(Image.new("RGB", (8, 8)), tmp_path / "h.png", SHAPES["hires.png"])
    assert main(["info", str(hires)]) == 0
    out = capsys.readouterr().out
    replayed = out.split("as:")[1]  # hires fix: the strength is the second pass's, replayed by txt2img
    assert "replayed by `inpaintlab txt2img --from-png`" in out and "denoising_strength: 0.7" in replayed
    assert "enable_hr: True" in replayed
    grid = save_png(Image.new("RGB", (8, 8)), tmp_path / "g.png",
                    f"p\n{BASE}, Denoising strength: 0.5, Mask blur: 4, X Type: Steps, X Values: \"1, 2\"")
    assert main(["info", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "not applied" not in out  # the grid's axes describe the grid; the replay makes its first cell
    assert "fill_space: 'pixel'   (absent: inpaintlab's value" in out
    assert "mask_mode: 'masked'   (absent: A1111's value" in out
    # Settings A1111 omits at their default are not listed as "not stored"; only what no infotext records.
    assert "never recorded in infotexts (flags or defaults): batch_size, resize_mode" in out


def test_info_into_a_closed_pipe_is_quiet(tmp_path):
    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "long.png", "word " * 40000 + f"\n{BASE}")
    run = subprocess.run(f"{sys.executable} -m inpaintlab info {png} | head -c 100 > /dev/null; "
                         "echo \"${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash", capture_output=True,
                         text=True, timeout=120)
    assert run.stdout.strip() == "0" and run.stderr == ""
