"""The settings rows of the built-in techniques (their keywords of `txt2img` / `img2img` / `inpaint`, CLI flags,
infotext keys and sweep axes), in the registry order: soft inpainting, Differential Diffusion, ControlNet unit 0,
LoRA's keys, the img2img noise multiplier, extra noise, the hires fix. No torch, numpy or PIL at import:
`inpaintlab.settings` loads this module with the registry (`ROWS_MODULES`), so that `inpaintlab info` and the
command line's help need none of them. The techniques themselves are in the modules beside this one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..controlnet.unit_infotext import LABELS as PURE_LABELS
from ..controlnet.unit_infotext import SLIDERS as PURE_PREPROCESSORS
from ..controlnet.unit_infotext import parse_unit_infotext
from ..names import CONTROL_MODES, PREPROCESSORS
from ..settings import (ALL, CROSS_CHECKS, IMAGE, INPAINT, Setting, register, register_extra_network,
                        register_infotext_key)
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


# --- ControlNet (sd-webui-controlnet's unit 0; more units from Python with `controlnets=[ControlNetUnit(...)]`) ------

def _controlnet_field(field: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return parse_unit_infotext(text)[field]
    return parse


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


_UNIT0 = "ControlNet 0"
CONTROLNET_ROWS = (
    # The infotext names the model (`name [hash]`); read back, the name is looked up as <name>.safetensors in the
    # working directory unless --controlnet gives the file.
    Setting("controlnet", object, None, "ControlNet model file, e.g. control_v11p_sd15_inpaint.safetensors",
            infotext=_UNIT0, parse=_controlnet_field("model"), check=_controlnet_model),
    Setting("controlnet_preprocessor", str, "inpaint_only", "ControlNet preprocessor (inpaint ones, 'none' with a "
            "ready hint image, or a pure-image one)", infotext=_UNIT0, choices=PREPROCESSORS + tuple(PURE_PREPROCESSORS),
            aliases={"inpaint": "inpaint_global_harmonious", **PURE_LABELS},
            parse=_controlnet_field("preprocessor")),
    Setting("control_weight", float, 1.0, "ControlNet weight, 0-2", infotext=_UNIT0, check=_between(0, 2),
            parse=_controlnet_field("weight")),
    Setting("control_mode", str, "Balanced", "ControlNet control mode", infotext=_UNIT0, choices=CONTROL_MODES,
            aliases={"prompt": CONTROL_MODES[1], "controlnet": CONTROL_MODES[2]},
            parse=_controlnet_field("control_mode")),
    Setting("guidance_start", float, 0.0, "ControlNet starting control step, a fraction of the steps run",
            infotext=_UNIT0, check=_between(0, 1), parse=_controlnet_field("guidance_start")),
    Setting("guidance_end", float, 1.0, "ControlNet ending control step, a fraction of the steps run",
            infotext=_UNIT0, check=_between(0, 1), parse=_controlnet_field("guidance_end")),
)

# --- img2img noise multiplier (techniques/noise_multiplier.py) ------------------------------------------------------

def _range(v: float) -> str | None:
    return None if 0.0 <= v <= 1.5 else f"must be in [0, 1.5] (A1111's slider), got {v}"


NOISE_MULTIPLIER = Setting("initial_noise_multiplier", float, 1.0,
                           "img2img/inpaint: multiply the initial noise by this (A1111's 'Noise multiplier for img2img')",
                           IMAGE, infotext="Noise multiplier", check=_range, example=0.85, keyword=False)

# --- extra noise (techniques/extra_noise.py) ------------------------------------------------------------------------

EXTRA_NOISE = Setting("img2img_extra_noise", float, 0.0,
                      "img2img, inpaint and the hires pass: add the initial noise once more, times this (A1111's "
                      "'Extra noise multiplier for img2img and hires fix')", ALL, infotext="Extra noise",
                      check=lambda v: None if 0.0 <= v <= 1.0 else f"must be in [0, 1], got {v}", example=0.2,
                      keyword=False)

# --- hires fix (techniques/hires.py) ----------------------------------------------------------------------------------

_TXT2IMG = ("txt2img",)


def _hr_upscaler(v: str) -> str | None:
    return None if v else "must name an upscaler (a latent mode, None, Lanczos, Nearest, a file or an A1111 name)"


def _resize_part(index: int):
    def parse(text: str) -> int:
        return int(text.lower().split("x")[index])
    return parse


HIRES_ROWS = (
    Setting("enable_hr", bool, False, "txt2img: A1111's hires fix (a second, img2img pass at a larger size)", _TXT2IMG,
            # A1111's paste ticks "Hires fix" for "Denoising strength" with a hires key beside it; it always writes
            # "Hires upscaler" with the others, so that key alone tells (an inpaint's strength must not).
            infotext="Hires upscaler", parse=lambda text: True, keyword=False),
    Setting("hr_scale", float, 2.0, "hires fix: upscale by (when no hr_resize_x/y)", _TXT2IMG, infotext="Hires upscale",
            check=lambda v: None if v > 0 else "must be positive", keyword=False, example=1.5),
    Setting("hr_resize_x", int, 0, "hires fix: resize width to (0: from the height)", _TXT2IMG, infotext="Hires resize",
            parse=_resize_part(0), keyword=False, check=lambda v: None if v >= 0 else "must be >= 0"),
    Setting("hr_resize_y", int, 0, "hires fix: resize height to (0: from the width)", _TXT2IMG, infotext="Hires resize",
            parse=_resize_part(1), keyword=False, check=lambda v: None if v >= 0 else "must be >= 0"),
    Setting("hr_upscaler", str, "Latent", "hires fix: upscaler (Latent modes, None, Lanczos, Nearest, a model file or "
            "an A1111 name in upscaler_dir)", _TXT2IMG, infotext="Hires upscaler", check=_hr_upscaler, keyword=False,
            example="Latent (nearest-exact)"),
    Setting("hr_second_pass_steps", int, 0, "hires fix: steps of the second pass (0: the first pass's)", _TXT2IMG,
            infotext="Hires steps", check=lambda v: None if v >= 0 else "must be >= 0", keyword=False),
    Setting("hr_prompt", str, "", "hires fix: prompt of the second pass (empty: the prompt)", _TXT2IMG,
            infotext="Hires prompt", keyword=False),
    Setting("hr_negative_prompt", str, "", "hires fix: negative prompt of the second pass (empty: the negative prompt)",
            _TXT2IMG, infotext="Hires negative prompt", keyword=False),
    Setting("hr_sampler", str, "", "hires fix: sampler of the second pass (empty: the first pass's)", _TXT2IMG,
            infotext="Hires sampler", keyword=False),
    Setting("hr_scheduler", str, "", "hires fix: schedule type of the second pass (empty: the first pass's)", _TXT2IMG,
            infotext="Hires schedule type", keyword=False),
    Setting("hr_cfg", float, 0.0, "hires fix: CFG scale of the second pass, Forge's 'Hires CFG Scale' (0: the first "
            "pass's; A1111 has none)", _TXT2IMG, infotext="Hires CFG Scale", keyword=False),
    Setting("upscaler_dir", str, "", "folder of upscaler files for hr_upscaler names (A1111's models/ works)",
            _TXT2IMG, keyword=False),
)


# --- the registry, in this order -------------------------------------------------------------------------------------

for _row in (*SOFT_ROWS, DIFFERENTIAL_DIFFUSION, *CONTROLNET_ROWS, NOISE_MULTIPLIER, EXTRA_NOISE, *HIRES_ROWS):
    register(_row)
CROSS_CHECKS["one blend"] = _one_blend  # checked with the settings, before the slots are
CROSS_CHECKS["ControlNet guidance window"] = _guidance_window
# LoRA (techniques/lora.py): `<lora:…>` / `<lyco:…>` tags and the `Lora hashes` they write are applied.
register_extra_network("lora")
register_extra_network("lyco")
register_infotext_key("Lora hashes")
register_infotext_key("Hires schedule type")  # read into hr_scheduler
