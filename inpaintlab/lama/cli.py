"""`inpaintlab clean IMAGE --mask MASK --lama FILE --out DIR`: Inpaint Anything's Cleaner from the command line.

The parser and the runner live here; `inpaintlab.cli` only registers them. Everything is checked (files readable,
sizes equal, the LaMa file loadable, the output folder writable) before the result is written, atomically, as
`<image stem>_lama.png` (the Cleaner's `<prefix>_<model>.png`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "remove the masked area with LaMa (Inpaint Anything's Cleaner)"


def add_clean_parser(commands, add_common=None) -> argparse.ArgumentParser:
    """Add the `clean` subcommand to an argparse subparsers object."""
    sub = commands.add_parser("clean", help=HELP)
    if add_common is not None:
        add_common(sub)
    sub.add_argument("image", help="image to clean (PNG/JPEG/...)")
    sub.add_argument("--mask", required=True, help="mask image, same size; every non-zero pixel is removed, soft "
                                                   "edges blend")
    sub.add_argument("--lama", required=True, help="LaMa generator: ControlNetLama.pth, big-lama best.ckpt or a "
                                                   ".safetensors with the same keys")
    sub.add_argument("--out", required=True, help="output folder (created if missing)")
    sub.add_argument("--ia-resize", action="store_true", help="first floor the size to multiples of 8 like Inpaint "
                                                              "Anything (LANCZOS resize + centre crop)")
    sub.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return sub


def run_clean(args, open_image=None, prepare_out_dir=None, resolve_device=None) -> Path:
    """Run `clean` for parsed arguments; returns the written PNG's path. Errors are ValueError / OSError one-liners."""
    import numpy as np
    from PIL import Image

    from ..files import prepare_out_dir as _prepare, write_atomic
    from .clean import clean
    from .load import load_lama

    opener = open_image or (lambda p: Image.open(p))
    out_dir = (prepare_out_dir or _prepare)(args.out)
    image, mask = opener(args.image), opener(args.mask)
    if image.size != mask.size:
        raise ValueError(f"--mask is {mask.size[0]}x{mask.size[1]} but the image is {image.size[0]}x{image.size[1]}")
    device = resolve_device(args.device) if resolve_device else (args.device or "cpu")
    model = load_lama(args.lama, device=device)
    result = clean(image.convert("RGB"), mask, model, ia_resize=args.ia_resize)
    path = out_dir / f"{Path(args.image).stem}_lama.png"
    write_atomic(path, lambda handle: Image.fromarray(np.asarray(result)).save(handle, format="PNG"))
    return path
