"""`inpaintlab sweep --from-png` over checkpoints, VAEs and hires settings: a crafted A1111 grid infotext whose X axis
is "Checkpoint name" (two tiny SD1 files, named as A1111's dropdown writes them, one with its hash) and Y axis
"Hires upscaler" replays cell by cell, each cell equal bit for bit to a direct txt2img call on that checkpoint; a
"VAE" axis runs the cells with that VAE file; the grid written carries the same keys and replays again."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import inpaintlab
from inpaintlab.checkpoint.read import file_sha256
from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, save_png

BASE = dict(steps=2, sampler="Euler", seed=3, width=32, height=32, rng_source="CPU")
HIRES = dict(enable_hr=True, hr_scale=1.5, denoising_strength=0.5)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint):
    from inpaintlab.tiny import make_tiny_checkpoint, make_tiny_vae_file

    root = tmp_path_factory.mktemp("grid-models")
    (root / "sd").mkdir()
    a = root / "sd" / "tiny-a.safetensors"
    shutil.copyfile(tiny_checkpoint, a)
    b = make_tiny_checkpoint(root / "tiny-b.safetensors", seed=1)
    v = make_tiny_vae_file(root / "tiny-vae.safetensors", seed=2)
    return root, a, b, v


def _text(axes: str, hires: bool = True, rng: str = "RNG: CPU, ") -> str:
    keys = "Denoising strength: 0.5, Hires upscale: 1.5, Hires upscaler: Latent, " if hires else ""
    return ("a red house\nNegative prompt: fog\nSteps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
            f"Seed: 3, Size: 32x32, Model hash: 0000000000, Model: tiny-a, {keys}{rng}Script: X/Y/Z plot, {axes}, "
            "Version: v1.10.1")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()   # tiny tensors: a second thread only waits on a busy machine
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _same(path, result):
    with Image.open(path) as cell:
        assert np.array_equal(np.asarray(cell.convert("RGB")), np.asarray(result.images[0]))
        assert cell.text["parameters"] == result.infotext


def test_checkpoint_and_hires_upscaler_axes(models, tmp_path):
    root, a, b, _ = models
    axes = (f'X Type: Checkpoint name, X Values: "sd/tiny-a.safetensors [{file_sha256(a)[:10]}],tiny-b.safetensors", '
            'Y Type: Hires upscaler, Y Values: "Latent (nearest),Lanczos"')
    png = save_png(Image.new("RGB", (96, 96)), tmp_path / "xyz_grid-0001.png", _text(axes))
    # no --model: the base is the grid's Model, found in --models-dir
    assert main(["sweep", "--from-png", str(png), "--models-dir", str(root), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    for ix, path in enumerate((a, b)):
        pipe = inpaintlab.load(path, kernels="torch")
        for iy, upscaler in enumerate(("Latent (nearest)", "Lanczos")):
            direct = pipe.txt2img("a red house", "fog", hr_upscaler=upscaler, **HIRES, **BASE)
            _same(out / f"cell-{ix}-{iy}.png", direct)
            assert direct.images[0].size == (48, 48)
    with Image.open(out / "grid.png") as grid:
        fields = parse_infotext(grid.text["parameters"])
    assert fields["X Type"] == "Checkpoint name" and fields["Y Values"] == "Latent (nearest),Lanczos"
    assert fields["Model"] == "tiny-a" and fields["Hires upscaler"] == "Latent (nearest)"
    # our grid carries the grid keys as they came (so it replays the same way: test_grid_replay.py)
    source = parse_infotext(_text(axes))
    assert {k: fields[k] for k in source if k[:2] in ("X ", "Y ") or k == "Script"} == {
        k: source[k] for k in source if k[:2] in ("X ", "Y ") or k == "Script"}


def test_vae_axis_and_unknown_names(models, tmp_path, capsys, monkeypatch):
    root, a, _, v = models
    # no RNG key: A1111's GPU noise, replayed with NV where CUDA is absent (as --from-png does)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    png = save_png(Image.new("RGB", (64, 32)), tmp_path / "grid.png",
                   _text("X Type: VAE, X Values: \"Automatic,TINY-VAE.safetensors\"", hires=False, rng=""))
    assert main(["sweep", "--from-png", str(png), "--model", str(a), "--models-dir", str(root), "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "out")]) == 0
    for ix, vae in enumerate((None, v)):
        direct = inpaintlab.load(a, vae, kernels="torch").txt2img("a red house", "fog", **{**BASE, "rng_source": "NV"})
        _same(tmp_path / "out" / f"cell-{ix}.png", direct)
    with Image.open(tmp_path / "out" / "cell-1.png") as cell:
        assert parse_infotext(cell.text["parameters"])["VAE"] == "tiny-vae.safetensors"
    capsys.readouterr()
    bad = save_png(Image.new("RGB", (64, 32)), tmp_path / "bad.png",
                   _text("X Type: Checkpoint name, X Values: \"tiny-a,tiny-z\""))
    assert main(["sweep", "--from-png", str(bad), "--models-dir", str(root), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err
    assert "X Values 'Checkpoint name': no checkpoint 'tiny-z'" in err and "Traceback" not in err
    assert main(["sweep", "--from-png", str(bad), "--model", str(a), "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "bad2")]) != 0
    assert "--models-dir" in capsys.readouterr().err
