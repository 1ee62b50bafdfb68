"""`inpaintlab demo`: the whole inpaint path, every masked-content mode, one labelled grid.

Without `--model` it writes a tiny random-weight checkpoint in the real single-file format, loads it through the real
loader and inpaints a synthetic picture whose masked centre holds stripes and a yellow disk. Random weights paint
textures, not content, so the grid shows each mode at the stage where it acts, one column per mode: the picture the VAE
encodes (A1111 fills it for every mode but "original"), the latent after masked content (A1111's cheap latent preview:
noise for "latent noise", a flat zero latent for "latent nothing") and the result. A low denoising strength (0.35) keeps
the start visible in the result, where any two modes differ inside the mask.

With `--model` it runs the living-room job on that checkpoint (a tiny checkpoint from `inpaintlab tiny`, of any
family, runs the same tiny job as without `--model`): a 768×768 txt2img base picture of a living room, then a
black cat inpainted at its centre with each masked-content mode, at A1111's UI defaults (DPM++ 2M Karras, 20 steps,
CFG 7, denoising 0.75, mask blur 4) and seed 2976823394.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from .grid import grid_infotext, make_grid
from .infotext import save_png

MODES = ("fill", "original", "latent_noise", "latent_nothing")
# The living-room job (A1111 UI defaults, 768×768): DPM++ 2M Karras, 20 steps, CFG 7, denoising 0.75, mask blur 4.
LIVING_ROOM = dict(steps=20, sampler="DPM++ 2M", scheduler="Karras", cfg_scale=7.0, seed=2976823394,
                   denoising_strength=0.75, mask_blur=4)
LIVING_ROOM_SIZE = 768
LIVING_ROOM_PROMPT = "a cozy living room with a large window, a sofa and a wooden table, highly detailed photograph"
CAT_PROMPT = "a black cat sitting on the sofa, highly detailed photograph"
NEGATIVE = "blurry, lowres, deformed"
# Tiny random weights: the same job at a strength low enough for each mode's start to survive sampling.
TINY = dict(LIVING_ROOM, steps=8, denoising_strength=0.35)
TINY_SIZE = 128


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


def demo_picture(size: int) -> Image.Image:
    """`synthetic_picture` with black stripes and a yellow disk in the centre, where the demo's mask is: "original"
    keeps them, A1111's fill replaces them with the surrounding colours."""
    image = synthetic_picture(size)
    draw = ImageDraw.Draw(image)
    s = size / 16
    for i in range(6):
        x = round(5 * s + i * s)
        draw.rectangle((x, round(4.5 * s), x + round(s / 2) - 1, round(11.5 * s)), fill=(20, 20, 20))
    draw.ellipse((round(6.5 * s), round(6.5 * s), round(9.5 * s), round(9.5 * s)), fill=(250, 250, 60))
    return image


def is_tiny(pipe) -> bool:
    """A random-weight test checkpoint (`inpaintlab tiny`'s files: UNets 32-64 channels wide, real ones 320)."""
    return pipe.unet.config.model_channels < 128


def run_demo(args) -> Path:
    """Run the demo for parsed `inpaintlab demo` arguments; returns the grid's path. Everything is checked first."""
    from tqdm import tqdm

    from . import frontend
    from .frontend import CommandError, _model_options
    from .files import prepare_out_dir
    from .prepare import prepare_inpaint
    from .study.preview import latent_preview

    if args.steps is not None and args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    if args.model is None and args.vae is not None:
        raise CommandError("--vae needs --model (the tiny demo checkpoint has its own VAE)")
    options = _model_options(args)
    out = prepare_out_dir(args.out)
    pipe = frontend._load(args.model, args.vae, options) if args.model else None
    living_room = pipe is not None and not is_tiny(pipe)
    jobs = len(MODES) + (1 if living_room else 0)
    bar = tqdm(total=jobs, desc="demo", unit="image", disable=args.no_progress, file=sys.stderr)
    if living_room:
        settings = dict(LIVING_ROOM, steps=args.steps or LIVING_ROOM["steps"])
        base = pipe.txt2img(LIVING_ROOM_PROMPT, NEGATIVE, width=LIVING_ROOM_SIZE, height=LIVING_ROOM_SIZE,
                            **{k: v for k, v in settings.items() if k not in ("denoising_strength", "mask_blur")})
        bar.update()
        image, prompt, size = base.images[0], CAT_PROMPT, LIVING_ROOM_SIZE
        save_png(image, out / "base.png", base.infotext)
        title = f"{Path(args.model).stem}: masked content, living-room job"
    else:
        if pipe is None:
            from .tiny import make_tiny_checkpoint

            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny-random.safetensors")
                pipe = frontend._load(checkpoint, None, options)
        size, prompt = TINY_SIZE, CAT_PROMPT
        image = demo_picture(size)
        settings = dict(TINY, steps=args.steps or TINY["steps"])
        title = f"random weights (textures, not content), denoising {settings['denoising_strength']}"
    mask = centre_mask(size)
    rows: list[list[Image.Image]] = [[], [], []]
    infotexts = []
    for mode in MODES:
        result = pipe.inpaint(image, mask, prompt, NEGATIVE, masked_content=mode, **settings)
        save_png(result.images[0], out / f"inpaint-{mode}.png", result.infotext)
        encoded = prepare_inpaint(image, mask, size, size, mask_blur=settings["mask_blur"], masked_content=mode).init
        rows[0].append(encoded)
        rows[1].append(latent_preview(result.init_latent).resize((size, size), Image.Resampling.NEAREST))
        rows[2].append(result.images[0])
        infotexts.append(result.infotext)
        bar.update()
    bar.close()
    grid = make_grid(rows, col_labels=[f"masked content: {m}" for m in MODES],
                     row_labels=["VAE input", "init latent", "result"], title=title)
    return save_png(grid, out / "demo-grid.png", grid_infotext(infotexts[0], [("X", "Masked content", MODES)]))
