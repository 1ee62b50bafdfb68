"""A1111 upscaler names resolved to files (`UpscalerDir`) and the `inpaintlab upscale` command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from upscaler_fixtures import esrgan_layout, randomise

from inpaintlab.cli import main
from inpaintlab.upscalers import Tiling, UpscalerDir, UpscalerError, load, model_pass, upscale
from inpaintlab.upscalers.compact import CompactConfig, SRVGGNetCompact
from inpaintlab.upscalers.rrdb import RRDBConfig, RRDBNet


def _rrdb_sd(seed=0, layout="new"):
    old = RRDBNet(RRDBConfig(layout="old", nf=8, nb=1, gc=4)).state_dict()
    return esrgan_layout(randomise(old, seed), layout, nb=1, n_up=2)


@pytest.fixture()
def models(tmp_path):
    root = tmp_path / "models"
    for sub in ("RealESRGAN", "ESRGAN", "SwinIR"):
        (root / sub).mkdir(parents=True)
    torch.save({"params_ema": _rrdb_sd(1)}, root / "RealESRGAN" / "RealESRGAN_x4plus.pth")
    torch.save(_rrdb_sd(2, "old"), root / "ESRGAN" / "4x-UltraSharp.pth")
    # An RRDBNet file placed in the SwinIR folder is run with SwinIR's averaging tiling, as A1111 would.
    torch.save(_rrdb_sd(3, "kair"), root / "SwinIR" / "odd.pth")
    compact = randomise(SRVGGNetCompact(CompactConfig(num_feat=8, num_conv=2, scale=4)).state_dict(), 4)
    torch.save({"params": compact}, root / "RealESRGAN" / "realesr-general-x4v3.pth")
    return root


def test_names_in_a1111_order_and_lookup(models):
    d = UpscalerDir(models)
    assert d.names() == ["None", "Lanczos", "Nearest", "4x-UltraSharp", "odd", "R-ESRGAN 4x+", "R-ESRGAN General 4xV3"]
    assert d.path("R-ESRGAN 4x+").name == "RealESRGAN_x4plus.pth"
    assert d.path("r-esrgan 4x+").name == "RealESRGAN_x4plus.pth"       # case-insensitive, as the SD upscale API
    assert d.path("4x-ultrasharp").name == "4x-UltraSharp.pth"
    assert d.load("Lanczos") == "Lanczos"
    m = d.load("R-ESRGAN 4x+")
    assert m.arch == "ESRGAN" and m.scale == 4 and m.tiling == "grid" and m.name == "R-ESRGAN 4x+"
    assert d.load("R-ESRGAN 4x+") is m                                   # cached
    assert d.load("R-ESRGAN General 4xV3").arch == "Compact"
    assert d.load("odd").tiling == "average"
    with pytest.raises(UpscalerError, match=r"'R-ESRGAN 4x\+ Anime6B'.*RealESRGAN_x4plus_anime_6B\.pth"):
        d.path("R-ESRGAN 4x+ Anime6B")
    with pytest.raises(UpscalerError, match="no upscaler named 'nope'"):
        d.path("nope")
    with pytest.raises(UpscalerError, match="folder not found"):
        UpscalerDir(models / "missing")


def test_upscale_command_with_a_file_and_a_name(models, tmp_path, capsys):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8))
    img.save(tmp_path / "in.png")
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "in.png"), "--upscaler", "R-ESRGAN 4x+", "--upscaler-dir", str(models),
                 "--scale", "2", "--tile", "16", "--out", str(out)]) == 0
    got = Image.open(out / "in-upscaled.png")
    assert got.size == (56, 40)
    assert got.text["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+"
    expected = upscale(img, 2, load(models / "RealESRGAN" / "RealESRGAN_x4plus.pth"), Tiling(None, 16, None))
    assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(expected))
    assert main(["upscale", str(tmp_path / "in.png"), "--upscaler", str(models / "ESRGAN" / "4x-UltraSharp.pth"),
                 "--size", "60x60", "--crop", "--tile", "0", "--out", str(out)]) == 0
    got = Image.open(out / "in-upscaled.png")
    raw = model_pass(load(models / "ESRGAN" / "4x-UltraSharp.pth"), img, Tiling(None, 0, 0))  # ×4 = 112×80
    fitted = raw.resize((112 * 60 // 80 // 8 * 8, 80 * 60 // 80 // 8 * 8), Image.Resampling.LANCZOS)  # by 3 → 80×56
    assert got.size == (60, 60) and fitted.size == (80, 56)
    assert np.array_equal(np.asarray(got.convert("RGB"))[2:58], np.asarray(fitted)[:, 10:70])
    capsys.readouterr()


@pytest.mark.parametrize("argv,message", [
    (["--upscaler", "R-ESRGAN 4x+"], "pass --upscaler-dir"),
    (["--upscaler", "Lanczos", "--scale", "-1"], "must be positive"),
    (["--upscaler", "Lanczos", "--size", "12by4"], "WIDTHxHEIGHT"),
    (["--upscaler", "Lanczos", "--crop"], "--crop needs --size"),
])
def test_upscale_command_errors_are_one_line(tmp_path, capsys, argv, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
