"""Command line: `inpaintlab inpaint|img2img|txt2img|demo|info|sweep|detect|tiny` (also `python -m inpaintlab`).

Settings use A1111's names and accept A1111's labels ("latent noise", "Only masked"); defaults are A1111's UI defaults.
`--from-png` reads the settings (and prompts) from a PNG's `parameters` infotext; flags given on the command line win.
Every setting, input file, device and output folder is checked before a model is loaded.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from . import settings as registry
from ._version import __version__
from .files import prepare_out_dir
from . import frontend
from .frontend import CommandError, _model_options, check_kernels, resolve_device  # noqa: F401
from .infotext import parse_infotext, read_png_infotext, read_settings, unapplied

DTYPES = ("float32", "float16", "bfloat16", "file")
KERNELS = ("auto", "torch", "triton")
GENERATION = registry.COMMANDS
log = logging.getLogger("inpaintlab.cli")


# --- parser -----------------------------------------------------------------------------------------------------------

def _add_common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: `-v` may come before or after the subcommand without the subparser resetting it.
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging from inpaintlab (other libraries stay at warnings)")


def _add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--model", required=required, help="single-file SD1.x checkpoint (.safetensors)")
    parser.add_argument("--vae", help="separate VAE file (.safetensors), e.g. vae-ft-mse-840000-ema-pruned")
    parser.add_argument("--embeddings-dir", help="folder of textual-inversion embeddings (.pt/.safetensors/.bin)")
    parser.add_argument("--lora-dir", help="folder of LoRA/LyCORIS files that <lora:name:weight> prompt tags name "
                                           "(searched recursively, as A1111's --lora-dir)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="also read .ckpt/.pt pickles (with torch.load(weights_only=True))")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:N, mps (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="model weights dtype (default: float32; 'file': keep the checkpoint's own, least memory)")
    parser.add_argument("--kernels", choices=KERNELS, default="auto",
                        help="attention/GroupNorm implementation: auto = Triton on CUDA, torch elsewhere "
                             "(default: auto)")


def _add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    for name in registry.for_command(command):
        setting = registry.SETTINGS[name]
        if setting.parts:
            for part in setting.parts:
                parser.add_argument(f"{setting.flag}-{part}", dest=f"{name}_{part}", type=int, default=argparse.SUPPRESS,
                                    metavar=part.upper(), help=f"{setting.help}: {part}")
            continue
        if setting.kind is bool:  # --flag / --no-flag: a --from-png value can be switched off too
            parser.add_argument(setting.flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=registry.cli_help(setting))
            continue
        # Strings: the registry converts and checks (one message for CLI, Python and sweeps). SUPPRESS keeps unset
        # flags out of the namespace, so --from-png values are only overridden by flags actually given.
        parser.add_argument(setting.flag, default=argparse.SUPPRESS, metavar=name.split("_")[-1].upper(),
                            help=registry.cli_help(setting))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inpaintlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"inpaintlab {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in GENERATION:
        sub = commands.add_parser(name, help=f"{name} with A1111 v1.10 semantics")
        _add_common(sub)
        _add_model_args(sub)
        if name != "txt2img":
            sub.add_argument("--image", required=True, help="init image")
        if name == "inpaint":
            source = sub.add_mutually_exclusive_group(required=True)
            source.add_argument("--mask", help="mask image: white = repaint")
            source.add_argument("--sketch", help="inpaint sketch: the image with coloured strokes painted over it")
            sub.add_argument("--mask-alpha", type=float, default=0.0,
                             help="sketch mask transparency in percent, 0-100 (default: 0)")
        sub.add_argument("--controlnet-image", help="the ControlNet unit's own image (default: the init image; "
                                                    "needed for txt2img)")
        sub.add_argument("--controlnet-mask", help="the ControlNet unit's own mask, white = repaint (with "
                                                   "--controlnet-image; default: the inpaint mask)")
        sub.add_argument("--from-png", help="take prompts and settings from this PNG's infotext")
        sub.add_argument("--strict", action="store_true",
                         help="refuse to run when the --from-png infotext or the prompt holds something inpaintlab does "
                              "not apply (instead of warning)")
        sub.add_argument("--out", required=True, help="output folder (created if missing)")
        sub.add_argument("--no-progress", action="store_true", help="no step progress bar")
        _add_settings(sub, name)

    demo = commands.add_parser("demo", help="the whole inpaint path on a tiny random-weight checkpoint (or --model)")
    _add_common(demo)
    _add_model_args(demo, required=False)
    demo.add_argument("--out", required=True, help="output folder (created if missing)")
    demo.add_argument("--steps", type=int, default=None, help="sampling steps (default: 8 tiny, 20 with --model)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = commands.add_parser("info", help="print the infotext stored in a PNG, then how inpaintlab would replay it")
    _add_common(info)
    info.add_argument("png", help="a PNG with a 'parameters' infotext (inpaintlab's or A1111's)")
    info.add_argument("--raw", action="store_true", help="print the infotext exactly as stored")

    sweep = commands.add_parser("sweep", help="X/Y/Z sweep of inpaint settings from a JSON or TOML spec")
    _add_common(sweep)
    sweep.add_argument("spec", help="sweep spec file (.json or .toml); see examples/")
    sweep.add_argument("--out", required=True, help="output folder (created if missing; a rerun resumes)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    from .detect.command import add_parser as add_detect_parser

    detect = add_detect_parser(commands)
    _add_common(detect)

    tiny = commands.add_parser("tiny", help="write tiny random-weight checkpoints (4- and 9-channel), a VAE file, "
                                            "a ControlNet and a YOLOv8n detector")
    _add_common(tiny)
    tiny.add_argument("--out", required=True, help="output folder (created if missing)")
    return parser


def open_image(path: str) -> Image.Image:
    """Read an image as A1111's UI receives it: EXIF orientation applied, palette transparency as RGBA."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except (OSError, UnidentifiedImageError) as error:
        reason = "not a readable image" if isinstance(error, UnidentifiedImageError) else (error.strerror or error)
        raise CommandError(f"{path}: {reason}") from None
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image


# --- output -----------------------------------------------------------------------------------------------------------

def _next_index(out: Path, pattern: str = "*.png") -> int:
    """A1111's 5-digit file counter: one past the highest existing prefix."""
    numbers = [int(p.name[:5]) for p in out.glob(pattern) if p.name[:5].isdigit()]
    return max(numbers, default=-1) + 1


def save_result(result, out: Path) -> list[Path]:
    """Each image as `NNNNN-<seed>.png` with its infotext; a batch also gets A1111's grid (`grid-NNNN.png`)."""
    return result.save(out)


# --- commands ---------------------------------------------------------------------------------------------------------

def _paste_lora_names(prompt: str, fields: dict[str, str], lora_dir: str | None) -> str:
    """A1111's paste: `<lora:name:` tags become the local network whose hash the infotext's `Lora hashes` records."""
    if "Lora hashes" not in fields or lora_dir is None or not Path(lora_dir).is_dir():
        return prompt
    from .networks import NetworkLibrary, parse_lora_hashes, rename_by_hashes

    return rename_by_hashes(prompt, parse_lora_hashes(fields["Lora hashes"]), NetworkLibrary(lora_dir).name_for_hash)


def _gather_settings(args) -> tuple[dict[str, Any], set[str]]:
    """Settings for a generation command: the PNG's (if --from-png), overridden by explicit flags, validated."""
    allowed = set(registry.for_command(args.command))
    settings: dict[str, Any] = {}
    problems: list[str] = []
    if args.from_png:
        fields = parse_infotext(read_png_infotext(args.from_png))
        problems += unapplied(fields)
        settings.update({k: v for k, v in read_settings(fields)[0].items() if k in allowed})
        if "prompt" in settings:
            settings["prompt"] = _paste_lora_names(settings["prompt"], fields, args.lora_dir)
    explicit = {k: v for k, v in vars(args).items() if k in allowed}
    for name in allowed:
        parts = registry.SETTINGS[name].parts
        given = {i: getattr(args, f"{name}_{part}") for i, part in enumerate(parts) if hasattr(args, f"{name}_{part}")}
        if given:
            # Each part flag replaces its element of the --from-png value (or of zeros).
            value = list(settings.get(name) or (0,) * len(parts))
            for i, part in given.items():
                value[i] = part
            explicit[name] = tuple(value)
    settings.update(explicit)
    if "prompt" not in settings:
        raise CommandError("--prompt is required (or --from-png)")
    problems += [p for name in ("prompt", "negative_prompt") if name in explicit
                 for p in registry.prompt_problems(explicit[name])]
    if problems:
        message = "settings inpaintlab does not apply (the result will differ): " + "; ".join(problems)
        if args.strict:
            raise CommandError(message + " (refused by --strict)")
        print(f"inpaintlab: warning: {message}", file=sys.stderr, flush=True)
    return registry.validate(settings, args.command), set(explicit)


def _run_generation(args) -> int:
    settings, _ = _gather_settings(args)
    if args.command == "inpaint" and not 0.0 <= args.mask_alpha <= 100.0:
        raise CommandError(f"--mask-alpha must be in [0, 100], got {args.mask_alpha}")
    options = _model_options(args)
    images = {}
    if args.command != "txt2img":
        images["image"] = open_image(args.image)
    if args.command == "inpaint":
        images["sketch" if args.sketch else "mask"] = open_image(args.sketch or args.mask)
    if args.controlnet_mask and not args.controlnet_image:
        raise CommandError("--controlnet-mask needs --controlnet-image")
    if args.controlnet_image:
        settings["controlnet_image"] = open_image(args.controlnet_image)
        if args.controlnet_mask:
            settings["controlnet_mask"] = open_image(args.controlnet_mask)
    out = prepare_out_dir(args.out)
    print("settings: " + ", ".join(f"{k}={v!r}" for k, v in settings.items() if not k.startswith("controlnet_")
                                   or k == "controlnet_preprocessor"), flush=True)

    pipe = frontend._load(args.model, args.vae, options)
    prompt, negative = settings.pop("prompt"), settings.pop("negative_prompt", "")
    progress = not args.no_progress
    if args.command == "txt2img":
        settings.setdefault("width", 512)
        settings.setdefault("height", 512)
        result = pipe.txt2img(prompt, negative, progress=progress, **settings)
    elif args.command == "img2img":
        result = pipe.img2img(images["image"], prompt, negative, progress=progress, **settings)
    elif "sketch" in images:
        result = pipe.inpaint_sketch(images["image"], images["sketch"], prompt, negative, mask_alpha=args.mask_alpha,
                                     progress=progress, **settings)
    else:
        result = pipe.inpaint(images["image"], images["mask"], prompt, negative, progress=progress, **settings)
    paths = save_result(result, out)
    for path, seed in zip(paths, result.seeds):
        print(f"wrote {path} (seed {seed})")
    for path in paths[len(result.seeds):]:
        print(f"wrote {path} (grid)")
    return 0


def _info(args) -> int:
    text = read_png_infotext(args.png)
    if args.raw:
        print(text)
        return 0
    fields = parse_infotext(text)
    print(f"stored in {args.png}:")
    for key, value in fields.items():
        if key in ("Prompt", "Negative prompt") and not value:
            continue
        print(f"  {key}: {value}")
    command = "inpaint" if "Denoising strength" in fields else "txt2img"
    settings, origin = read_settings(fields)
    print(f"\nreplayed by `inpaintlab {command} --from-png` as:")
    for name in registry.for_command(command):
        if name not in settings:
            continue
        note = "" if origin[name] != "absent" else "   (not stored: A1111's value when the key is absent)"
        print(f"  {name}: {settings[name]!r}{note}")
    missing = [n for n in registry.for_command(command) if n not in settings]
    if missing:
        print("  not stored, taken from flags or defaults: " + ", ".join(missing))
    problems = unapplied(fields)
    if problems:
        print("not applied by inpaintlab: " + "; ".join(problems))
    return 0


def _tiny(args) -> int:
    from .tiny import write_tiny_files

    out = prepare_out_dir(args.out)
    for path in write_tiny_files(out):
        print(path)
    return 0


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    # Only inpaintlab's own loggers go to debug: PIL, urllib3 and others stay at warnings.
    logging.getLogger("inpaintlab").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _setup_logging(verbose)
    try:
        if args.command == "info":
            return _info(args)
        if args.command == "tiny":
            return _tiny(args)
        if args.command == "detect":
            from .detect.command import run_detect

            for path in run_detect(args):
                print(path)
            return 0
        if args.command == "demo":
            from .demo import run_demo

            path = run_demo(args)
            print(f"wrote {path}")
            return 0
        if args.command == "sweep":
            from .study import sweep

            prepare_out_dir(args.out)
            sweep(args.spec, args.out, progress=not args.no_progress)
            return 0
        return _run_generation(args)
    except KeyboardInterrupt:
        print("inpaintlab: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError, UnidentifiedImageError) as error:
        if verbose:
            traceback.print_exc()
        # Library messages name Python arguments; on the command line the flag is what the user can type.
        message = str(error).replace("allow_pickle=True", "--allow-pickle")
        print(f"inpaintlab: error: {message}", file=sys.stderr)
        return 2
