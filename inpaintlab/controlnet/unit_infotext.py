"""A `ControlNet {i}` infotext value read back (`parse_unit_infotext`), with the names it uses: the inpaint
preprocessors' module labels, the pure-image preprocessors' labels and sliders, the control modes. No torch, numpy or
PIL: `inpaintlab info` and the settings rows read ControlNet units without them (`preprocessors`, `preprocess`,
`inject` and `unit` import these names from here).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..names import CONTROL_MODES

# The inpaint preprocessors -> the extension's internal module names, written to the infotext's "Module:" field.
MODULE_NAMES = {"inpaint_only": "inpaint_only", "inpaint_global_harmonious": "inpaint",
                "inpaint_only+lama": "inpaint_only+lama"}


@dataclasses.dataclass(frozen=True)
class Sliders:
    """A pure-image preprocessor's UI label (the infotext's `Module`) and its sliders as the extension shows them
    (``None``: hidden, written as 0.5) with their defaults; ``resolution`` False: the resolution slider is hidden
    (written as 0.5). ``colorfix``: the map is the image itself, and the unit also pulls the low frequencies of every
    x0 prediction towards the hint's latent (`inject.colorfix_eps`; Threshold A: the blur radius, Threshold B with
    ``+sharp``: the sharpness)."""

    label: str
    threshold_a: float | None = None
    threshold_b: float | None = None
    resolution: bool = True
    colorfix: bool = False


# The pure-image preprocessors (`preprocessors.PREPROCESSORS` adds their functions).
SLIDERS = {
    "none": Sliders("none", resolution=False),
    "invert": Sliders("invert (from white bg & black line)", resolution=False),
    "canny": Sliders("canny", 100.0, 200.0),
    "tile_resample": Sliders("tile_resample", 1.0),
    "threshold": Sliders("threshold", 127.0),
    "blur_gaussian": Sliders("blur_gaussian", 9.0),
    "lineart_standard": Sliders("lineart_standard (from white bg & black line)"),
    "scribble_xdog": Sliders("scribble_xdog", 32.0),
    "recolor_luminance": Sliders("recolor_luminance", 1.0),
    "recolor_intensity": Sliders("recolor_intensity", 1.0),
    "shuffle": Sliders("shuffle"),
    "color": Sliders("t2ia_color_grid"),
    "tile_colorfix": Sliders("tile_colorfix", 8.0, colorfix=True),
    "tile_colorfix+sharp": Sliders("tile_colorfix+sharp", 8.0, 1.0, colorfix=True),
}
LABELS = {s.label: name for name, s in SLIDERS.items()}

# Preprocessors that need an annotator network (by name and label stem): only a ready hint ("none") replaces them.
NETWORK_PREPROCESSORS = (
    "openpose", "dw_openpose", "animal_openpose", "densepose", "softedge", "pidinet", "scribble_pidinet",
    "scribble_hed", "t2ia_sketch_pidi", "lineart", "lineart_coarse", "lineart_realistic", "lineart_anime", "depth",
    "normal", "mlsd", "seg", "mediapipe_face", "reference", "ip-adapter", "clip_vision", "instant_id", "revision",
)


def resolve(name: str) -> str:
    """A preprocessor name or the UI label the infotext carries -> its name; a clear error otherwise."""
    if name in SLIDERS:
        return name
    if name in LABELS:
        return LABELS[name]
    stem = name.split(" ")[0]
    if any(stem == n or stem.startswith(n + "_") for n in NETWORK_PREPROCESSORS):
        raise ValueError(f"ControlNet preprocessor {name!r} needs an annotator network, which inpaintlab does not "
                         f"include: run the preprocessor elsewhere and give its result as the unit's image with "
                         f"preprocessor 'none'")
    raise ValueError(f"unknown ControlNet preprocessor {name!r}; pure-image ones: {', '.join(SLIDERS)}")


_MODE_ALIASES = {"balanced": 0, "prompt": 1, "my prompt is more important": 1, "controlnet": 2,
                 "controlnet is more important": 2}


def check_control_mode(mode: str | int) -> str:
    """The extension's label for a control mode given as label, short alias (balanced/prompt/controlnet) or 0-2."""
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode < len(CONTROL_MODES):
        return CONTROL_MODES[mode]
    if isinstance(mode, str) and mode.strip().lower() in _MODE_ALIASES:
        return CONTROL_MODES[_MODE_ALIASES[mode.strip().lower()]]
    raise ValueError(f"unknown control mode {mode!r}; expected one of {', '.join(CONTROL_MODES)} "
                     f"(or balanced / prompt / controlnet)")


_FIELD = re.compile(r"\s*([^:,]+):\s*([^,]*)")
_MODULES = {v: k for k, v in MODULE_NAMES.items()}


_RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Scale to Fit (Inner Fit)": "Crop and Resize",
                   "Outer Fit (Shrink to Fit)": "Resize and Fill", "Envelope (Outer Fit)": "Resize and Fill"}


def _number(fields: dict[str, str], key: str) -> float | None:
    if key not in fields or fields[key] in ("", "-1"):
        return None
    return float(fields[key])


def parse_unit_infotext(text: str) -> dict[str, Any]:
    """A `ControlNet {i}` value (current or 2023-08..2024-05 format) -> {model (name), model_hash, preprocessor,
    weight, resize_mode, guidance_start, guidance_end, control_mode, processor_res, threshold_a, threshold_b,
    pixel_perfect}. Raises ValueError naming a module inpaintlab cannot run (annotator networks)."""
    fields = {k.strip(): v.strip() for k, v in _FIELD.findall(text)}
    module = fields.get("Module", "")
    preprocessor = _MODULES[module] if module in _MODULES else resolve(module)
    match = re.match(r"^(.*?)\s*\[([0-9a-fA-F]+)\]$", fields.get("Model", ""))
    model, model_hash = (match.group(1), match.group(2)) if match else (fields.get("Model", ""), None)
    resize_mode = fields.get("Resize Mode", "Crop and Resize")
    res = _number(fields, "Processor Res")
    extra: dict[str, Any] = {}
    if preprocessor not in _MODULES.values():
        p = SLIDERS[preprocessor]
        extra = {"processor_res": int(res) if res is not None and p.resolution and res >= 64 else 512,
                 "threshold_a": _number(fields, "Threshold A") if p.threshold_a is not None else None,
                 "threshold_b": _number(fields, "Threshold B") if p.threshold_b is not None else None,
                 "pixel_perfect": fields.get("Pixel Perfect", "False") == "True"}
    return {
        "model": model, "model_hash": model_hash, "preprocessor": preprocessor,
        "weight": float(fields.get("Weight", 1.0)), **extra,
        "resize_mode": _RESIZE_ALIASES.get(resize_mode, resize_mode),
        "guidance_start": float(fields.get("Guidance Start", 0.0)),
        "guidance_end": float(fields.get("Guidance End", 1.0)),
        "control_mode": check_control_mode(fields.get("Control Mode", "Balanced")),
    }
