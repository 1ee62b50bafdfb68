"""Replaying an A1111 X/Y/Z plot grid PNG (`inpaintlab sweep --from-png grid.png`).

The grid's infotext is that of its first cell plus `Script: X/Y/Z plot` and the axes (`inpaintlab.study.xyz`). The
base settings are read from it as `--from-png` reads any infotext; every cell applies its x, y and z values to them
in that order and runs (txt2img, or img2img / inpaint when an init image, and a mask, are given: A1111's PNG does not
hold them). Each cell is saved with its own infotext, and one labelled grid per z value with the first cell's
infotext and the grid keys, so A1111's PNG Info (and this command) reads it back. "Vary seeds" offsets cannot be
recovered from a grid and are not applied.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from .. import settings as registry
from ..files import prepare_out_dir
from ..grid import make_grid
from ..infotext import parse_infotext, read_png_infotext, read_settings, save_png
from .xyz import Axis, cells, grid_axes

log = logging.getLogger(__name__)
_VALUE_ONLY = ("Prompt S/R", "Sampler")  # A1111 labels these cells with the bare value


def _label(axis: Axis, value: Any) -> str:
    if axis.label in _VALUE_ONLY:
        return str(value)
    return f"{axis.label}: {round(value, 8) if isinstance(value, float) else value}"


def grid_keys_text(first_cell: str, fields: dict[str, str]) -> str:
    """`first_cell`'s infotext with the grid's script keys (copied from `fields`) before `Version`."""
    from ..infotext import format_value

    keys = [k for k in fields if k == "Script" or k[:2] in ("X ", "Y ", "Z ") or k.startswith("Fixed ")]
    pairs = [f"{k}: {format_value(fields[k])}" for k in keys]
    head, sep, version = first_cell.rstrip().rpartition(", Version: ")
    if sep and "\n" not in version:
        return ", ".join([head, *pairs]) + sep + version
    return ", ".join([first_cell.rstrip(), *pairs])


def replay_grid(pipe, png: str | Path, out: str | Path, image: Image.Image | None = None,
                mask: Image.Image | None = None, progress: bool = False) -> list[Path]:
    """Run every cell of the grid in `png` with `pipe`; returns the written cell and grid paths."""
    text = read_png_infotext(png)
    fields = parse_infotext(text)
    axes = grid_axes(fields)
    command = "txt2img" if image is None else ("inpaint" if mask is not None else "img2img")
    names = set(registry.for_command(command)) | {"prompt", "negative_prompt"}
    stored, _ = read_settings(fields)
    base = {k: v for k, v in stored.items() if k in names}
    out = prepare_out_dir(out)
    results: dict[tuple[int, ...], tuple[Image.Image, str]] = {}
    paths = []
    for index, settings in cells(base, axes):
        s = dict(settings)
        prompt, negative = s.pop("prompt", ""), s.pop("negative_prompt", "")
        if command == "txt2img":
            result = pipe.txt2img(prompt, negative, progress=progress, **s)
        else:
            result = pipe.inpaint(image, mask, prompt, negative, progress=progress, **s)
        results[index] = (result.images[0], result.infotext)
        name = "cell-" + "-".join(str(i) for i in index) + ".png"
        paths.append(save_png(result.images[0], out / name, result.infotext))
        log.info("cell %s done", index)
    by_letter = dict(axes)
    x, y, z = by_letter.get("X"), by_letter.get("Y"), by_letter.get("Z")
    nx, ny, nz = (len(a.values) if a else 1 for a in (x, y, z))
    order = [letter for letter, _ in axes]

    def key(ix: int, iy: int, iz: int) -> tuple[int, ...]:
        pos = {"X": ix, "Y": iy, "Z": iz}
        return tuple(pos[letter] for letter in order)

    for iz in range(nz):
        rows = [[results[key(ix, iy, iz)][0] for ix in range(nx)] for iy in range(ny)]
        grid = make_grid(rows, [_label(x, v) for v in x.values] if x else None,
                         [_label(y, v) for v in y.values] if y else None,
                         title=_label(z, z.values[iz]) if z else None)
        info = grid_keys_text(results[key(0, 0, iz)][1], fields)
        paths.append(save_png(grid, out / (f"grid-z{iz}.png" if z else "grid.png"), info))
    return paths
