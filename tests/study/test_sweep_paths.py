"""Sweep spec paths: relative ones resolve against the spec file's folder; a missing file is named before anything is
written, and a run that fails before its first cell leaves no empty `cells/` folder."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from inpaintlab.study import sweep


def _spec(tmp_path, model: str) -> dict:
    folder = tmp_path / "specs"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "image.png")
    Image.new("L", (16, 16), 255).save(folder / "mask.png")
    raw = {"model": model, "image": "image.png", "mask": "mask.png", "kernels": "torch",
           "base": {"steps": 1, "width": 16, "height": 16}, "x": {"denoising_strength": [0.5, 1.0]}, "y": {"mask_blur": [0, 2]}}
    (folder / "spec.json").write_text(json.dumps(raw))
    return folder / "spec.json"


def test_missing_model_is_named_with_the_rule(tmp_path, monkeypatch):
    spec = _spec(tmp_path, "../models/tiny.safetensors")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # the folder exists relative to the working directory, not to the spec
    with pytest.raises(ValueError, match=r"model file not found: .*tiny\.safetensors \(relative paths in a spec file "
                                         r"are resolved against the spec file's folder"):
        sweep(spec, tmp_path / "out")
    assert not (tmp_path / "out" / "cells").exists()


def test_failed_load_leaves_no_empty_cells_folder(tmp_path):
    spec = _spec(tmp_path, "broken.safetensors")
    (tmp_path / "specs" / "broken.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):  # the loader names the bad file
        sweep(spec, tmp_path / "out")
    assert not (tmp_path / "out" / "cells").exists()
