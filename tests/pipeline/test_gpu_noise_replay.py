"""Replaying an infotext that asks for A1111's "GPU" noise (its `RNG: GPU`, or no `RNG` key at all: A1111's default)
where CUDA is absent: NV (A1111's emulation of CUDA's generator) is used, and one line says so and where "GPU" came
from, in `settings_from_infotext`, `--from-png` and `info`. An explicit `--rng-source GPU` is still refused."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaintlab.cli import main
from inpaintlab.infotext import read_png_infotext, save_png, settings_from_infotext

TEXT = ("a red ball\nSteps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 42, Size: 64x48, "
        "Denoising strength: 0.75, Mask blur: 2, Version: v1.10.1")


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-noise")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    image.save(folder / "image.png")
    mask = Image.new("L", (64, 48))
    ImageDraw.Draw(mask).ellipse((16, 8, 48, 40), fill=255)
    mask.save(folder / "mask.png")
    save_png(image, folder / "no-rng.png", TEXT)
    save_png(image, folder / "rng-gpu.png", TEXT.replace(", Version", ", RNG: GPU, Version"))
    return folder


@pytest.mark.parametrize("text,origin", [(TEXT, 'no "RNG" key'), (TEXT.replace(", Version", ", RNG: GPU, Version"),
                                                                    '"RNG: GPU"')])
def test_settings_from_infotext_falls_back_to_nv(no_cuda, caplog, text, origin):
    with caplog.at_level(logging.WARNING, logger="inpaintlab"):
        assert settings_from_infotext(text)["rng_source"] == "NV"
    notes = [r.getMessage() for r in caplog.records if "NV" in r.getMessage()]
    assert len(notes) == 1 and origin in notes[0] and "CUDA is not available" in notes[0]
    assert "\n" not in notes[0]


def test_with_cuda_gpu_stays(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.WARNING, logger="inpaintlab"):
        assert settings_from_infotext(TEXT)["rng_source"] == "GPU"
    assert not caplog.records
    assert settings_from_infotext(TEXT + ", RNG: CPU")["rng_source"] == "CPU"


def test_info_says_nv_and_why(no_cuda, inputs, capsys):
    assert main(["info", str(inputs / "no-rng.png")]) == 0
    out = capsys.readouterr().out
    assert "rng_source: 'NV'" in out
    note = [line for line in out.splitlines() if "using NV" in line]
    assert len(note) == 1 and 'no "RNG" key' in note[0] and "GPU" in note[0]


def test_from_png_replays_with_nv(no_cuda, tiny_checkpoint, inputs, tmp_path, capsys):
    common = ["inpaint", "--model", str(tiny_checkpoint), "--image", str(inputs / "image.png"), "--mask",
              str(inputs / "mask.png"), "--kernels", "torch", "--no-progress"]
    assert main([*common, "--from-png", str(inputs / "rng-gpu.png"), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    note = [line for line in err.splitlines() if "using NV" in line]
    assert len(note) == 1 and '"RNG: GPU"' in note[0]
    # The same image as asking for NV outright; the new infotext records the source used.
    assert main([*common, "--from-png", str(inputs / "rng-gpu.png"), "--rng-source", "NV",
                 "--out", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a" / "00000-42.png", tmp_path / "b" / "00000-42.png"
    assert Image.open(a).tobytes() == Image.open(b).tobytes()
    assert "RNG: NV" in read_png_infotext(a)
    capsys.readouterr()
    # An explicit --rng-source GPU is what the user asked for: refused with the one-line CUDA message.
    assert main([*common, "--from-png", str(inputs / "no-rng.png"), "--rng-source", "GPU",
                 "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and len(err.strip().splitlines()) == 1
