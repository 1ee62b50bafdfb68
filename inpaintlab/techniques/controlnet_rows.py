"""Settings rows of a ControlNet unit's preprocessor parameters (sd-webui-controlnet's Processor Res, Threshold A,
Threshold B and Pixel Perfect), read from and written to the `ControlNet 0` infotext entry with the unit's other
fields. Python keywords of `txt2img` / `inpaint` through ``**settings``; more units: `ControlNetUnit` fields."""
from __future__ import annotations

from typing import Any, Callable

from ..settings import Setting, register

UNIT0 = "ControlNet 0"


def unit_field(field: str, default: Any) -> Callable[[str], Any]:
    """Reads one field of a `ControlNet 0` value (`controlnet.unit.parse_unit_infotext`); an inpaint module's entry
    carries no preprocessor parameters, so those read as the default."""
    def parse(text: str) -> Any:
        from ..controlnet.unit import parse_unit_infotext

        return parse_unit_infotext(text).get(field, default)
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


def register_rows() -> None:
    for row in ROWS:
        register(row)


register_rows()
