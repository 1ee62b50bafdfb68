"""SD1.x and SDXL ControlNets (sd-webui-controlnet semantics): the network (original and diffusers layouts,
control-LoRA), its injection into the UNet, the preprocessors."""
from .inject import (CONTROL_MODES, ControlInput, ControlledUNet, active_steps, control_scales, guidance_active,
                     hires_soft_injection, in_hires_pass)
from .load import load_controlnet
from .model import ControlNet, ControlNetConfig
from .preprocess import PREPROCESSORS
from .unit import ControlNetUnit

__all__ = ["CONTROL_MODES", "PREPROCESSORS", "ControlInput", "ControlNet", "ControlNetConfig", "ControlNetUnit",
           "ControlledUNet", "active_steps", "control_scales", "guidance_active", "hires_soft_injection",
           "in_hires_pass", "load_controlnet"]
