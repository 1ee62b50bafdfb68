"""SD1.x and SDXL ControlNets (sd-webui-controlnet semantics): the network (original and diffusers layouts,
control-LoRA), its injection into the UNet, the preprocessors.

`unit_infotext` (a unit's infotext read back, and the names it uses) needs no torch; the rest is imported on first use.
"""
from .._lazy import lazy_package

lazy_package(__name__, {
    **dict.fromkeys(("CONTROL_MODES", "ControlInput", "ControlledUNet", "active_steps", "control_scales",
                     "guidance_active", "hires_soft_injection", "in_hires_pass"), ".inject"),
    "load_controlnet": ".load", "ControlNet": ".model", "ControlNetConfig": ".model", "PREPROCESSORS": ".preprocess",
    "ControlNetUnit": ".unit",
})

__all__ = ["CONTROL_MODES", "PREPROCESSORS", "ControlInput", "ControlNet", "ControlNetConfig", "ControlNetUnit",
           "ControlledUNet", "active_steps", "control_scales", "guidance_active", "hires_soft_injection",
           "in_hires_pass", "load_controlnet"]
