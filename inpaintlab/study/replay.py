"""Replaying an A1111 X/Y/Z plot grid PNG (`inpaintlab sweep --from-png grid.png`).

The grid's infotext is that of its first cell plus `Script: X/Y/Z plot` and the axes (`inpaintlab.study.xyz`). The
base settings are read from it as `--from-png` reads any infotext; every cell applies its x, y and z values to them
in that order and runs (txt2img, or img2img / inpaint when an init image, and a mask, are given: A1111's PNG does not
hold them). Each cell is saved with its own infotext, and one labelled grid per z value with the first cell's
infotext and the grid keys, so A1111's PNG Info (and this command) reads it back. "Vary seeds" is not recorded in a
grid: the caller names the axes it was ticked for (`vary_seeds`).

"Checkpoint name" and "VAE" axes need a `ModelDir` (the folder the names are looked up in) and a `loader`
(checkpoint path or None for the base model, VAE path or None) -> pipeline; every name is resolved before the first
cell runs, and the cells run grouped by model, one model loaded at a time.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from .. import settings as registry
from ..files import prepare_out_dir
from ..grid import make_grid
from ..infotext import parse_infotext, read_png_infotext, read_settings, replay_noise, save_png
from .models import ModelDir
from . import xyz
from .xyz import CHECKPOINT, VAE, Axis, XYZError, cells, grid_axes

log = logging.getLogger(__name__)
_VALUE_ONLY = ("Prompt S/R", "Sampler")  # A1111 labels these cells with the bare value
Loader = Callable[[Path | None, Path | None], Any]


def _label(axis: Axis, value: Any) -> str:
    if axis.label in _VALUE_ONLY:
        return str(value)
    if axis.label == "Prompt order":
        return f"{axis.label}: {', '.join(value)}"
    if axis.label == "Checkpoint name":
        return f"{axis.label}: {os.path.basename(value)}"
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


def _check_axes(axes: list[tuple[str, Axis]], fields: dict[str, str], names: set[str], command: str) -> None:
    for letter, axis in axes:
        setting = axis.type.setting
        if setting is not None and setting not in names:
            log.warning("%s Type %r: %s does not apply to %s; its values change nothing (as in A1111)", letter,
                        axis.label, setting, command)
        if axis.type.is_seed and -1 in axis.values and not fields.get(f"Fixed {letter} Values"):
            log.warning("%s Values %r: -1 without Fixed %s Values (A1111's \"Keep -1 for seeds\"): those cells get a "
                        "random seed and will not match the grid", letter, axis.text, letter)


def _resolve_models(axes: list[tuple[str, Axis]], models: ModelDir | None,
                    loader: Loader | None) -> dict[str, Path | None]:
    """A1111 name -> file for every Checkpoint name / VAE value, before any cell runs."""
    found: dict[str, Path | None] = {}
    for letter, axis in axes:
        if axis.label not in ("Checkpoint name", "VAE"):
            continue
        if models is None or loader is None:
            raise XYZError(f"{letter} Type {axis.label!r}: replaying a grid over checkpoints or VAEs needs the "
                           "folder their names are found in (--models-dir)")
        for value in axis.values:
            what = f"{letter} Values {axis.label!r}"
            path = models.checkpoint(value, what) if axis.label == "Checkpoint name" else models.vae(value, what)
            found[f"{axis.label}\0{value}"] = path
    return found


def replay_grid(pipe, png: str | Path, out: str | Path, image: Image.Image | None = None,
                mask: Image.Image | None = None, progress: bool = False, *, models: ModelDir | None = None,
                loader: Loader | None = None, vary_seeds: str = "") -> list[Path]:
    """Run every cell of the grid in `png` with `pipe` (cells of other checkpoints / VAEs with `loader`'s
    pipelines, their names looked up in `models`; `pipe` None: `loader(None, None)` gives the base model); returns
    the written cell and grid paths. `vary_seeds`: the letters of the axes A1111's "Vary seeds for X/Y/Z" was
    ticked for (the grid does not record it)."""
    text = read_png_infotext(png)
    fields = parse_infotext(text)
    axes = grid_axes(fields)
    command = "txt2img" if image is None else ("inpaint" if mask is not None else "img2img")
    names = set(registry.for_command(command)) | {"prompt", "negative_prompt"}
    _check_axes(axes, fields, names, command)
    stored, origin = read_settings(fields)
    stored, note = replay_noise(stored, origin)  # A1111's default "GPU" noise without CUDA: NV, said in one line
    if note:
        log.warning("%s", note)
    base = {k: v for k, v in stored.items() if k in names}
    cell_list = cells(base, axes)
    if vary_seeds:
        cell_list = xyz.vary_seeds(cell_list, axes, vary_seeds)
    files = _resolve_models(axes, models, loader)

    def model_key(settings: dict[str, Any]) -> tuple[Path | None, Path | None]:
        checkpoint = settings.get(CHECKPOINT)
        vae = settings.get(VAE)
        return (files[f"Checkpoint name\0{checkpoint}"] if checkpoint is not None else None,
                files[f"VAE\0{vae}"] if vae is not None else None)

    out = prepare_out_dir(out)
    results: dict[tuple[int, ...], tuple[Image.Image, str]] = {}
    written: dict[tuple[int, ...], Path] = {}
    loaded: tuple[tuple[Path | None, Path | None], Any] = ((None, None), pipe)
    # Cells of one model run together (A1111 puts the costly axes outermost for the same reason).
    for index, settings in sorted(cell_list, key=lambda c: [str(p) for p in model_key(c[1])]):
        key = model_key(settings)
        if key != loaded[0]:
            loaded = (key, pipe if key == (None, None) and pipe is not None else loader(*key))
        s = {k: v for k, v in settings.items() if k in names}
        prompt, negative = s.pop("prompt", ""), s.pop("negative_prompt", "")
        if command == "txt2img":
            result = loaded[1].txt2img(prompt, negative, progress=progress, **s)
        else:
            result = loaded[1].inpaint(image, mask, prompt, negative, progress=progress, **s)
        results[index] = (result.images[0], result.infotext)
        name = "cell-" + "-".join(str(i) for i in index) + ".png"
        written[index] = save_png(result.images[0], out / name, result.infotext)
        log.info("cell %s done", index)
    paths = [written[index] for index, _ in cell_list]
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


def replay_grid_command(args) -> int:
    """`inpaintlab sweep --from-png grid.png`; returns the exit code. The base checkpoint is --model, or the grid's
    `Model` / `Model hash` looked up in --models-dir, where the Checkpoint name / VAE values are looked up too."""
    import argparse

    from ..cli import open_image
    from ..frontend import CommandError, _load, _model_options

    if not args.model and not args.models_dir:
        raise CommandError("sweep --from-png needs --model (or --models-dir to find the grid's Model there)")
    if args.mask and not args.image:
        raise CommandError("--mask needs --image")
    image = open_image(args.image) if args.image else None
    mask = open_image(args.mask) if args.mask else None
    models = ModelDir(args.models_dir) if args.models_dir else None
    base = args.model
    if base is None:
        fields = parse_infotext(read_png_infotext(args.from_png))
        name = fields.get("Model") or ""
        if not name and not fields.get("Model hash"):
            raise CommandError(f"{args.from_png} names no Model; pass --model")
        text = f"{name} [{fields['Model hash']}]" if fields.get("Model hash") else name
        base = str(models.checkpoint(text, "Model"))
    options = _model_options(argparse.Namespace(device=args.device, kernels="auto", model=base, vae=None,
                                                embeddings_dir=None, lora_dir=None, dtype="float32",
                                                allow_pickle=False))

    def loader(checkpoint, vae):
        return _load(str(checkpoint or base), None if vae is None else str(vae), options)

    pipe = _load(base, None, options) if args.model else None
    for path in replay_grid(pipe, args.from_png, args.out, image, mask, progress=not args.no_progress, models=models,
                            loader=loader, vary_seeds=args.vary_seeds or ""):
        print(f"wrote {path}")
    return 0


def add_grid_arguments(sweep) -> None:
    """The `sweep` subcommand's --from-png options."""
    sweep.add_argument("--from-png", help="replay an A1111 X/Y/Z plot grid PNG (Script: X/Y/Z plot) instead of a spec")
    sweep.add_argument("--model", help="with --from-png: the checkpoint")
    sweep.add_argument("--models-dir", help="with --from-png: folder where the grid's checkpoint and VAE names (its "
                                            "Model, Checkpoint name / VAE axes) are looked up (A1111's models/ works)")
    sweep.add_argument("--vary-seeds", metavar="XYZ", help="with --from-png: the axes A1111's \"Vary seeds for X/Y/Z\" "
                                                           "was ticked for (not recorded in the grid), e.g. XY")
    sweep.add_argument("--image", help="with --from-png: the init image of an img2img/inpaint grid")
    sweep.add_argument("--mask", help="with --from-png: the mask of an inpaint grid")
    sweep.add_argument("--device", default=None, help="with --from-png: torch device (default: cuda when available)")
