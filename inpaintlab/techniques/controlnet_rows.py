"""Settings rows of sd-webui-controlnet's unit 0 (more units from Python with `controlnets=[ControlNetUnit(...)]`), read
from and written to the `ControlNet 0` infotext entry: its preprocessor parameters (Processor Res, Threshold A,
Threshold B and Pixel Perfect; Python keywords of `txt2img` / `inpaint` through ``**settings``), then the model,
preprocessor, weight, control mode and guidance window. No torch, numpy or PIL at import (the unit's infotext is read
by `controlnet.unit_infotext`): `inpaintlab.settings` loads this module with the registry (`ROWS_MODULES`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..controlnet.unit_infotext import LABELS as PURE_LABELS
from ..controlnet.unit_infotext import SLIDERS as PURE_PREPROCESSORS
from ..controlnet.unit_infotext import parse_unit_infotext
from ..names import CONTROL_MODES, PREPROCESSORS
from ..settings import CROSS_CHECKS, Setting, register
from ..settings import between as _between

UNIT0 = "ControlNet 0"


def unit_field(field: str, default: Any) -> Callable[[str], Any]:
    """Reads one field of a `ControlNet 0` value (`controlnet.unit_infotext.parse_unit_infotext`); an inpaint module's
    entry carries no preprocessor parameters, so those read as the default."""
    def parse(text: str) -> Any:
        return parse_unit_infotext(text).get(field, default)
    return parse


def _controlnet_field(field: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return parse_unit_infotext(text)[field]
    return parse


def _resolution(value: Any) -> str | None:
    return None if 64 <= value <= 2048 else "must be in [64, 2048]"


ROWS = (
    Setting("controlnet_processor_res", int, 512, "ControlNet preprocessor resolution (Processor Res, 64-2048)",
            infotext=UNIT0, check=_resolution, parse=unit_field("processor_res", 512), keyword=False),
    Setting("controlnet_threshold_a", float, None, "ControlNet preprocessor Threshold A (default: the "
            "preprocessor's, e.g. canny low 100)", infotext=UNIT0, parse=unit_field("threshold_a", None),
            keyword=False),
    Setting("controlnet_threshold_b", float, None, "ControlNet preprocessor Threshold B (default: the "
            "preprocessor's, e.g. canny high 200)", infotext=UNIT0, parse=unit_field("threshold_b", None),
            keyword=False),
    Setting("controlnet_pixel_perfect", bool, False, "ControlNet Pixel Perfect: the preprocessor resolution from the "
            "image and target sizes", infotext=UNIT0, parse=unit_field("pixel_perfect", False), keyword=False),
)


# --- the unit's model, preprocessor, weight, control mode and guidance window ------------------------------------

def _controlnet_model(value: Any) -> str | None:
    if isinstance(value, (str, Path)):
        return None  # a path, or the name an infotext records: checked when the file is opened
    from ..controlnet import ControlNet as ControlNetModel  # only reached with an object: torch is loaded already

    if isinstance(value, ControlNetModel):
        return None
    return "must be a ControlNet file path or a loaded ControlNet"


def _guidance_window(s: dict[str, Any]) -> str | None:
    start, end = s.get("guidance_start", 0.0), s.get("guidance_end", 1.0)
    return None if start <= end else f"guidance_start {start} is after guidance_end {end}"


CONTROLNET_ROWS = (
    # The infotext names the model (`name [hash]`); read back, the name is looked up as <name>.safetensors in the
    # working directory unless --controlnet gives the file.
    Setting("controlnet", object, None, "ControlNet model file, e.g. control_v11p_sd15_inpaint.safetensors",
            infotext=UNIT0, parse=_controlnet_field("model"), check=_controlnet_model),
    Setting("controlnet_preprocessor", str, "inpaint_only", "ControlNet preprocessor (inpaint ones, 'none' with a "
            "ready hint image, or a pure-image one)", infotext=UNIT0, choices=PREPROCESSORS + tuple(PURE_PREPROCESSORS),
            aliases={"inpaint": "inpaint_global_harmonious", **PURE_LABELS},
            parse=_controlnet_field("preprocessor")),
    Setting("control_weight", float, 1.0, "ControlNet weight, 0-2", infotext=UNIT0, check=_between(0, 2),
            parse=_controlnet_field("weight")),
    Setting("control_mode", str, "Balanced", "ControlNet control mode", infotext=UNIT0, choices=CONTROL_MODES,
            aliases={"prompt": CONTROL_MODES[1], "controlnet": CONTROL_MODES[2]},
            parse=_controlnet_field("control_mode")),
    Setting("guidance_start", float, 0.0, "ControlNet starting control step, a fraction of the steps run",
            infotext=UNIT0, check=_between(0, 1), parse=_controlnet_field("guidance_start")),
    Setting("guidance_end", float, 1.0, "ControlNet ending control step, a fraction of the steps run",
            infotext=UNIT0, check=_between(0, 1), parse=_controlnet_field("guidance_end")),
)


def register_rows() -> None:
    for row in (*ROWS, *CONTROLNET_ROWS):
        register(row)
    CROSS_CHECKS["ControlNet guidance window"] = _guidance_window


register_rows()
