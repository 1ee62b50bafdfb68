"""A1111 v1.10 "parameters" infotext: write it, parse it back, and save PNGs that carry it.

Format (what A1111's PNG Info reads):

    <prompt>
    Negative prompt: <negative>            (only when non-empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

A value is JSON-quoted when its text contains ',', ':' or a newline; a pair whose value equals its key is written as the key
alone; None values are left out. Fixed keys come first in A1111's order, then the extra keys in insertion order.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from .masking.soft import SoftInpaintingSettings

# A1111 v1.10.1 `create_infotext` order for the keys this library can produce.
FIXED_KEYS = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash",
    "VAE", "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "RNG",
)

_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def format_value(value: Any) -> str:
    """str() of the value, JSON-quoted (ensure_ascii=False) when it contains ',', ':' or a newline."""
    text = str(value)
    if any(c in text for c in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def build_infotext(prompt: str, negative_prompt: str, params: dict[str, Any], extra: dict[str, Any] | None = None,
                   version: str | None = None) -> str:
    """Assemble the infotext: fixed keys in A1111's order, then `extra` in insertion order, then Version."""
    pairs: dict[str, Any] = {}
    for key in FIXED_KEYS:
        if params.get(key) is not None:
            pairs[key] = params[key]
    unknown = set(params) - set(FIXED_KEYS)
    if unknown:
        raise ValueError(f"not a fixed infotext key: {sorted(unknown)}; pass it in `extra`")
    for key, value in (extra or {}).items():
        if value is not None and key not in pairs:
            pairs[key] = value
    if version is not None:
        pairs["Version"] = version
    line = ", ".join(key if str(value) == key else f"{key}: {format_value(value)}" for key, value in pairs.items())
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{line}".strip()


def parse_infotext(text: str) -> dict[str, str]:
    """Split an infotext into {"Prompt", "Negative prompt", key: value-as-text}.

    Like A1111's PNG Info: the last line holds the parameters only when it has at least three `key: value` pairs.
    """
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PAIR.findall(last):
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = json.loads(value)
        result[key.strip()] = value
    return result


def save_png(image: Image.Image, path: str | os.PathLike, infotext: str | None) -> Path:
    """Write `image` as PNG with a `parameters` text chunk (tEXt if Latin-1, else iTXt), atomically.

    The file is written under a temporary name in the same directory and renamed, so a reader never sees half a PNG.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if infotext is not None:
        try:
            infotext.encode("latin-1")
            info.add_text("parameters", infotext)
        except UnicodeEncodeError:
            info.add_itxt("parameters", infotext)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_png_infotext(path: str | os.PathLike) -> str:
    """The `parameters` text of a PNG; a clear error if there is none."""
    with Image.open(path) as image:
        image.load()
        text = image.info.get("parameters")
    if text is None:
        raise ValueError(f"{path}: no 'parameters' infotext in this PNG")
    return text


_MASK_MODES = {"Inpaint masked": "masked", "Inpaint not masked": "not_masked"}
_MASKED_CONTENT = {"fill": "fill", "original": "original", "latent noise": "latent_noise",
                   "latent nothing": "latent_nothing"}
_INPAINT_AREAS = {"Whole picture": "whole", "Only masked": "only_masked"}


def settings_from_infotext(text: str) -> dict[str, Any]:
    """Turn an infotext back into `Pipeline.inpaint` keyword arguments (plus prompt / negative_prompt).

    Missing inpaint keys take A1111's parsing defaults: masked, original, whole picture, padding 32, clip skip 1, and
    RNG "GPU" (A1111 writes `RNG` only for the CPU and NV sources).
    """
    fields = parse_infotext(text)
    settings: dict[str, Any] = {"prompt": fields["Prompt"], "negative_prompt": fields["Negative prompt"]}
    converters = {
        "Steps": ("steps", int), "Sampler": ("sampler", str), "Schedule type": ("scheduler", str),
        "CFG scale": ("cfg_scale", float), "Seed": ("seed", int), "Denoising strength": ("denoising_strength", float),
        "Mask blur": ("mask_blur", int), "Masked area padding": ("padding", int), "Clip skip": ("clip_skip", int),
        "Conditional mask weight": ("inpainting_mask_weight", float),
        "Variation seed": ("subseed", int), "Variation seed strength": ("subseed_strength", float),
        "ENSD": ("ensd", int),
    }
    for key, (name, convert) in converters.items():
        if key in fields:
            settings[name] = convert(fields[key])
    if "Size" in fields:
        width, height = fields["Size"].lower().split("x")
        settings["width"], settings["height"] = int(width), int(height)
    if "Seed resize from" in fields:
        width, height = fields["Seed resize from"].lower().split("x")
        settings["seed_resize_from"] = (int(width), int(height))
    settings["rng_source"] = fields.get("RNG", "GPU")
    settings["mask_mode"] = _MASK_MODES[fields.get("Mask mode", "Inpaint masked")]
    settings["masked_content"] = _MASKED_CONTENT[fields.get("Masked content", "original")]
    settings["inpaint_area"] = _INPAINT_AREAS[fields.get("Inpaint area", "Whole picture")]
    settings["fill_space"] = fields.get("Fill space", "pixel")
    soft = SoftInpaintingSettings.from_infotext(fields)
    if soft is not None:
        settings["soft_inpainting"] = True
        settings.update(dataclasses.asdict(soft))
    if fields.get("Differential diffusion", "").strip() == "True":
        settings["differential_diffusion"] = True
    settings.setdefault("padding", 32)
    settings.setdefault("clip_skip", 1)
    if "Mask blur" not in fields and "Denoising strength" in fields:
        settings["mask_blur"] = 0  # A1111 writes the key whenever the blur is > 0
    return settings
