"""Script arguments as sweep axes: a spec with "script" runs the script in every cell (no mask needed), its
arguments checked before any model loads; each cell equals a direct call of the script."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import inpaintlab
from inpaintlab.errors import SettingsError
from inpaintlab.scripts import outpainting_mk2, script_args
from inpaintlab.study import spec as spec_module
from inpaintlab.study.sweep import sweep


def test_script_args_are_checked():
    assert script_args("Outpainting mk2", {"pixels": "64", "direction": "left, up", "noise_q": 2}) == {
        "pixels": 64, "direction": ["left", "up"], "noise_q": 2.0}
    for bad, match in [({"pixels": 2.5}, "pixels must be int"), ({"loops": 3}, "unknown argument"),
                       ({"mask_blur": 99}, r"Mask blur\) must be in \[0, 64\]"), ({"direction": "north"}, "choose")]:
        with pytest.raises(SettingsError, match=match):
            script_args("Outpainting mk2", bad)
    with pytest.raises(SettingsError, match="unknown script"):
        script_args("Outpainting mk3", {})


def _spec(tmp_path, tiny_checkpoint, **over):
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    raw = {"model": str(tiny_checkpoint), "image": str(tmp_path / "in.png"), "script": "Outpainting mk2",
           "base": {"prompt": "a field", "steps": 1, "sampler": "Euler", "direction": "left", "mask_blur": 2,
                    "width": 64, "height": 64},
           "x": {"pixels": [8, 72]}, "y": {"color_variation": [0.0, 0.5]}, "seeds": [4]}
    raw.update(over)
    return raw


def test_spec_validation(tmp_path, tiny_checkpoint):
    spec = spec_module.load_spec(_spec(tmp_path, tiny_checkpoint))
    assert spec.script == "Outpainting mk2" and spec.mask is None
    args, settings = spec.script_split(spec.cells()[3].settings(spec.base))
    assert args == {"direction": ["left"], "mask_blur": 2, "pixels": 72, "color_variation": 0.5}
    assert settings["steps"] == 1 and "mask_blur" not in settings
    with pytest.raises(SettingsError, match="noise_q"):
        spec_module.load_spec(_spec(tmp_path, tiny_checkpoint, y={"noise_q": [9.0]}))
    with pytest.raises(SettingsError, match="unknown script"):
        spec_module.load_spec(_spec(tmp_path, tiny_checkpoint, script="Outpainting mk3"))
    with pytest.raises(SettingsError, match="intermediates"):
        spec_module.load_spec(_spec(tmp_path, tiny_checkpoint, intermediates=True))
    with pytest.raises(SettingsError, match="mask"):           # without a script the mask is still required
        spec_module.load_spec({k: v for k, v in _spec(tmp_path, tiny_checkpoint).items() if k != "script"})


def test_script_sweep_cells_equal_direct_calls(tmp_path, tiny_checkpoint):
    raw = _spec(tmp_path, tiny_checkpoint, y={"steps": [1]})
    rows = sweep(raw, tmp_path / "sweep")
    assert len(rows) == 2 and all(r["script"] == "Outpainting mk2" for r in rows)
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    image = Image.open(tmp_path / "in.png")
    for row, pixels in zip(rows, (8, 72)):
        direct = outpainting_mk2(pipe, image, "a field", pixels=pixels, direction="left", mask_blur=2, width=64,
                                 height=64, seed=4, steps=1, sampler="Euler")
        with Image.open(tmp_path / "sweep" / row["image"]) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(direct.images[0]))
        assert row["infotext"] == direct.infotext
    assert list((tmp_path / "sweep").glob("grid-*.png"))
