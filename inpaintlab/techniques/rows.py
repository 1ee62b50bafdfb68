"""The settings rows of the built-in blends (their keywords of `inpaint`, CLI flags, infotext keys and sweep axes):
soft inpainting and Differential Diffusion, and LoRA's infotext keys. No torch, numpy or PIL at import:
`inpaintlab.settings` loads this module with the registry (`ROWS_MODULES`, whose order is the rows' order), so that
`inpaintlab info` and the command line's help need none of them. The other built-in techniques' rows are in
`controlnet_rows`, `noise_rows`, `color_rows` and `hires_rows`; the techniques themselves in the modules beside them.
"""
from __future__ import annotations

from typing import Any

from ..settings import CROSS_CHECKS, INPAINT, Setting, register, register_extra_network, register_infotext_key
from ..settings import between as _between

# --- soft inpainting (techniques/soft.py) -----------------------------------------------------------------------------

# A1111's built-in extension: its switch and six sliders, labels and ranges as A1111 writes and limits them.
_SOFT = "soft inpainting: "
SOFT_ROWS = (
    Setting("soft_inpainting", bool, False, "A1111's soft inpainting: unrounded masks, a per-step soft blend and a "
            "composite from how far each latent pixel moved (use a large mask blur)", INPAINT,
            infotext="Soft inpainting enabled", example=True),
    Setting("schedule_bias", float, 1.0, _SOFT + "schedule bias, the power of sigma in the mask exponent (0-8)",
            INPAINT, infotext="Soft inpainting schedule bias", check=_between(0, 8), example=1.5),
    Setting("preservation_strength", float, 0.5, _SOFT + "preservation strength, the scale of the mask exponent (0-8)",
            INPAINT, infotext="Soft inpainting preservation strength", check=_between(0, 8), example=0.75),
    Setting("transition_contrast_boost", float, 4.0, _SOFT + "transition contrast boost, the power of the magnitude "
            "mean (1-32)", INPAINT, infotext="Soft inpainting transition contrast boost", check=_between(1, 32),
            example=8.0),
    Setting("mask_influence", float, 0.0, _SOFT + "mask influence on the difference threshold (0-1)", INPAINT,
            infotext="Soft inpainting mask influence", check=_between(0, 1), example=0.25),
    Setting("difference_threshold", float, 0.5, _SOFT + "latent change at which the original is half opaque (0-8)",
            INPAINT, infotext="Soft inpainting difference threshold", check=_between(0, 8), example=1.0),
    Setting("difference_contrast", float, 2.0, _SOFT + "sharpness of the composite's transition (0-8)", INPAINT,
            infotext="Soft inpainting difference contrast", check=_between(0, 8), example=3.0),
)
# The sliders after the switch, in SoftInpaintingSettings' order.
SOFT_SETTING_NAMES = tuple(row.name for row in SOFT_ROWS[1:])

# --- Differential Diffusion (techniques/differential.py) -----------------------------------------------------------

DIFFERENTIAL_DIFFUSION = Setting("differential_diffusion", bool, False, "Differential Diffusion with the blurred mask "
                                 "as change map (1 = change fully; not an A1111 feature)", INPAINT,
                                 infotext="Differential diffusion")


def _one_blend(s: dict[str, Any]) -> str | None:
    if s.get("soft_inpainting") and s.get("differential_diffusion"):
        return "soft_inpainting and differential_diffusion are two different blends; choose one"
    return None


# --- the registry, in this order -------------------------------------------------------------------------------------

for _row in (*SOFT_ROWS, DIFFERENTIAL_DIFFUSION):
    register(_row)
CROSS_CHECKS["one blend"] = _one_blend  # checked with the settings, before the slots are
# LoRA (techniques/lora.py): `<lora:…>` / `<lyco:…>` tags and the `Lora hashes` they write are applied.
register_extra_network("lora")
register_extra_network("lyco")
register_infotext_key("Lora hashes")
