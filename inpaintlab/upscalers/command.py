"""`inpaintlab upscale IMAGE`: one picture through an upscaler, as A1111's Extras tab "Scale by" / "Scale to" does.

"Scale by S" is `Upscaler.upscale(img, S)` (so the size is floored to multiples of 8); "Scale to W×H" upscales by
`max(W/w, H/h)` (the same flooring) and, with `--crop`, pastes the result centred on a black W×H canvas. The PNG carries A1111's
Extras keys in its `postprocessing` text: `Postprocess upscale by` (or `Postprocess upscale to`) and
`Postprocess upscaler`. The parser needs no torch (`inpaintlab --help`); the networks are imported when it runs.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image, ImageOps, PngImagePlugin

from ..files import prepare_out_dir, write_atomic
from .errors import UpscalerError


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("upscale", help="upscale an image with an ESRGAN/Real-ESRGAN/SwinIR/DAT/"
                                            "ScuNET file or Lanczos, as A1111's Extras tab")
    p.add_argument("image", help="image to upscale")
    p.add_argument("--upscaler", required=True,
                   help="a model file, an A1111 name found in --upscaler-dir (e.g. 'R-ESRGAN 4x+', '4x-UltraSharp', "
                        "'DAT x4'), "
                        "or Lanczos / Nearest / None")
    p.add_argument("--upscaler-dir", help="folder of upscaler files (A1111's models/ folder works)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, default=None, help="scale by this factor (default: 4)")
    size.add_argument("--size", metavar="WxH", help="scale to this size")
    p.add_argument("--crop", action="store_true", help="with --size: crop (centred) to exactly that size")
    p.add_argument("--tile", type=int, default=None,
                   help="tile size in pixels, 0 = no tiling (default: A1111's 192, ScuNET 256)")
    p.add_argument("--tile-overlap", type=int, default=None, help="tile overlap in pixels (default: A1111's 8)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    return p


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UpscalerError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 2048x1536") from None
    if w <= 0 or h <= 0:
        raise UpscalerError(f"--size {text!r}: width and height must be positive")
    return w, h


def resolve_upscaler(name: str, folder: str | None, device: str):
    from .names import UpscalerDir
    from .scale import BUILTIN

    if name in BUILTIN:
        return name
    path = Path(name)
    if path.suffix.lower() in (".pth", ".pt", ".safetensors") or path.is_file():
        from .load import load

        return load(path, device=device)
    if folder is None:
        raise UpscalerError(f"--upscaler {name!r} is neither a file nor a built-in upscaler; pass --upscaler-dir to "
                            "look it up by name")
    return UpscalerDir(folder).load(name, device=device)


def run(args) -> Path:
    from ..cli import resolve_device
    from .scale import Tiling, upscale

    if args.scale is not None and not args.scale > 0:
        raise UpscalerError(f"--scale {args.scale}: must be positive")
    target = _parse_size(args.size) if args.size else None
    if args.crop and target is None:
        raise UpscalerError("--crop needs --size")
    try:
        img = ImageOps.exif_transpose(Image.open(args.image)).convert("RGB")
    except FileNotFoundError:
        raise UpscalerError(f"image not found: {args.image}") from None
    out_dir = prepare_out_dir(args.out)
    device = resolve_device(args.device)
    upscaler = resolve_upscaler(args.upscaler, args.upscaler_dir, device)
    tiling = Tiling(None, args.tile, args.tile_overlap)
    name = upscaler if isinstance(upscaler, str) else upscaler.name
    if target is None:
        factor = 4.0 if args.scale is None else args.scale
        result = upscale(img, factor, upscaler, tiling)
        info = f"Postprocess upscale by: {factor:g}, Postprocess upscaler: {name}"
    else:
        w, h = target
        result = upscale(img, max(w / img.width, h / img.height), upscaler, tiling)
        if args.crop:
            canvas = Image.new("RGB", (w, h))
            canvas.paste(result, (w // 2 - result.width // 2, h // 2 - result.height // 2))
            result = canvas
        info = f"Postprocess upscale to: {w}x{h}, Postprocess crop to fit: {args.crop}, Postprocess upscaler: {name}"
    meta = PngImagePlugin.PngInfo()
    meta.add_text("postprocessing", info)
    path = out_dir / f"{Path(args.image).stem}-upscaled.png"
    buf = io.BytesIO()
    result.save(buf, format="PNG", pnginfo=meta)
    return write_atomic(path, lambda f: f.write(buf.getvalue()))
