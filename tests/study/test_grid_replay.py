"""`inpaintlab sweep --from-png`: an A1111-style X/Y/Z grid infotext replays cell by cell (each cell equal to a
direct txt2img call with the axis values applied), and the replayed grid carries the same keys, read back again."""
from __future__ import annotations

import numpy as np
from PIL import Image

import inpaintlab
from inpaintlab.cli import main
from inpaintlab.infotext import parse_infotext, save_png

GRID_TEXT = ("a red house\nNegative prompt: fog\nSteps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
             "Seed: 3, Size: 32x32, RNG: CPU, Script: X/Y/Z plot, X Type: CFG Scale, X Values: \"3-7 (+4)\", "
             "Y Type: Prompt S/R, Y Values: \"red,blue\", Version: v1.10.1")


def test_sweep_from_png_replays_cells_and_writes_the_keys(tiny_checkpoint, tmp_path, capsys):
    png = save_png(Image.new("RGB", (64, 64)), tmp_path / "xyz_grid-0001.png", GRID_TEXT)
    assert main(["sweep", "--from-png", str(png), "--model", str(tiny_checkpoint), "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    base = dict(steps=2, sampler="Euler", seed=3, width=32, height=32, rng_source="CPU")
    for (ix, cfg), (iy, prompt) in [((0, 3.0), (0, "a red house")), ((1, 7.0), (1, "a blue house"))]:
        direct = pipe.txt2img(prompt, "fog", cfg_scale=cfg, **base)
        with Image.open(out / f"cell-{ix}-{iy}.png") as cell:
            assert np.array_equal(np.asarray(cell.convert("RGB")), np.asarray(direct.images[0]))
            assert cell.text["parameters"] == direct.infotext
    with Image.open(out / "grid.png") as grid:
        fields = parse_infotext(grid.text["parameters"])
    assert {k: fields[k] for k in ("Script", "X Type", "X Values", "Y Type", "Y Values")} == {
        "Script": "X/Y/Z plot", "X Type": "CFG Scale", "X Values": "3-7 (+4)", "Y Type": "Prompt S/R",
        "Y Values": "red,blue"}
    assert fields["CFG scale"] == "3" and fields["Prompt"] == "a red house"
    capsys.readouterr()
