"""`run_script`: one of A1111's img2img scripts by its name, with its arguments as a dict (the sweep's cells)."""
from __future__ import annotations

from typing import Any

from PIL import Image

from ..result import Result
from .img2img import loopback, sd_upscale
from .outpaint_run import outpainting_mk2, poor_mans_outpainting
from .rows import script_args

FUNCTIONS = {"Poor man's outpainting": poor_mans_outpainting, "Outpainting mk2": outpainting_mk2,
             "SD upscale": sd_upscale, "Loopback": loopback}


def run_script(pipe, script: str, image: Image.Image, prompt: str, negative_prompt: str = "",
               args: dict[str, Any] | None = None, upscaler_dir: str | None = None, **settings: Any) -> Result:
    """Run `script` ("Poor man's outpainting", "Outpainting mk2", "SD upscale" or "Loopback") on `image` with its
    arguments `args` (names of `scripts.rows.SCRIPTS`, defaults for the rest) and any img2img/inpaint setting."""
    args = script_args(script, args or {})
    if script == "SD upscale" and isinstance(args.get("upscaler"), str):
        from ..upscalers.command import resolve_upscaler

        args["upscaler"] = resolve_upscaler(args["upscaler"], upscaler_dir, str(pipe.device))
    return FUNCTIONS[script](pipe, image, prompt, negative_prompt, **args, **settings)
