"""Run a sweep: every cell = base settings + its axis values + a seed; grids, rows and metrics on disk.

Layout of `out_dir`:

    cells/<key>.png         the cell's image (with its infotext)
    cells/<key>.json        the cell's row, written last: its presence marks the cell done
    cells/<key>/            intermediates, when requested (latent previews per stage and step, latents.safetensors)
    results.jsonl           every row in enumeration order, written by rank 0 at the end
    grid-<z>-seed<seed>.png one labelled grid per z value and seed (rows = y values, columns = x values)

Under `torchrun --nproc_per_node=N` the cells are dealt out by index (cell i to rank i mod N); each rank writes its own
cells, rank 0 waits for all, then merges and draws. Every file is written under a temporary name and renamed, so a
killed run leaves no half-written file and loses only the cells in flight; a rerun skips cells whose row exists (the
key is a hash of the model, image, mask, settings and seed).

On the CPU, float reductions depend on the number of intra-op threads; torchrun starts each process with one
(OMP_NUM_THREADS=1), so a single-process sweep reproduces a torchrun sweep bit for bit when run with one thread too.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image

from ..checkpoint import file_sha256
from ..files import atomic_path, write_text_atomic
from .. import settings as registry
from ..grid import grid_infotext, make_grid
from ..infotext import save_png
from .metrics import compute_metrics
from .preview import latent_preview
from .spec import Cell, SweepSpec, axis_label, load_spec

log = logging.getLogger(__name__)


def cell_key(identity: dict[str, str], settings: dict[str, Any]) -> str:
    """Stable 16-hex key of a cell: model/image/mask hashes plus the full settings (seed included)."""
    blob = json.dumps({"inputs": identity, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _distributed() -> Iterator[tuple[int, int]]:
    """(rank, world size): from torch.distributed under torchrun (gloo on CPU, nccl on GPU), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    import torch.distributed as dist

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if started:
            dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _label(axis: tuple[str, Any]) -> str:
    return axis_label(*axis)


def _run_cell(pipe, spec: SweepSpec, cell: Cell, image: Image.Image, mask: Image.Image, out: Path, key: str,
              techniques: list | None = None) -> dict:
    args, settings = spec.script_split(cell.settings(spec.base))
    prompt = settings.pop("prompt")
    negative = settings.pop("negative_prompt", "")
    if spec.script:
        return _run_script_cell(pipe, spec, cell, image, out, key, techniques, args, settings, prompt, negative)
    expand = settings.pop("mask_expand", 0)
    if expand:
        from ..segment.masks import expand_mask

        mask = Image.fromarray(expand_mask(mask, expand))
    previews: list[Image.Image] = []
    callback = (lambda d: previews.append(latent_preview(d["denoised"]))) if spec.intermediates else None
    result = pipe.inpaint(image, mask, prompt, negative, callback=callback, techniques=techniques, **settings)
    image_path = out / "cells" / f"{key}.png"
    save_png(result.images[0], image_path, result.infotext)
    row = {
        "index": cell.index, "key": key, "seed": cell.seed,
        "x": {cell.x[0]: cell.x[1]}, "y": {cell.y[0]: cell.y[1]}, "z": {cell.z[0]: cell.z[1]} if cell.z else None,
        "settings": cell.settings(spec.base), "image": str(image_path.relative_to(out)), "infotext": result.infotext,
        "metrics": compute_metrics(image, result.images[0], result.repaint_mask or mask, result.overlay_mask),
    }
    if spec.intermediates:
        row["intermediates"] = _save_intermediates(out / "cells" / key, result, previews, out)
    return row


def _run_script_cell(pipe, spec: SweepSpec, cell: Cell, image: Image.Image, out: Path, key: str, techniques: list | None,
                     args: dict, settings: dict, prompt: str, negative: str) -> dict:
    """A cell of a script sweep: the script's first image and infotext (no metrics: the picture changes size)."""
    from ..scripts import run_script

    if techniques:
        settings["techniques"] = techniques
    result = run_script(pipe, spec.script, image, prompt, negative, args, **settings)
    image_path = out / "cells" / f"{key}.png"
    save_png(result.images[0], image_path, result.infotext)
    return {
        "index": cell.index, "key": key, "seed": cell.seed, "script": spec.script,
        "x": {cell.x[0]: cell.x[1]}, "y": {cell.y[0]: cell.y[1]}, "z": {cell.z[0]: cell.z[1]} if cell.z else None,
        "settings": cell.settings(spec.base), "image": str(image_path.relative_to(out)), "infotext": result.infotext,
        "metrics": {},
    }


def _save_intermediates(folder: Path, result, previews: list[Image.Image], out: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    stages = {"init_latent": result.init_latent, "start_latent": result.start_latent, "final_latent": result.samples}
    paths: dict[str, Any] = {}
    for name, latent in stages.items():
        paths[name] = str(save_png(latent_preview(latent), folder / f"{name}.png", None).relative_to(out))
    paths["steps"] = [str(save_png(p, folder / f"step_{i:03d}.png", None).relative_to(out)) for i, p in enumerate(previews)]
    tensors = {k: v[:1].detach().float().cpu().contiguous() for k, v in stages.items() if v is not None}
    with atomic_path(folder / "latents.safetensors") as tmp:
        save_file(tensors, str(tmp))
    paths["latents"] = str((folder / "latents.safetensors").relative_to(out))
    return paths


def _axis_label(name: str) -> str:
    """A1111's name for a setting (its infotext key) where it has one; other axes (LoRA weights, grouped axes) keep
    their spec name."""
    from .xyz import SETTING_TO_LABEL

    if isinstance(name, str) and name in SETTING_TO_LABEL:
        return SETTING_TO_LABEL[name]  # A1111's X/Y/Z axis label ("CFG Scale", "Denoising", ...)
    setting = registry.SETTINGS.get(name) if isinstance(name, str) else None
    return setting.infotext if setting is not None and setting.infotext else str(name)


def _draw_grids(spec: SweepSpec, rows: list[dict], out: Path) -> list[Path]:
    by_index = {row["index"]: row for row in rows}
    cells = spec.cells()
    zs = [(spec.z[0], v) for v in spec.z[1]] if spec.z else [None]
    nx, ny = len(spec.x[1]), len(spec.y[1])
    paths = []
    i = 0
    for zi, z in enumerate(zs):
        for seed in spec.seeds:
            block = cells[i:i + nx * ny]
            i += nx * ny
            images = []
            for r in range(ny):
                row_images = []
                for c in range(nx):
                    with Image.open(out / by_index[block[r * nx + c].index]["image"]) as im:
                        row_images.append(im.convert("RGB"))
                images.append(row_images)
            title = f"seed {seed}" + (f", {_label(z)}" if z else "")
            grid = make_grid(images, [_label((spec.x[0], v)) for v in spec.x[1]],
                             [_label((spec.y[0], v)) for v in spec.y[1]], title=title)
            name = f"grid-z{zi}-seed{seed}.png" if z else f"grid-seed{seed}.png"
            axes = [("X", _axis_label(spec.x[0]), spec.x[1]), ("Y", _axis_label(spec.y[0]), spec.y[1])]
            if z:
                axes.append(("Z", _axis_label(z[0]), [z[1]]))
            infotext = grid_infotext(by_index[block[0].index]["infotext"], axes)
            paths.append(save_png(grid, out / name, infotext))
    return paths


def _network_hashes(pipe, prompts: list[str]) -> dict[str, str]:
    """{name: file hash} of every network the cells' `<lora:…>` tags name (an unknown name fails here, up front)."""
    from ..networks import lora_tags, parse_prompt

    names = sorted({tag.name for prompt in prompts for tag in lora_tags(parse_prompt(prompt)[1])})
    return {name: pipe.library.hash_of(pipe.network_path(name)) for name in names}


def sweep(spec: str | Path | dict | SweepSpec, out_dir: str | Path, *, limit: int | None = None,
          progress: bool = False, techniques: list | None = None) -> list[dict] | None:
    """Run (or resume) a sweep. Returns the merged rows on rank 0 (None on other ranks).

    techniques: `inpaintlab.pipeline.Technique` objects every cell runs with (their `key()` is part of each cell's
    key, so cells made without them, or with other parameters, are not reused); a technique's own registered
    settings can be axes of the spec like any other setting.
    limit: stop after this many newly computed cells on this rank (for budgeted or partial runs); the merge and grids
    then happen only once every cell is done. progress: a bar of cells done / total with an ETA on stderr (rank 0).
    """
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    for what, path in (("model", spec.model), ("vae", spec.vae), ("image", spec.image), ("mask", spec.mask)):
        if path is not None and not path.is_file():
            raise ValueError(f"sweep spec: {what} file not found: {path} (relative paths in a spec file are resolved "
                             "against the spec file's folder, not the working directory)")
    out = Path(out_dir)
    cells_dir = out / "cells"
    made = not cells_dir.exists()
    try:
        return _sweep(spec, out, limit, progress, techniques)
    finally:
        # A run that failed before finishing any cell leaves no empty cells/ folder behind.
        if made and cells_dir.is_dir() and not any(cells_dir.iterdir()):
            cells_dir.rmdir()


def _sweep(spec: SweepSpec, out: Path, limit: int | None, progress: bool,
           techniques: list | None) -> list[dict] | None:
    from tqdm import tqdm

    from ..pipeline import load

    (out / "cells").mkdir(parents=True, exist_ok=True)
    with _distributed() as (rank, world):
        pipe = load(spec.model, spec.vae, device=spec.device, kernels=spec.kernels, lora_dir=spec.lora_dir)
        with Image.open(spec.image) as im:
            image = im.copy()
        mask = None
        if spec.mask is not None:
            with Image.open(spec.mask) as im:
                mask = im.copy()
        identity = {"model": pipe.config.model_hash or "", "vae": pipe.config.vae_hash or "",
                    "image": file_sha256(spec.image), "mask": file_sha256(spec.mask) if spec.mask else ""}
        if spec.script:
            identity["script"] = spec.script
        cells = spec.cells()
        networks = _network_hashes(pipe, [cell.settings(spec.base)["prompt"] for cell in cells])
        if networks:
            identity["networks"] = networks  # a changed network file must not reuse old cells
        if techniques:
            identity["techniques"] = [t.key() for t in techniques]
        keys = [cell_key(identity, cell.settings(spec.base)) for cell in cells]
        done = 0
        mine = list(zip(cells[rank::world], keys[rank::world]))
        bar = tqdm(total=len(mine), desc=f"sweep (rank {rank})" if world > 1 else "sweep", unit="cell",
                   disable=not progress or rank != 0, file=sys.stderr)
        for cell, key in mine:
            row_path = out / "cells" / f"{key}.json"
            if row_path.exists():
                bar.update()
                continue
            if limit is not None and done >= limit:
                break
            log.info("rank %d: cell %d/%d", rank, cell.index + 1, len(cells))
            row = _run_cell(pipe, spec, cell, image, mask, out, key, techniques)
            write_text_atomic(row_path, json.dumps(row, sort_keys=True))
            done += 1
            bar.update()
        bar.close()
        _barrier(world)
        if rank != 0:
            return None
        missing = [c.index for c, k in zip(cells, keys) if not (out / "cells" / f"{k}.json").exists()]
        if missing:
            log.warning("%d cells not done yet (e.g. %s): rerun to resume", len(missing), missing[:5])
            return None
        rows = [json.loads((out / "cells" / f"{k}.json").read_text()) for k in keys]
        write_text_atomic(out / "results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        _draw_grids(spec, rows, out)
        return rows
