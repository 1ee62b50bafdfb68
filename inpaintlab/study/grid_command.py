"""`inpaintlab sweep --from-png grid.png`: the command around `inpaintlab.study.replay.replay_grid`.

The base checkpoint is --model, or the grid's `Model` / `Model hash` looked up in --models-dir; the grid's
"Checkpoint name" and "VAE" axis values are looked up there too (`ModelDir`), each cell's model loaded as needed.
"""
from __future__ import annotations

import argparse

from ..frontend import CommandError, _load, _model_options
from ..infotext import parse_infotext, read_png_infotext
from .models import ModelDir
from .replay import replay_grid


def replay_grid_command(args) -> int:
    """Runs `sweep --from-png`; returns the exit code."""
    from ..cli import open_image

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
