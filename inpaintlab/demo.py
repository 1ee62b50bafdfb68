"""`inpaintlab demo`: the whole inpaint path, every masked-content mode, one labelled grid.

Without `--model` it writes a tiny random-weight checkpoint in the real single-file format, loads it through the real
loader and inpaints a synthetic picture. Random weights produce textures, not content: the grid shows where each mode
acts (mask, blur, overlay), not what a trained model would paint. With `--model` it runs the tutorial's settings on that
checkpoint: a txt2img base image, then an inpaint of its centre with each masked-content mode.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from .grid import make_grid
from .infotext import save_png

MODES = ("fill", "original", "latent_noise", "latent_nothing")
# The tutorial's settings (A1111 UI): DPM++ 2M Karras, 20 steps, CFG 7, 768×768, denoising 0.75, mask blur 4.
TUTORIAL = dict(steps=20, sampler="DPM++ 2M", scheduler="Karras", cfg_scale=7.0, seed=2976823394, denoising_strength=0.75,
                mask_blur=4)
TUTORIAL_SIZE = 768
TUTORIAL_PROMPT = "a cozy living room with a large window, a sofa and a wooden table, highly detailed photograph"
TUTORIAL_INPAINT_PROMPT = "a black cat sitting on the sofa, highly detailed photograph"
TUTORIAL_NEGATIVE = "blurry, lowres, deformed"


def synthetic_picture(size: int) -> Image.Image:
    """A deterministic test picture: a colour gradient with a few flat shapes, so fills and seams are easy to see."""
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    for y in range(size):
        for x in range(size):
            pixels[x, y] = (int(255 * x / size), int(255 * y / size), 160)
    draw = ImageDraw.Draw(image)
    s = size // 8
    draw.rectangle((s, s, 3 * s, 3 * s), fill=(230, 40, 40))
    draw.ellipse((5 * s, 5 * s, 7 * s, 7 * s), fill=(30, 200, 60))
    draw.rectangle((0, 6 * s, size, 6 * s + s // 2), fill=(250, 240, 200))
    return image


def centre_mask(size: int, fraction: float = 0.375) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    half = int(size * fraction / 2)
    c = size // 2
    ImageDraw.Draw(mask).ellipse((c - half, c - half, c + half, c + half), fill=255)
    return mask


def run_demo(args) -> Path:
    """Run the demo for parsed `inpaintlab demo` arguments; returns the grid's path. Everything is checked first."""
    from tqdm import tqdm

    from .cli import CommandError, _load, _model_options
    from .files import prepare_out_dir

    if args.steps is not None and args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    if args.model is None and args.vae is not None:
        raise CommandError("--vae needs --model (the tiny demo checkpoint has its own VAE)")
    options = _model_options(args)
    out = prepare_out_dir(args.out)
    jobs = len(MODES) + (1 if args.model else 0)
    bar = tqdm(total=jobs, desc="demo", unit="image", disable=args.no_progress, file=sys.stderr)
    if args.model:
        pipe = _load(args.model, args.vae, options)
        settings = dict(TUTORIAL, steps=args.steps or TUTORIAL["steps"])
        base = pipe.txt2img(TUTORIAL_PROMPT, TUTORIAL_NEGATIVE, width=TUTORIAL_SIZE, height=TUTORIAL_SIZE,
                            **{k: v for k, v in settings.items() if k not in ("denoising_strength", "mask_blur")})
        bar.update()
        image, prompt, size = base.images[0], TUTORIAL_INPAINT_PROMPT, TUTORIAL_SIZE
        save_png(image, out / "base.png", base.infotext)
        title = f"{Path(args.model).stem}: masked content at the tutorial's settings"
    else:
        from .tiny import make_tiny_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny-random.safetensors")
            pipe = _load(checkpoint, None, options)
        size, prompt = 128, "a red square and a green circle"
        image = synthetic_picture(size)
        settings = dict(TUTORIAL, steps=args.steps or 8)
        title = "random weights: textures, not content"
    mask = centre_mask(size)
    cells = [image, Image.merge("RGB", [mask] * 3)]
    for mode in MODES:
        result = pipe.inpaint(image, mask, prompt, TUTORIAL_NEGATIVE, masked_content=mode, **settings)
        save_png(result.images[0], out / f"inpaint-{mode}.png", result.infotext)
        cells.append(result.images[0])
        bar.update()
    bar.close()
    grid = make_grid([cells], col_labels=["input", "mask"] + [f"masked content: {m}" for m in MODES], title=title)
    return save_png(grid, out / "demo-grid.png", None)
