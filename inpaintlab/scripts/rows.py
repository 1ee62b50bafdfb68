"""The img2img scripts' own arguments (A1111's UI controls), one table for the scripts, the CLI and sweep specs.

A script argument is not a generation setting: it belongs to one script (`mask_blur` of Outpainting mk2 is the
script's, which sets the pipeline's own blur at 4×), so the arguments live here and not in the settings registry.
A sweep spec with `"script": "Outpainting mk2"` may name them in `base` and on its axes. Imports only the standard
library and `inpaintlab.errors`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..errors import SettingsError

DIRECTIONS = ("left", "right", "up", "down")
FILL_CHOICES = ("fill", "original", "latent_noise", "latent_nothing")  # A1111's "Masked content" radio, by index
CURVES = ("Aggressive", "Linear", "Lazy")


@dataclasses.dataclass(frozen=True)
class ScriptArg:
    """name: the script function's keyword; label: A1111's UI label; check(value) -> error text or None."""

    name: str
    kind: type
    default: Any
    label: str
    check: Callable[[Any], str | None] | None = None


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]"


def _directions(v: Any) -> str | None:
    chosen = [d.strip().lower() for d in (v.split(",") if isinstance(v, str) else v)]
    return None if chosen and all(d in DIRECTIONS for d in chosen) else f"choose from {', '.join(DIRECTIONS)}"


def _fill(v: Any) -> str | None:
    ok = v in range(4) if isinstance(v, int) else str(v).strip().lower().replace(" ", "_") in FILL_CHOICES
    return None if ok else "choose fill, original, latent noise or latent nothing"


_PIXELS = ScriptArg("pixels", int, 128, "Pixels to expand", _between(1, 1024))
_DIRECTION = ScriptArg("direction", list, list(DIRECTIONS), "Outpainting direction", _directions)
SCRIPTS: dict[str, tuple[ScriptArg, ...]] = {
    "Poor man's outpainting": (
        _PIXELS, ScriptArg("mask_blur", int, 4, "Mask blur", _between(0, 64)),
        ScriptArg("inpainting_fill", str, "fill", "Masked content", _fill), _DIRECTION),
    "Outpainting mk2": (
        _PIXELS, ScriptArg("mask_blur", int, 8, "Mask blur", _between(0, 64)), _DIRECTION,
        ScriptArg("noise_q", float, 1.0, "Fall-off exponent (lower=higher detail)", _between(0, 4)),
        ScriptArg("color_variation", float, 0.05, "Color variation", _between(0, 1))),
    "SD upscale": (
        ScriptArg("tile_overlap", int, 64, "Tile overlap", _between(0, 256)),
        ScriptArg("scale_factor", float, 2.0, "Scale Factor", _between(1, 4)),
        ScriptArg("upscaler", str, "None", "Upscaler")),
    "Loopback": (
        ScriptArg("loops", int, 4, "Loops", _between(1, 32)),
        ScriptArg("final_denoising_strength", float, 0.5, "Final denoising strength", _between(0, 1)),
        ScriptArg("denoising_curve", str, "Linear", "Denoising strength curve",
                  lambda v: None if v in CURVES else f"choose from {', '.join(CURVES)}")),
}


def script_arg_names(script: str) -> tuple[str, ...]:
    if script not in SCRIPTS:
        raise SettingsError(f"unknown script {script!r}; choose from {', '.join(SCRIPTS)}")
    return tuple(a.name for a in SCRIPTS[script])


def script_args(script: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` checked and converted (ints for int arguments, floats for floats, a list of directions); unknown
    names are an error naming them."""
    args = {a.name: a for a in SCRIPTS[script]} if script in SCRIPTS else None
    if args is None:
        script_arg_names(script)
    unknown = sorted(set(values) - set(args))
    if unknown:
        raise SettingsError(f"{script}: unknown argument(s) {unknown}; known: {', '.join(args)}")
    out = {}
    for name, value in values.items():
        arg = args[name]
        try:
            if arg.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                raise ValueError
            if arg.kind is float:
                value = float(value)
            elif arg.kind is int:
                if not float(value).is_integer():
                    raise ValueError
                value = int(float(value))
        except (TypeError, ValueError):
            raise SettingsError(f"{script}: {name} must be {arg.kind.__name__}, got {value!r}") from None
        if arg.kind is list and isinstance(value, str):
            value = [d.strip().lower() for d in value.split(",") if d.strip()]
        problem = arg.check(value) if arg.check else None
        if problem:
            raise SettingsError(f"{script}: {name} ({arg.label}) {problem}, got {value!r}")
        out[name] = value
    return out
