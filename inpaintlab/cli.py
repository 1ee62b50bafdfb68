"""Command line: `inpaintlab inpaint|img2img|txt2img|demo|info|sweep`.

Settings use A1111's names; defaults are A1111's UI defaults. `--from-png` reads the settings (and prompts) from a PNG's
`parameters` infotext; flags given on the command line win over it.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .infotext import read_png_infotext, save_png, settings_from_infotext

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# name: (flag type, default, help). Defaults = A1111 v1.10 UI defaults.
SETTINGS: dict[str, tuple[Any, Any, str]] = {
    "steps": (int, 20, "sampling steps"),
    "sampler": (str, "DPM++ 2M", "sampler: 'Euler' or 'DPM++ 2M'"),
    "scheduler": (str, "Automatic", "schedule type: Automatic, Uniform, Karras, Exponential"),
    "cfg_scale": (float, 7.0, "classifier-free guidance scale"),
    "seed": (int, -1, "seed (-1 = random)"),
    "width": (int, None, "processing width (multiple of 8; default: the image's, or 512 for txt2img)"),
    "height": (int, None, "processing height (multiple of 8; default: the image's, or 512 for txt2img)"),
    "batch_size": (int, 1, "images per run (seeds seed, seed+1, ...)"),
    "clip_skip": (int, 1, "CLIP layers to skip, counted as in A1111 (1 = last layer)"),
    "rng_source": (str, "CPU", "noise source: CPU (same noise on every device), NV (A1111's emulation of CUDA noise, "
                               "any device) or GPU (torch's CUDA generator, A1111's default)"),
    "subseed": (int, -1, "variation seed (-1 = random)"),
    "subseed_strength": (float, 0.0, "variation strength (0 = off, 1 = the variation seed's noise)"),
    "seed_resize_from_w": (int, 0, "resize seed from width in pixels (used when both sides are > 0)"),
    "seed_resize_from_h": (int, 0, "resize seed from height in pixels (used when both sides are > 0)"),
    "ensd": (int, 0, "eta noise seed delta: sampler noise after the initial noise comes from seed + ENSD"),
    "denoising_strength": (float, 0.75, "denoising strength in [0, 1]"),
    "mask_blur": (int, 4, "mask blur sigma in pixels"),
    "mask_mode": (str, "masked", "'masked' (inpaint masked) or 'not_masked' (inpaint not masked)"),
    "masked_content": (str, "original", "fill | original | latent_noise | latent_nothing"),
    "inpaint_area": (str, "whole", "'whole' (whole picture) or 'only_masked'"),
    "padding": (int, 32, "only-masked padding in pixels"),
    "fill_space": (str, "pixel", "where 'fill' runs: 'pixel' (A1111) or 'latent'"),
    "inpainting_mask_weight": (float, 1.0, "conditional mask weight (9-channel inpainting models)"),
    "soft_inpainting": (bool, False, "A1111's soft inpainting (unrounded masks, per-step soft blend, difference composite)"),
    "schedule_bias": (float, 1.0, "soft inpainting: schedule bias (power of sigma in the mask exponent), 0-8"),
    "preservation_strength": (float, 0.5, "soft inpainting: preservation strength (scale of the mask exponent), 0-8"),
    "transition_contrast_boost": (float, 4.0, "soft inpainting: transition contrast boost (magnitude power mean), 1-32"),
    "mask_influence": (float, 0.0, "soft inpainting: how much the mask biases the difference threshold, 0-1"),
    "difference_threshold": (float, 0.5, "soft inpainting: latent change at which the original is 50% opaque, 0-8"),
    "difference_contrast": (float, 2.0, "soft inpainting: sharpness of the composite transition, 0-8"),
    "differential_diffusion": (bool, False, "Differential Diffusion with the blurred mask as change map (not A1111)"),
}
TXT2IMG = ("steps", "sampler", "scheduler", "cfg_scale", "seed", "width", "height", "batch_size", "clip_skip", "rng_source",
           "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h", "ensd")
IMG2IMG = TXT2IMG + ("denoising_strength",)


def _add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--model", required=required, help="single-file SD1.x checkpoint (.safetensors)")
    parser.add_argument("--vae", help="separate VAE file (.safetensors), e.g. vae-ft-mse-840000-ema-pruned")
    parser.add_argument("--embeddings-dir", help="directory of textual-inversion embeddings (.pt/.safetensors/.bin)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow .ckpt pickles (loaded with weights_only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--kernels", choices=("auto", "torch", "triton"), default="auto")


def _add_settings(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    for name in names:
        kind, default, text = SETTINGS[name]
        # SUPPRESS keeps unset flags out of the namespace, so --from-png values are only overridden by explicit flags.
        if kind is bool:  # --flag / --no-flag, so a --from-png value can be switched off too
            parser.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"{text} (default: {default})")
            continue
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=argparse.SUPPRESS,
                            help=f"{text} (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inpaintlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    for name, settings, needs_image in (("inpaint", tuple(SETTINGS), True), ("img2img", IMG2IMG, True),
                                        ("txt2img", TXT2IMG, False)):
        sub = commands.add_parser(name, help=f"{name} with A1111 v1.10 semantics")
        _add_model_args(sub)
        if needs_image:
            sub.add_argument("--image", required=True, help="init image")
        if name == "inpaint":
            source = sub.add_mutually_exclusive_group(required=True)
            source.add_argument("--mask", help="mask image: white = repaint")
            source.add_argument("--sketch", help="inpaint sketch: the image with coloured strokes painted over it")
            sub.add_argument("--mask-alpha", type=float, default=0.0, help="sketch mask transparency in percent")
        sub.add_argument("--prompt", default=argparse.SUPPRESS, help="prompt (A1111 attention syntax)")
        sub.add_argument("--negative-prompt", default=argparse.SUPPRESS, help="negative prompt")
        sub.add_argument("--from-png", help="take prompts and settings from this PNG's infotext")
        sub.add_argument("--out", required=True, help="output directory")
        sub.add_argument("--no-progress", action="store_true")
        _add_settings(sub, settings)

    demo = commands.add_parser("demo", help="the whole inpaint path on a tiny random-weight checkpoint (or --model)")
    _add_model_args(demo, required=False)
    demo.add_argument("--out", required=True, help="output directory")
    demo.add_argument("--steps", type=int, default=None, help="sampling steps (default: 8 tiny, 20 with --model)")

    info = commands.add_parser("info", help="print the settings stored in a PNG's infotext")
    info.add_argument("png")

    sweep = commands.add_parser("sweep", help="X/Y/Z sweep of inpaint settings from a JSON or TOML spec")
    sweep.add_argument("spec")
    sweep.add_argument("--out", required=True)
    return parser


def _next_index(out: Path) -> int:
    """A1111's 5-digit file counter: one past the highest existing prefix."""
    numbers = [int(p.name[:5]) for p in out.glob("*.png") if p.name[:5].isdigit()]
    return max(numbers, default=-1) + 1


def save_result(result, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    index, paths = _next_index(out), []
    for image, infotext, seed in zip(result.images, result.infotexts, result.seeds):
        paths.append(save_png(image, out / f"{index:05d}-{seed}.png", infotext))
        index += 1
    return paths


def open_image(path: str) -> Image.Image:
    """Read an image as A1111's UI receives it: EXIF orientation applied, palette transparency as RGBA."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image.load()
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image


def _load(args):
    from .inpaint import load

    return load(args.model, args.vae, device=args.device, dtype=DTYPES[args.dtype], kernels=args.kernels,
                embeddings_dir=args.embeddings_dir, allow_pickle=args.allow_pickle)


def _run_generation(args) -> int:
    settings: dict[str, Any] = {}
    if args.from_png:
        settings.update(settings_from_infotext(read_png_infotext(args.from_png)))
    explicit = {k: v for k, v in vars(args).items() if k in SETTINGS or k in ("prompt", "negative_prompt")}
    # the two "Resize seed from" flags are one pipeline setting; a flag replaces its side of a --from-png value
    width, height = settings.pop("seed_resize_from", (0, 0))
    width, height = explicit.pop("seed_resize_from_w", width), explicit.pop("seed_resize_from_h", height)
    settings.update(explicit)
    allowed = {"inpaint": tuple(SETTINGS), "img2img": IMG2IMG, "txt2img": TXT2IMG}[args.command]
    settings = {k: v for k, v in settings.items() if k in allowed or k in ("prompt", "negative_prompt")}
    if width or height:
        settings["seed_resize_from"] = (width, height)
    if "prompt" not in settings:
        raise SystemExit("inpaintlab: --prompt is required (or --from-png)")
    print("settings: " + ", ".join(f"{k}={v!r}" for k, v in settings.items()), flush=True)
    prompt, negative = settings.pop("prompt"), settings.pop("negative_prompt", "")
    pipe = _load(args)
    progress = not args.no_progress
    if args.command == "txt2img":
        settings.setdefault("width", 512)
        settings.setdefault("height", 512)
        result = pipe.txt2img(prompt, negative, progress=progress, **settings)
    else:
        image = open_image(args.image)
        if args.command == "img2img":
            result = pipe.img2img(image, prompt, negative, progress=progress, **settings)
        elif args.sketch:
            result = pipe.inpaint_sketch(image, open_image(args.sketch), prompt, negative, mask_alpha=args.mask_alpha,
                                         progress=progress, **settings)
        else:
            result = pipe.inpaint(image, open_image(args.mask), prompt, negative, progress=progress, **settings)
    for path, seed in zip(save_result(result, Path(args.out)), result.seeds):
        print(f"wrote {path} (seed {seed})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "info":
            for key, value in settings_from_infotext(read_png_infotext(args.png)).items():
                print(f"{key}: {value}")
            return 0
        if args.command == "demo":
            from .demo import run_demo

            path = run_demo(args)
            print(f"wrote {path}")
            return 0
        if args.command == "sweep":
            from .study import sweep

            sweep(args.spec, args.out)
            return 0
        return _run_generation(args)
    except (ValueError, TypeError, OSError, FloatingPointError, UnidentifiedImageError) as error:
        print(f"inpaintlab: error: {error}", file=sys.stderr)
        return 2
