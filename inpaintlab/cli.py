"""Command line: `inpaintlab inpaint|img2img|txt2img|demo|info|sweep|upscale|tiny|clean` (also `python -m inpaintlab`).

Settings use A1111's names and accept A1111's labels ("latent noise", "Only masked"); defaults are A1111's UI defaults.
`--from-png` reads the settings (and prompts) from a PNG's `parameters` infotext; flags given on the command line win.
Every setting, input file, device and output folder is checked before a model is loaded.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback

from PIL import Image, ImageOps, UnidentifiedImageError

from . import settings as registry
from ._version import __version__
from .segment import cli as segment_cli
from . import frontend
from .errors import FileError, InpaintlabError
from .files import first_missing_folder, prepare_out_dir, remove_empty_tree
from .frontend import CommandError, _model_options, check_kernels, resolve_device  # noqa: F401
from .command_settings import check_networks_and_controlnet, gather_settings, legacy_model_hash, warn_model_hash  # noqa: F401
from .infotext import read_png_infotext

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
    parser.add_argument("--model", required=required,
                        help="single-file SD 1.x, SD 2.x or SDXL checkpoint (.safetensors)")
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


SCRIPTS = ("SD upscale", "Loopback", "Poor man's outpainting", "Outpainting mk2")


def _add_script_args(parser: argparse.ArgumentParser) -> None:
    """A1111's img2img scripts that run through img2img (inpaintlab.scripts), by their UI names."""
    from .scripts import CURVES

    g = parser.add_argument_group("img2img scripts")
    g.add_argument("--script", choices=SCRIPTS, help="run an A1111 img2img script")
    g.add_argument("--tile-overlap", type=int, default=64, help="SD upscale: Tile overlap (default: 64)")
    g.add_argument("--scale-factor", type=float, default=2.0, help="SD upscale: Scale Factor (default: 2)")
    g.add_argument("--upscaler", default="None",
                   help="SD upscale: Upscaler, a file, an A1111 name in --upscaler-dir, or None/Lanczos/Nearest "
                        "(default: None)")
    g.add_argument("--upscaler-dir", help="folder of upscaler files for --upscaler names")
    g.add_argument("--loops", type=int, default=4, help="Loopback: Loops (default: 4)")
    g.add_argument("--final-denoising-strength", type=float, default=0.5,
                   help="Loopback: Final denoising strength (default: 0.5)")
    g.add_argument("--denoising-curve", choices=CURVES, default="Linear",
                   help="Loopback: Denoising strength curve (default: Linear)")
    g.add_argument("--pixels", type=int, default=128, help="outpainting: Pixels to expand (default: 128)")
    g.add_argument("--mask-blur", type=int, default=None,
                   help="outpainting: Mask blur (default: 4 for Poor man's outpainting, 8 for Outpainting mk2)")
    g.add_argument("--masked-content", default="fill",
                   help="Poor man's outpainting: Masked content, fill/original/latent noise/latent nothing "
                        "(default: fill)")
    g.add_argument("--direction", default="left,right,up,down",
                   help="outpainting: Outpainting direction, comma-separated (default: left,right,up,down)")
    g.add_argument("--noise-q", type=float, default=1.0,
                   help="Outpainting mk2: Fall-off exponent (lower=higher detail) (default: 1)")
    g.add_argument("--color-variation", type=float, default=0.05,
                   help="Outpainting mk2: Color variation (default: 0.05)")


def _run_script(args, pipe, image, prompt: str, negative: str, settings: dict):
    from . import scripts

    if args.script == "Poor man's outpainting":
        return scripts.poor_mans_outpainting(pipe, image, prompt, negative, pixels=args.pixels,
                                             mask_blur=4 if args.mask_blur is None else args.mask_blur,
                                             inpainting_fill=args.masked_content, direction=args.direction,
                                             **settings)
    if args.script == "Outpainting mk2":
        return scripts.outpainting_mk2(pipe, image, prompt, negative, pixels=args.pixels,
                                       mask_blur=8 if args.mask_blur is None else args.mask_blur,
                                       direction=args.direction, noise_q=args.noise_q,
                                       color_variation=args.color_variation, **settings)
    if args.script == "Loopback":
        return scripts.loopback(pipe, image, prompt, negative, loops=args.loops,
                                final_denoising_strength=args.final_denoising_strength,
                                denoising_curve=args.denoising_curve, **settings)
    from .upscalers.command import resolve_upscaler

    upscaler = resolve_upscaler(args.upscaler, args.upscaler_dir, str(pipe.device))
    return scripts.sd_upscale(pipe, image, prompt, negative, tile_overlap=args.tile_overlap,
                              scale_factor=args.scale_factor, upscaler=upscaler, **settings)


def _replay_grid(args) -> int:
    from .study.replay import replay_grid_command

    return replay_grid_command(args)


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
        if name == "img2img":
            _add_script_args(sub)
        if name == "inpaint":
            source = sub.add_mutually_exclusive_group(required=True)
            source.add_argument("--mask", help="mask image: white = repaint")
            source.add_argument("--sketch", help="inpaint sketch: the image with coloured strokes painted over it")
            segment_cli.add_inpaint_mask_args(sub, source)
            sub.add_argument("--mask-alpha", type=float, default=0.0,
                             help="sketch mask transparency in percent, 0-100 (default: 0)")
        sub.add_argument("--controlnet-image", help="the ControlNet unit's own image (default: the init image; "
                                                    "needed for txt2img)")
        sub.add_argument("--controlnet-mask", help="the ControlNet unit's own mask, white = repaint (with "
                                                   "--controlnet-image; default: the inpaint mask)")
        sub.add_argument("--controlnet-lama", help="LaMa generator file for --controlnet-preprocessor "
                                                   "inpaint_only+lama (ControlNetLama.pth, best.ckpt, .safetensors)")
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

    info = commands.add_parser("info", help="print the infotext stored in an image, then how inpaintlab would replay "
                                            "it; --check DIR: a table for a whole folder")
    _add_common(info)
    info.add_argument("png", metavar="IMAGE", help="a PNG with a 'parameters' infotext (inpaintlab's or A1111's; or a "
                                                   "JPEG/WebP with A1111's EXIF comment); with --check, a folder")
    info.add_argument("--raw", action="store_true", help="print the infotext exactly as stored")
    info.add_argument("--check", action="store_true",
                      help="IMAGE is a folder: count the pictures that replay with every key applied, with warnings "
                           "(which keys) and that are refused (why)")

    sweep = commands.add_parser("sweep", help="X/Y/Z sweep of inpaint settings from a JSON or TOML spec")
    _add_common(sweep)
    sweep.add_argument("spec", nargs="?", help="sweep spec file (.json or .toml); see examples/")
    from .study.replay import add_grid_arguments

    add_grid_arguments(sweep)
    sweep.add_argument("--out", required=True, help="output folder (created if missing; a rerun resumes)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    from .upscalers.command import add_parser as add_upscale_parser

    _add_common(add_upscale_parser(commands))

    from .detect.command import add_parser as add_detect_parser

    _add_common(add_detect_parser(commands))

    tiny = commands.add_parser("tiny", help="write tiny random-weight checkpoints (SD1 4- and 9-channel, SD 2.x, SDXL), "
                                            "a VAE file, a ControlNet, SAM 2 and LaMa files and LoRA files (lora/)")
    _add_common(tiny)
    tiny.add_argument("--out", required=True, help="output folder (created if missing)")

    segment_cli.add_commands(commands, _add_common)
    from .lama.cli import add_clean_parser

    add_clean_parser(commands, _add_common)
    return parser


def open_image(path: str) -> Image.Image:
    """Read an image as A1111's UI receives it: EXIF orientation applied, palette transparency as RGBA."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except (OSError, UnidentifiedImageError) as error:
        reason = "not a readable image" if isinstance(error, UnidentifiedImageError) else (error.strerror or error)
        raise FileError(f"{path}: {reason}") from None
    except Exception as error:  # noqa: BLE001 - PIL raises ValueError, SyntaxError, struct.error... for damage
        raise FileError(f"{path}: damaged image ({error})") from None
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image


# --- commands ---------------------------------------------------------------------------------------------------------

def _run_generation(args) -> int:
    settings, _ = gather_settings(args)
    if args.command == "inpaint" and not 0.0 <= args.mask_alpha <= 100.0:
        raise CommandError(f"--mask-alpha must be in [0, 100], got {args.mask_alpha}")
    options = _model_options(args)
    images = {}
    if args.command != "txt2img":
        images["image"] = open_image(args.image)
    if args.command == "inpaint":
        if args.mask_points or args.mask_box:
            images["mask"] = segment_cli.mask_from_args(args, images["image"])
        else:
            images["sketch" if args.sketch else "mask"] = open_image(args.sketch or args.mask)
    if args.controlnet_mask and not args.controlnet_image:
        raise CommandError("--controlnet-mask needs --controlnet-image")
    if args.controlnet_image:
        settings["controlnet_image"] = open_image(args.controlnet_image)
        if args.controlnet_mask:
            settings["controlnet_mask"] = open_image(args.controlnet_mask)
    check_networks_and_controlnet(args, settings)
    if args.controlnet_lama:
        from .lama import load_lama

        settings["controlnet_lama"] = load_lama(args.controlnet_lama)  # checked before the checkpoint loads
    out = prepare_out_dir(args.out)
    from .check import short

    print("settings: " + ", ".join(f"{k}={short(v)}" for k, v in settings.items() if not k.startswith("controlnet_")
                                   or k == "controlnet_preprocessor"), flush=True)

    pipe = frontend._load(args.model, args.vae, options)
    if args.from_png:
        warn_model_hash(args.from_png, args.model, pipe.config.model_hash)
    prompt, negative = settings.pop("prompt"), settings.pop("negative_prompt", "")
    progress = not args.no_progress
    if args.command == "txt2img":
        settings.setdefault("width", 512)
        settings.setdefault("height", 512)
        result = pipe.txt2img(prompt, negative, progress=progress, **settings)
    elif args.command == "img2img" and args.script:
        result = _run_script(args, pipe, images["image"], prompt, negative, dict(settings, progress=progress))
    elif args.command == "img2img":
        result = pipe.img2img(images["image"], prompt, negative, progress=progress, **settings)
    elif "sketch" in images:
        result = pipe.inpaint_sketch(images["image"], images["sketch"], prompt, negative, mask_alpha=args.mask_alpha,
                                     progress=progress, **settings)
    else:
        result = pipe.inpaint(images["image"], images["mask"], prompt, negative, progress=progress, **settings)
    paths = result.save(out)  # A1111's numbered names, created exclusively; a batch also gets its grid
    for path, seed in zip(paths, result.seeds):
        print(f"wrote {path} (seed {seed})")
    for path in paths[len(result.seeds):]:
        print(f"wrote {path} (grid)")
    return 0


def _info(args) -> int:
    from .check import check_folder, describe

    if args.check:
        print(check_folder(args.png))
        return 0
    text = read_png_infotext(args.png)
    print(text if args.raw else describe(text, args.png))
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


# Library messages name Python arguments; on the command line the flag is what the user can type.
_PYTHON_NAMES = re.compile(r"\b(allow_pickle|lora_dir|embeddings_dir)=(True\b|\S*)|\b([a-z]+(?:_[a-z0-9]+)+)\b")


def flag_names(message: str) -> str:
    """`cfg_scale must be ...` -> `--cfg-scale must be ...`; `pass lora_dir=` -> `pass --lora-dir`."""
    known = set(registry.SETTINGS) | {"allow_pickle", "lora_dir", "embeddings_dir", "mask_alpha"}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        if name not in known:
            return match.group(0)
        return "--" + name.replace("_", "-")

    return _PYTHON_NAMES.sub(replace, message)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _setup_logging(verbose)
    created = first_missing_folder(getattr(args, "out", None))
    try:
        status = _dispatch(args)
        sys.stdout.flush()  # a closed pipe is reported here, not by the interpreter's exit
        return status
    except KeyboardInterrupt:
        remove_empty_tree(created)
        print("inpaintlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `inpaintlab info x.png | head -3`: the reader has what it wanted. Point stdout at /dev/null so that the
        # interpreter's final flush does not report the closed pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError, UnidentifiedImageError) as error:
        remove_empty_tree(created)
        if verbose:
            traceback.print_exc()
        message = " ".join(str(error).split()) if isinstance(error, InpaintlabError) else str(error)
        print(f"inpaintlab: error: {flag_names(message)}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "info":
        return _info(args)
    if args.command == "tiny":
        return _tiny(args)
    if args.command == "detect":
        from .detect.command import run_detect

        for path in run_detect(args):
            print(path)
        return 0
    if args.command in segment_cli.COMMANDS:
        return segment_cli.run(args)
    if args.command == "clean":
        from .lama.cli import run_clean

        print(run_clean(args, open_image, prepare_out_dir, resolve_device))
        return 0
    if args.command == "demo":
        from .demo import run_demo

        path = run_demo(args)
        print(f"wrote {path}")
        return 0
    if args.command == "upscale":
        from .upscalers.command import run as run_upscale

        print(f"wrote {run_upscale(args)}")
        return 0
    if args.command == "sweep":
        from .study import sweep

        prepare_out_dir(args.out)
        if args.from_png:
            return _replay_grid(args)
        if not args.spec:
            raise CommandError("sweep needs a spec file or --from-png GRID.png")
        sweep(args.spec, args.out, progress=not args.no_progress)
        return 0
    return _run_generation(args)
