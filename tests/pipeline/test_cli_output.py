"""What a user keeps: `info`, saved results, grids with infotext, TI hashes, help texts and the version."""
import re
import hashlib

import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.cli import build_parser, main
from inpaintlab.infotext import parse_infotext, read_png_infotext, save_png

A1111_INPAINT = (
    "a cat\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE: vae-ft-mse.safetensors, Denoising strength: 0.75, "
    "Frobnicate: 3, Version: v1.10.1"
)
TXT2IMG = "a room\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 3, Size: 64x64, RNG: CPU"


@pytest.fixture
def inputs(tmp_path):
    Image.new("RGB", (32, 32), (90, 120, 200)).save(tmp_path / "image.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 24, 24), fill=255)
    mask.save(tmp_path / "mask.png")
    return tmp_path


def test_info_prints_what_is_stored_then_the_replay(tmp_path, capsys):
    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", A1111_INPAINT)
    assert main(["info", str(png)]) == 0
    stored, replay = capsys.readouterr().out.split("\nreplayed by")
    for line in ("Model: v1-5-pruned-emaonly", "VAE: vae-ft-mse.safetensors", "Frobnicate: 3", "Version: v1.10.1"):
        assert line in stored
    assert "mask_blur" not in stored and "Mask blur" not in stored
    # No mask key: an img2img (or an inpaint at default mask settings, which the note says).
    assert replay.startswith(" `inpaintlab img2img --from-png`") and "`inpaintlab inpaint` with your mask" in replay
    assert "mask_blur" not in replay and "sampler: 'DPM++ 2M'" in replay
    assert "not applied by inpaintlab: Frobnicate" in replay

    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "b.png", TXT2IMG)
    assert main(["info", str(png)]) == 0
    out = capsys.readouterr().out
    assert "`inpaintlab txt2img --from-png`" in out
    for inpaint_only in ("mask_blur", "masked_content", "inpaint_area", "padding"):  # (denoising: hires fix too)
        assert not re.search(rf"\b{inpaint_only}\b", out), inpaint_only  # ad_mask_blur etc. are txt2img rows too
    assert main(["info", "--raw", str(png)]) == 0
    assert capsys.readouterr().out == TXT2IMG + "\n"


def test_result_save_writes_infotext_and_a_batch_grid(tiny_checkpoint, tmp_path):
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    result = pipe.txt2img("x", width=32, height=32, steps=1, seed=4, batch_size=3)
    paths = result.save(tmp_path / "out")
    assert [p.name for p in paths] == ["00000-4.png", "00001-5.png", "00002-6.png", "grid-0000.png"]
    for path, text in zip(paths, result.infotexts):
        assert read_png_infotext(path) == text
    grid = Image.open(paths[-1])
    assert grid.size == (64, 64)  # A1111: round(sqrt(3)) = 2 rows of 2 columns
    assert read_png_infotext(paths[-1]) == result.infotexts[0]
    assert result.save(tmp_path / "out")[0].name == "00003-4.png"
    single = pipe.txt2img("x", width=32, height=32, steps=1, seed=9).save(tmp_path / "one.png")
    assert read_png_infotext(single[0]).startswith("x\nSteps: 1")
    with pytest.raises(ValueError, match="3 images need a folder"):
        result.save(tmp_path / "three.png")


def test_cli_batch_writes_a_grid(tiny_checkpoint, tmp_path, capsys):
    assert main(["txt2img", "--model", str(tiny_checkpoint), "--prompt", "x", "--width", "32", "--height", "32",
                 "--steps", "1", "--seed", "1", "--batch-size", "2", "--kernels", "torch", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    assert "grid-0000.png (grid)" in capsys.readouterr().out
    assert parse_infotext(read_png_infotext(tmp_path / "grid-0000.png"))["Seed"] == "1"


def test_ti_hashes_are_recorded(tmp_path):
    from inpaintlab.tiny import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path / "t.safetensors")
    (tmp_path / "emb").mkdir()
    files = {}
    for i, name in enumerate(["goodstyle", "badhands"]):
        torch.save({"string_to_param": {"*": torch.randn(2, 64, generator=torch.Generator().manual_seed(i))}},
                   tmp_path / "emb" / f"{name}.pt")
        files[name] = hashlib.sha256((tmp_path / "emb" / f"{name}.pt").read_bytes()).hexdigest()[:12]
    pipe = inpaintlab.load(checkpoint, kernels="torch", embeddings_dir=tmp_path / "emb")
    text = pipe.txt2img("a goodstyle cat", "badhands", width=32, height=32, steps=1, seed=1).infotext
    assert parse_infotext(text)["TI hashes"] == f"goodstyle: {files['goodstyle']}, badhands: {files['badhands']}"
    assert f'TI hashes: "goodstyle: {files["goodstyle"]}, badhands: {files["badhands"]}", Version:' in text
    plain = pipe.txt2img("a cat", width=32, height=32, steps=1, seed=1).infotext
    assert "TI hashes" not in plain


def test_demo_modes_differ_visibly_with_a_progress_bar_and_a_grid_infotext(tmp_path, capsys):
    """The README's claim: inside the mask any two masked-content modes differ by a mean of more than 20/255."""
    import itertools

    import numpy as np

    from inpaintlab.demo import MODES, TINY_SIZE, centre_mask, demo_picture

    assert main(["demo", "--out", str(tmp_path), "--kernels", "torch"]) == 0
    err = capsys.readouterr().err
    assert "demo: 100%" in err and "4/4" in err
    inside = np.asarray(centre_mask(TINY_SIZE)) == 255
    far_outside = np.asarray(centre_mask(TINY_SIZE, fraction=0.375 + 0.25)) == 0  # beyond the blur's reach
    picture = np.asarray(demo_picture(TINY_SIZE), dtype=np.float64)
    out = {m: np.asarray(Image.open(tmp_path / f"inpaint-{m}.png"), dtype=np.float64) for m in MODES}
    for a, b in itertools.combinations(MODES, 2):
        assert np.abs(out[a] - out[b])[inside].mean() > 20, (a, b)
    for m in MODES:
        assert np.array_equal(out[m][far_outside], picture[far_outside]), m
        stored = parse_infotext(read_png_infotext(tmp_path / f"inpaint-{m}.png")).get("Masked content", "original")
        assert stored == m.replace("_", " ")
    fields = parse_infotext(read_png_infotext(tmp_path / "demo-grid.png"))
    assert fields["X Type"] == "Masked content"
    assert fields["X Values"] == "fill, original, latent_noise, latent_nothing"
    assert fields["Masked content"] == "fill" and list(fields)[-1] == "Version"
    assert Image.open(tmp_path / "demo-grid.png").height > 3 * TINY_SIZE  # three stages per mode


def test_sweep_grid_infotext(tiny_checkpoint, tmp_path):
    from inpaintlab.study import sweep

    Image.new("RGB", (32, 32), (90, 120, 200)).save(tmp_path / "i.png")
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 24, 24), fill=255)
    mask.save(tmp_path / "m.png")
    spec = {"model": str(tiny_checkpoint), "image": str(tmp_path / "i.png"), "mask": str(tmp_path / "m.png"),
            "base": {"prompt": "x", "steps": 1}, "x": {"masked_content": ["fill", "latent noise"]},
            "y": {"mask_blur": [0]}, "z": {"cfg_scale": [3]}, "seeds": [5], "kernels": "torch"}
    sweep(spec, tmp_path / "out")
    fields = parse_infotext(read_png_infotext(tmp_path / "out" / "grid-z0-seed5.png"))
    assert (fields["X Type"], fields["X Values"]) == ("Masked content", "fill, latent_noise")
    assert (fields["Y Type"], fields["Y Values"], fields["Z Type"], fields["Z Values"]) == (
        "Mask blur", "0", "CFG Scale", "3.0")   # A1111's X/Y/Z axis label where it has one
    assert fields["Script"] == "X/Y/Z plot"
    assert fields["Seed"] == "5" and fields["Masked content"] == "fill"


def test_help_texts_and_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"inpaintlab {inpaintlab.__version__}"
    help_text = build_parser()._subparsers._group_actions[0].choices["inpaint"].format_help()
    flat = " ".join(help_text.split())
    assert "DPM++ 2M, DPM++ SDE, DPM++ 2M SDE" in flat and "UniPC, LCM" in flat and "--eta" in flat
    for flag in ("--device", "--kernels", "--no-progress", "--verbose", "--strict"):
        assert flag in help_text
    info_help = build_parser()._subparsers._group_actions[0].choices["info"].format_help()
    assert "a PNG with a 'parameters' infotext" in info_help and "--raw" in info_help


def test_pickle_refusal_names_the_flag(tmp_path, capsys):
    (tmp_path / "model.ckpt").write_bytes(b"not really a pickle")
    code = main(["txt2img", "--model", str(tmp_path / "model.ckpt"), "--prompt", "x", "--device", "cpu",
                 "--kernels", "torch", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--allow-pickle" in err and "allow_pickle=True" not in err
